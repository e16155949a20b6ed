"""Group commit: rows from many concurrent requests go to the database in one transaction.

A request hands its rows to :meth:`RecordWriter.write` and waits for the commit that carries them,
so a record is durable and readable (``GET /v1/process/{id}``) as soon as the response is sent,
yet under load one commit serves many requests instead of one commit each.

Hooks (:meth:`RecordWriter.add_hook`) run inside that transaction and see every row of it: the
usage roll-up and the webhook outbox are written atomically with the records they derive from.

Rows arrive as ORM objects (hooks read their attributes) but are written as bulk ``INSERT``s,
one ``executemany`` per table in foreign-key order, not through the unit of work. The whole
transaction is synchronous code (hooks included): on an SQLite file it runs on the writer's own
thread with the plain sqlite3 driver, one thread hop per commit instead of one per statement
(a commit of one request's rows: ~0.2 ms instead of ~1.5 ms through aiosqlite); on PostgreSQL it
runs through ``AsyncSession.run_sync`` on asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, insert, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapper, Session

from core.errors import PlutosError
from server.observability.metrics import COMMIT_BATCH, COMMIT_DURATION
from server.store.database import sqlite_file_writer_engine
from server.store.faults import is_transient, sqlite_busy, store_unavailable
from server.store.models import Base

log = logging.getLogger("plutos.store.writer")

# The writer checkpoints the WAL itself every this many commits (SQLite's own automatic checkpoint,
# every 1,000 pages, would run inside whichever commit crosses the line, on the loop or not).
CHECKPOINT_EVERY = 100

WriteHook = Callable[["WriteTransaction", list[Any]], None]


class WriteStep:
    """Work done in a write transaction beside the rows: pass it to :meth:`RecordWriter.write`
    among them. ``run(tx)`` is called after the transaction's rows and hooks (again if the
    transaction is retried); what it finds holds once ``write`` has returned, i.e. committed.
    ``tx.salvaging`` is true when the rows go one by one because the store refused one of them."""

    __slots__ = ()

    def run(self, tx: WriteTransaction) -> None:
        raise NotImplementedError


class RecordWriter:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], max_batch: int = 512, retry_budget: float = 30.0
    ) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._hooks: list[WriteHook] = []
        self._salvage: dict[type, Callable[[Any], Any | None]] = {}
        # Seconds a commit is retried for after transient failures (locks, connections).
        self.retry_budget = retry_budget
        # Seconds one attempt on the writer's thread waits for SQLite's write lock.
        self.lock_wait = LOCK_WAIT
        self._listeners: list[Callable[[], None]] = []
        bind = sessions.kw.get("bind")
        # On an SQLite file: a plain sqlite3 engine driven by one thread of the writer's own.
        self._sync_engine: Engine | None = None
        if isinstance(bind, AsyncEngine):
            self._sync_engine = sqlite_file_writer_engine(bind.url)
        self._thread = ThreadPoolExecutor(1, "record-writer") if self._sync_engine is not None else None
        self._thread_conn: Connection | None = None  # the writer thread's own
        self._expected = 0  # calls in progress that will write (see expect())
        self._since_checkpoint = 0  # commits since the writer last checkpointed the WAL
        self._busy = False  # a batch is off the queue and not yet settled

    def add_hook(self, hook: WriteHook) -> None:
        """Run ``hook(transaction, rows)`` in every write transaction, in the order added.

        Hooks are synchronous and may run on the writer's thread: they touch only the session
        and state of their own that the event loop reads after the commit."""
        self._hooks.append(hook)

    def add_salvage(self, cls: type, replacement: Callable[[Any], Any | None]) -> None:
        """When the store refuses a row of ``cls`` (a value it cannot take), store
        ``replacement(row)`` in its place (None: leave it out). :meth:`write` returns the rows
        that were replaced, so the caller can answer what was stored."""
        self._salvage[cls] = replacement

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every successful commit."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    def expect(self) -> _Expected:
        """``with writer.expect():`` around a call that will write. When the calls in progress
        have all handed their rows in, nothing else can run meanwhile, so on SQLite the commit
        runs on the event loop itself: the same work without the thread hop (~0.15 ms here),
        which is what a lone call waits for. Otherwise it runs on the writer's thread."""
        return _Expected(self)

    def holding(self) -> contextlib.AbstractContextManager[list[Any]]:
        """``with writer.holding() as rows:`` — inside (this task and the tasks it starts),
        :meth:`write` collects the rows it is given in ``rows`` and returns ``()`` at once instead
        of committing them; the caller must write them afterwards, with rows or
        :class:`WriteStep` objects of its own in the same transaction (the idempotency store commits a
        call's record with its stored answer this way). :meth:`submit` is not held."""
        return _holding()

    async def write(self, *rows: Any) -> tuple[Any, ...]:
        """Persist ``rows`` together; returns once they are committed: the rows the store refused
        and that were replaced by their salvaged form or left out (normally none).

        Transient failures (a lock held elsewhere, a dropped connection) are retried for up to
        ``retry_budget`` seconds; then :class:`PlutosError` ``service_unavailable`` is raised.
        Rows the store refuses never sink the other calls committed with them.
        A caller cancelled while it waits does not take its rows back: they are queued already
        and committed all the same (the writer skips answering a cancelled wait).

        Rows may include :class:`WriteStep` objects, run in the same transaction."""
        held = _HELD.get()
        if held is not None and held.open:
            held.extend(rows)
            return ()
        return await self.submit(*rows)

    def submit(self, *rows: Any) -> asyncio.Future[tuple[Any, ...]]:
        """Queue ``rows`` without waiting (used where the caller is already gone)."""
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((rows, future))
        return future

    async def close(self) -> None:
        """Flush everything queued, then stop."""
        if self._task is None:
            return
        # Until the queue is empty and the batch taken from it is committed (cancelling the task
        # mid-commit would lose that batch).
        while not self._queue.empty() or self._busy:
            await asyncio.sleep(0.01)
            if self._task.done():
                break
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._thread is not None and self._sync_engine is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close_thread_conn)
            self._thread.shutdown(wait=False)

    async def _run(self) -> None:
        while True:
            self._busy = False
            batch = [await self._queue.get()]
            self._busy = True
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # Everyone who will write has: the loop has nothing else to do but wait for this commit.
            inline = len(batch) >= self._expected
            await self._commit_batch(batch, inline)
            if self._thread is not None and self._since_checkpoint >= CHECKPOINT_EVERY:
                # On the thread, never on the loop: a checkpoint writes the database file and syncs it.
                self._since_checkpoint = 0
                try:
                    await asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
                except Exception:
                    log.exception("WAL checkpoint failed")

    async def _commit_batch(self, batch: list[_Queued], inline: bool) -> None:
        """Commit the calls of ``batch`` together; if that fails for good, each call on its own,
        and a call that still fails with its bad rows replaced (see :meth:`add_salvage`)."""
        started = time.perf_counter()
        try:
            await self._commit_retrying([row for rows, _ in batch for row in rows], inline)
            COMMIT_DURATION.observe(time.perf_counter() - started)
            COMMIT_BATCH.observe(len(batch))
        except Exception as exc:
            if is_transient(exc):  # the store stayed busy or away for the whole budget
                log.error("writing %d calls' rows failed: the store stayed unavailable (%r)", len(batch), exc)
                _settle(batch, store_unavailable())
                return
            if len(batch) > 1:
                log.warning("a group commit of %d calls failed (%r): committing each on its own", len(batch), exc)
            for item in batch:
                await self._commit_alone(item, failed=exc if len(batch) == 1 else None)
            return
        _settle(batch)

    async def _commit_alone(self, item: _Queued, failed: BaseException | None) -> None:
        rows = list(item[0])
        if failed is None:
            try:
                await self._commit_retrying(rows)
                _settle([item])
                return
            except Exception as exc:
                if is_transient(exc):
                    _settle([item], store_unavailable())
                    return
                failed = exc
        log.error("writing a call's %d rows failed (%r): storing them row by row", len(rows), failed)
        replaced: list[Any] = []
        try:
            await self._commit_retrying(rows, salvage=replaced)
        except Exception as exc:
            log.exception("writing a call's %d rows failed even row by row", len(rows))
            _settle([item], store_unavailable() if is_transient(exc) else _not_stored())
            return
        _settle([item], result=tuple(replaced))

    async def _commit_retrying(self, rows: list[Any], inline: bool = False, salvage: list[Any] | None = None) -> None:
        """:meth:`_commit`, again after a transient failure (lock, serialization, connection) with
        growing pauses, for up to ``retry_budget`` seconds; the last error is raised."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_budget
        pause = 0.01
        while True:
            if salvage is not None:
                salvage.clear()
            try:
                await self._commit(rows, inline, salvage)
                return
            except Exception as exc:
                if not is_transient(exc) or loop.time() + pause > deadline:
                    raise
                log.warning("commit failed (%r); retrying in %.2fs", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
            inline = False

    async def _commit(self, rows: list[Any], inline: bool = False, salvage: list[Any] | None = None) -> None:
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            # On the loop only when the write lock is free right now (never waits for it there).
            if not (inline and salvage is None and self._commit_sync(rows, None, wait=False)):
                await loop.run_in_executor(self._thread, self._commit_sync, rows, salvage, True)
            self._since_checkpoint += 1
        else:
            async with self._sessions.begin() as session:
                await session.run_sync(self._write_in_session, rows, salvage)
        for listener in self._listeners:
            listener()

    def _commit_sync(self, rows: list[Any], salvage: list[Any] | None, wait: bool) -> bool:
        """Commit on the SQLite file; False, having done nothing, when ``wait`` is false and
        another connection holds the write lock."""
        # One connection kept open by the writer's thread (no pool check-out, reset and check-in
        # per commit, no Session unless a hook asks for one): ~0.3 ms less per commit.
        assert self._sync_engine is not None
        conn = self._thread_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._thread_conn = self._sync_engine.connect()
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        # BEGIN IMMEDIATE: the write lock is taken first, so writers of several processes queue
        # for it instead of failing to upgrade a read transaction. The connection's busy timeout
        # is 0: on the event loop a held lock answers at once (and the commit moves to the
        # thread); on the thread we wait for it here, with short sleeps, up to lock_wait.
        if not _begin_immediate(dbapi, self.lock_wait if wait else 0.0):
            return False  # only when not waiting: waiting either begins or raises
        try:
            tx = WriteTransaction(conn)
            self._write(tx, rows, salvage)
            tx.finish()
            if conn.in_transaction():  # statements ran through SQLAlchemy
                conn.commit()
            else:
                dbapi.commit()
        except Exception:
            with contextlib.suppress(Exception):
                dbapi.rollback()
            conn.close()  # start the next commit on a fresh connection
            self._thread_conn = None
            raise
        return True

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database (PASSIVE: readers and other writers carry on).
        The writer's connection does not checkpoint on its own (``wal_autocheckpoint=0``), so no
        commit on the event loop ever waits for one."""
        conn = self._thread_conn
        if conn is not None and not conn.closed and not conn.invalidated:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            dbapi.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _write_in_session(self, session: Session, rows: list[Any], salvage: list[Any] | None) -> None:
        tx = WriteTransaction(session.connection(), session)
        self._write(tx, rows, salvage)
        tx.finish()

    def _write(self, tx: WriteTransaction, rows: list[Any], salvage: list[Any] | None = None) -> None:
        steps = [r for r in rows if isinstance(r, WriteStep)]
        if steps:
            rows = [r for r in rows if not isinstance(r, WriteStep)]
        if salvage is not None:
            tx.salvaging = True
            rows = self._write_row_by_row(tx, rows, salvage)
        else:
            sqlite = tx.dialect_name == "sqlite"
            for table, given, objects in _groups(rows):
                if not (sqlite and raw_sqlite_insert(tx, table, given, objects)):
                    # Core: column defaults still apply
                    tx.execute(insert(table), [{k: d[k] for k in given} for d in objects])
        for hook in self._hooks:
            hook(tx, rows)
        for step in steps:
            step.run(tx)

    def _write_row_by_row(self, tx: WriteTransaction, rows: list[Any], salvage: list[Any]) -> list[Any]:
        """Each row in a savepoint of its own; a row the store refuses is replaced by its class's
        salvaged form (or left out), and appended to ``salvage``. Returns the rows stored."""
        stored: list[Any] = []
        for table, given, objects in _groups(rows):
            for values in objects:
                row = next(r for r in rows if r.__dict__ is values)
                if _insert_in_savepoint(tx, table, {k: values[k] for k in given}):
                    stored.append(row)
                    continue
                salvage.append(row)
                make = self._salvage.get(type(row))
                replacement = make(row) if make is not None else None
                if replacement is None:
                    continue
                r_table, r_given = _table_of(type(replacement))[0], _given_columns(replacement)
                if _insert_in_savepoint(tx, r_table, {k: replacement.__dict__[k] for k in r_given}):
                    stored.append(replacement)
        return stored

    def _close_thread_conn(self) -> None:
        if self._thread_conn is not None:
            self._thread_conn.close()
            self._thread_conn = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()


class _Held(list[Any]):
    """Rows held by :meth:`RecordWriter.holding`; once the block is left (``open`` false), a task
    started inside that writes later is not held: nobody would commit its rows."""

    open = True


_HELD: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("plutos_writer_held", default=None)


@contextlib.contextmanager
def _holding() -> Iterator[list[Any]]:
    held = _Held()
    token = _HELD.set(held)
    try:
        yield held
    finally:
        held.open = False
        _HELD.reset(token)


class _Expected:
    __slots__ = ("_writer",)

    def __init__(self, writer: RecordWriter) -> None:
        self._writer = writer

    def __enter__(self) -> None:
        self._writer._expected += 1

    def __exit__(self, *_: object) -> None:
        self._writer._expected -= 1


class WriteTransaction:
    """The transaction a commit runs in, as write hooks see it: Core statements on its connection,
    and an ORM Session joined to it for hooks that add objects (made on first use)."""

    def __init__(self, connection: Connection, session: Session | None = None) -> None:
        self.connection = connection
        self.dialect_name: str = connection.dialect.name
        self.salvaging = False  # rows go one by one (see WriteStep)
        self._session = session
        self._own_session = False

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.connection.execute(statement, parameters)

    def session(self) -> Session:
        if self._session is None:
            # Works in a savepoint of the connection's transaction; committing it releases the
            # savepoint, so what it wrote commits or rolls back with everything else.
            self._session = Session(bind=self.connection, join_transaction_mode="create_savepoint")
            self._own_session = True
        return self._session

    def dbapi(self) -> Any:
        """The driver's own connection (sqlite3 on SQLite), in this transaction."""
        return self.connection.connection.dbapi_connection

    def finish(self) -> None:
        """Before the commit: what hooks added to the session goes to the database."""
        if self._session is None:
            return
        if self._own_session:
            self._session.commit()  # flush and release the savepoint
            self._session.close()
        else:
            self._session.flush()


_TABLE_ORDER: dict[Table, int] = {table: i for i, table in enumerate(Base.metadata.sorted_tables)}
_COLUMNS: dict[type, tuple[Table, frozenset[str]]] = {}


def _table_of(cls: type) -> tuple[Table, frozenset[str]]:
    known = _COLUMNS.get(cls)
    if known is None:
        mapper: Mapper[Any] = inspect(cls)
        known = _COLUMNS[cls] = (cast(Table, mapper.local_table), frozenset(a.key for a in mapper.column_attrs))
    return known


# (class, the keys of a row's __dict__ in order) -> (class, the columns among them).
_GIVEN: dict[tuple[type, tuple[str, ...]], tuple[type, frozenset[str]]] = {}


def _groups(rows: list[Any]) -> list[tuple[Table, frozenset[str], list[dict[str, Any]]]]:
    """ORM objects → (table, the columns they were given, their ``__dict__``s) per table and set
    of given columns, parents first, each group in the order of ``rows``.

    Only attributes the object was given are sent, so column defaults apply to the others
    (attribute keys are the column names throughout the models). The ``__dict__``s also hold
    SQLAlchemy's instance state: read the given columns only."""
    groups: dict[tuple[type, frozenset[str]], list[dict[str, Any]]] = {}
    for row in rows:
        values = row.__dict__
        shape = (type(row), tuple(values))
        key = _GIVEN.get(shape)
        if key is None:
            columns = _table_of(shape[0])[1]
            key = _GIVEN[shape] = (shape[0], frozenset(k for k in shape[1] if k in columns))
        groups.setdefault(key, []).append(values)
    ordered = sorted(groups.items(), key=lambda item: _TABLE_ORDER[_table_of(item[0][0])[0]])
    return [(_table_of(cls)[0], given, values) for (cls, given), values in ordered]


# Per column of a raw statement: the row's key (None: a constant), SQLAlchemy's bind processor, the constant.
RawColumn = tuple[str | None, Callable[[Any], Any] | None, Any]
# (table, given columns) -> (INSERT statement with ? placeholders, its columns) or None when
# SQLAlchemy must do it (a column default that is not a plain value).
_RawPlan = tuple[str, list[RawColumn]]
_RAW: dict[tuple[Table, frozenset[str]], _RawPlan | None] = {}


def _raw_plan(table: Table, given: frozenset[str], dialect: Any) -> _RawPlan | None:
    columns: list[RawColumn] = []
    names: list[str] = []
    for column in table.columns:
        if column.key in given:
            key, const = column.key, None
        elif column.default is None:
            continue  # NULL, the server's default or an autoincrement key: as Core's insert()
        elif column.default.is_scalar:
            key, const = None, column.default.arg  # type: ignore[attr-defined]
        else:
            return None
        names.append(column.name)
        columns.append((key, column.type._cached_bind_processor(dialect), const))
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    return sql, columns


def raw_sqlite_insert(tx: WriteTransaction, table: Table, given: frozenset[str], values: list[dict[str, Any]]) -> bool:
    """``INSERT`` ``values`` (dicts holding at least the ``given`` columns) on the session's
    sqlite3 connection, in its transaction: the statement and each column's conversion
    (SQLAlchemy's own bind processors, so what is stored is what Core would store) are worked
    out once per table and set of columns. Core's executemany spends ~20 µs per row on this.
    False: not done, use Core."""
    plan_key = (table, given)
    if plan_key not in _RAW:
        _RAW[plan_key] = _raw_plan(table, given, tx.connection.dialect)
    plan = _RAW[plan_key]
    if plan is None:
        return False
    raw_sqlite_executemany(tx, *plan, values)
    return True


def bound_columns(table: Table, names: list[str], dialect: Any) -> list[RawColumn]:
    """``names`` of ``table`` as raw columns read from each row, with their bind processors."""
    return [(name, table.c[name].type._cached_bind_processor(dialect), None) for name in names]


def raw_sqlite_executemany(
    tx: WriteTransaction, sql: str, columns: list[RawColumn], values: list[dict[str, Any]]
) -> None:
    """Run ``sql`` (an ``INSERT`` of one row, ``?`` placeholders in ``columns``' order) for every
    row of ``values`` on the transaction's sqlite3 connection, each value converted as SQLAlchemy
    would. The rows go in multi-row ``INSERT``s (``VALUES (…), (…)``, in order): one statement
    step per few hundred rows instead of one per row, and so one release of the GIL, not
    dozens — each of which, under load, waits for the event loop to give the GIL back."""
    params: list[Any] = []
    for row in values:
        for key, proc, const in columns:
            value = row[key] if key is not None else const
            params.append(value if proc is None else proc(value))
    dbapi = tx.dbapi()
    per_statement = max(1, min(_MAX_ROWS_PER_INSERT, _MAX_VARIABLES // len(columns)))
    width = len(columns)
    for start in range(0, len(values), per_statement):
        n = min(per_statement, len(values) - start)
        dbapi.execute(_multi_row(sql, n), params[start * width : (start + n) * width])


# SQLite's default limits: bound variables per statement (3.32+) and, to stay clear of the
# compound-SELECT limit older versions applied to VALUES lists, rows per statement.
_MAX_VARIABLES = 32766
_MAX_ROWS_PER_INSERT = 500
_SPLIT: dict[str, tuple[str, str, str]] = {}


def _multi_row(sql: str, rows: int) -> str:
    """``INSERT … VALUES (?, ?) …tail`` → the same statement with ``rows`` value tuples."""
    if rows == 1:
        return sql
    parts = _SPLIT.get(sql)
    if parts is None:
        start = sql.index(" VALUES (") + len(" VALUES ")
        end = sql.index(")", start) + 1
        parts = _SPLIT[sql] = (sql[:start], sql[start:end], sql[end:])
    head, one, tail = parts
    return head + ", ".join([one] * rows) + tail


_Queued = tuple[tuple[Any, ...], "asyncio.Future[tuple[Any, ...]]"]
# How long a commit on the writer's thread waits for SQLite's write lock before the attempt fails
# (then retried, within the writer's retry budget).
LOCK_WAIT = 5.0


def _begin_immediate(dbapi: Any, wait: float) -> bool:
    """``BEGIN IMMEDIATE`` on a connection whose busy timeout is 0, retried with short sleeps for
    up to ``wait`` seconds while another connection holds the write lock. False: not begun."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            dbapi.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if not sqlite_busy(exc):
                raise
            if wait <= 0:
                return False
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _given_columns(row: Any) -> frozenset[str]:
    columns = _table_of(type(row))[1]
    return frozenset(k for k in row.__dict__ if k in columns)


def _insert_in_savepoint(tx: WriteTransaction, table: Table, values: dict[str, Any]) -> bool:
    """INSERT one row in a savepoint; False (the savepoint rolled back) if the store refuses it."""
    try:
        with tx.connection.begin_nested():
            tx.execute(insert(table), [values])
    except Exception as exc:
        if is_transient(exc):
            raise
        log.error("the store refused a row of %s: %r", table.name, exc)
        return False
    return True


def _not_stored() -> PlutosError:
    return PlutosError("internal_error", "The result could not be stored.")


def _settle(batch: list[_Queued], error: BaseException | None = None, result: tuple[Any, ...] = ()) -> None:
    for _, future in batch:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
