"""The async engine and session factory, with SQLite tuned for concurrent use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, StaticPool, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from server.config import normalize_database_url


def _sqlite_file(url: str | URL) -> URL | None:
    """``url`` parsed, when it names an on-disk SQLite database."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
        return parsed
    return None


def ensure_sqlite_dir(url: str) -> None:
    parsed = _sqlite_file(url)
    if parsed is not None and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` in any form :func:`server.config.normalize_database_url` accepts
    (``sqlite:///…``, ``postgresql://…``, ``postgres://…``); ``ValueError`` for any other."""
    url = normalize_database_url(url)
    ensure_sqlite_dir(url)
    kwargs: dict[str, Any] = {"json_serializer": json_text}  # as the writer's: one JSON spelling
    if url.startswith("postgresql"):
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """WAL (readers never block the writer), fsync at checkpoints only, wait up to 5 s for a lock."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def json_text(value: Any) -> str:
    """JSON columns as text: orjson (a tenth of ``json.dumps``'s time), the standard library for
    what orjson does not take. Either reads back the same."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def sqlite_file_writer_engine(url: str | URL) -> Engine | None:
    """A synchronous engine on the same SQLite file for the group-commit writer's own thread, or
    None when ``url`` is not an on-disk SQLite database.

    The writer begins each transaction on the sqlite3 connection itself with ``BEGIN IMMEDIATE``
    (the write lock is taken, waiting up to the busy timeout, before anything is read, so writers
    in several processes queue for the lock instead of failing to upgrade a read transaction).
    The driver begins nothing on its own, so statements SQLAlchemy runs inside join it."""
    parsed = _sqlite_file(url)
    if parsed is None:
        return None
    # One connection, used by the writer thread alone.
    engine = sa_create_engine(
        parsed.set(drivername="sqlite"),
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
        json_serializer=json_text,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        sqlite_pragmas(dbapi_conn)
        dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver: the writer's own
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")  # the writer checkpoints on its thread

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
