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
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


# The execution option that makes a SQLite transaction begin with ``BEGIN IMMEDIATE``.
SQLITE_BEGIN = "plutos_sqlite_begin"


def _sqlite_connect(dbapi_conn: Any, record: Any = None) -> None:
    sqlite_pragmas(dbapi_conn, record)
    # The driver begins nothing on its own (its implicit BEGIN is DEFERRED, before DML only): the
    # "begin" listener below says how each transaction begins.
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    """A write transaction (``sessions.begin()``, see :func:`session_factory`) takes SQLite's
    write lock first, with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes
    fails at once with ``database is locked`` when another connection wrote meanwhile (it cannot
    upgrade a stale snapshot; the busy timeout does not apply). Other transactions run their
    statements in autocommit, as the driver did for reads."""
    begin = conn.get_execution_options().get(SQLITE_BEGIN)
    if begin:
        conn.exec_driver_sql(begin)


# How long a SQLite connection (other than the group-commit writer's) waits for a lock, ms.
SQLITE_BUSY_TIMEOUT_MS = 5000


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """WAL (readers never block the writer), fsync at checkpoints only, wait up to 5 s for a lock."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
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
        # The writer waits for the write lock itself (on its thread only, never on the loop).
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    return engine


class StoreSessions(async_sessionmaker[AsyncSession]):
    """``sessions()`` for reads; ``sessions.begin()`` for a transaction that writes, which on
    SQLite begins with ``BEGIN IMMEDIATE`` (see ``_sqlite_begin``): the lock is waited for (up to
    the busy timeout, off the event loop) before anything is read, so a read-then-write
    transaction (a count under a cap, a delete after a lookup) never fails to upgrade."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self._write_bind = engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})

    def begin(self) -> Any:
        session = self(bind=self._write_bind)
        return session._maker_context_manager()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return StoreSessions(engine)
