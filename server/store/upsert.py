"""``INSERT ... ON CONFLICT`` for the databases we run on (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise NotImplementedError(f"no INSERT ... ON CONFLICT for database dialect {dialect!r}")


def upsert_adding(dialect: str, table: Table, keys: list[str], add: tuple[str, ...]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET c = c + excluded.c`` for each ``c`` in ``add``.

    Execute it with a list of rows (executemany): one statement, compiled once, run per row."""
    stmt = _insert(dialect, table)
    return stmt.on_conflict_do_update(index_elements=keys, set_={c: table.c[c] + stmt.excluded[c] for c in add})


def insert_ignoring_conflicts(dialect: str, table: Table, row: dict[str, Any]) -> Any:
    """Insert ``row`` unless its primary key exists (then nothing happens). Add ``.returning()`` to learn which."""
    return _insert(dialect, table).values(row).on_conflict_do_nothing()
