"""``INSERT ... ON CONFLICT`` for the databases we run on (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any


def _insert(dialect: str, table: type[Any]) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise NotImplementedError(f"no INSERT ... ON CONFLICT for database dialect {dialect!r}")


def upsert_adding(
    dialect: str, table: type[Any], rows: list[dict[str, Any]], keys: list[str], add: tuple[str, ...]
) -> Any:
    """Insert ``rows``; where a row with the same ``keys`` exists, add the new values of ``add`` to it."""
    stmt = _insert(dialect, table).values(rows)
    return stmt.on_conflict_do_update(index_elements=keys, set_={c: getattr(table, c) + stmt.excluded[c] for c in add})


def insert_ignoring_conflicts(dialect: str, table: type[Any], row: dict[str, Any]) -> Any:
    """Insert ``row`` unless its primary key exists (then nothing happens). Add ``.returning()`` to learn which."""
    return _insert(dialect, table).values(row).on_conflict_do_nothing()
