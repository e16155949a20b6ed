"""``INSERT ... ON CONFLICT`` for the databases we run on (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, text


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

    Execute it with a list of rows (executemany). Written as ``text()`` (the same SQL on SQLite
    and PostgreSQL) because SQLAlchemy cannot cache the compiled form of the dialects'
    ``on_conflict_do_update``: compiling it on every write took more time than the write itself.
    Bound parameters keep their column types."""
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"no INSERT ... ON CONFLICT for database dialect {dialect!r}")
    columns = [*keys, *add]
    sql = upsert_adding_sql(table, keys, add, [":" + c for c in columns])
    return text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))


def upsert_adding_sql(table: Table, keys: list[str], add: tuple[str, ...], placeholders: list[str]) -> str:
    """The SQL of :func:`upsert_adding`, with the given placeholders for keys then ``add``."""
    columns = [*keys, *add]
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(placeholders)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in add)
    )


def insert_ignoring_conflicts(dialect: str, table: Table, row: dict[str, Any]) -> Any:
    """Insert ``row`` unless its primary key exists (then nothing happens). Add ``.returning()`` to learn which."""
    return _insert(dialect, table).values(row).on_conflict_do_nothing()
