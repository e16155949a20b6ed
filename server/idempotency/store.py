"""Where claimed keys and their answers live: the database (default) or Redis (replicas)."""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.store.models import IdempotencyKey
from server.store.writer import RecordWriter, WriteStep, WriteTransaction

Clock = Callable[[], float]
log = logging.getLogger("plutos.idempotency")

CLAIMED, REPLAY, IN_PROGRESS, MISMATCH = "claimed", "replay", "in_progress", "mismatch"


@dataclass(slots=True)
class Outcome:
    """A finished call's answer: its response messages (one for a unary call, each of a stream's in
    order), for a call that failed with a 4xx the error after them, and the response metadata that
    describe the answer (:data:`~server.call_state.ANSWER_METADATA`: ``x-process-id``,
    ``x-cache``), so a replay carries the same headers as the first answer."""

    messages: list[bytes] = field(default_factory=list)
    error: dict[str, Any] | None = None  # {"code", "message", "details"}
    metadata: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(
            {"m": [base64.b64encode(m).decode() for m in self.messages], "e": self.error, "h": self.metadata}
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Outcome:
        obj = orjson.loads(raw)
        return cls([base64.b64decode(m) for m in obj["m"]], obj.get("e"), obj.get("h") or {})


@dataclass(frozen=True, slots=True)
class Claim:
    status: str  # CLAIMED, REPLAY, IN_PROGRESS or MISMATCH
    outcome: Outcome | None = None  # REPLAY: the answer to send again
    retry_after: int = 1  # IN_PROGRESS: seconds


class IdempotencyStore(abc.ABC):
    """``claim`` → the call runs → ``complete`` (keep its answer) or ``release`` (let a retry run).

    ``owner`` is a random token per claim: ``complete``/``release`` act only on the caller's own
    claim, never on a later one that took over an expired lease."""

    def __init__(self, ttl: float, lease: float, clock: Clock = time.time) -> None:
        self.ttl = ttl
        self.lease = lease
        self.clock = clock

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def holding(self) -> AbstractContextManager[list[Any]]:
        """``with store.holding() as rows:`` around the call: the rows it writes to the store are
        collected in ``rows`` instead, when this store can commit them together with the answer
        (else ``rows`` stays empty and they are written as usual). Leave the block, then hand
        them to :meth:`complete` or :meth:`release`, which must be called."""
        return contextlib.nullcontext([])

    @abc.abstractmethod
    async def claim(self, account_id: str, key: str, fingerprint: str, owner: str) -> Claim: ...

    @abc.abstractmethod
    async def complete(
        self, account_id: str, key: str, owner: str, outcome: Outcome, rows: Sequence[Any] = ()
    ) -> tuple[Any, ...]:
        """Keep ``outcome`` for repeats, committed with the call's held ``rows``; returns the rows
        the store refused (then the claim is released instead). Raises what the writer raises."""

    @abc.abstractmethod
    async def release(self, account_id: str, key: str, owner: str, rows: Sequence[Any] = ()) -> tuple[Any, ...]:
        """Let a retry run again, committing the call's held ``rows``; returns the rows refused."""


def _verdict(fingerprint: str, held: str, done: bool, outcome: bytes | str | None) -> Claim:
    if held != fingerprint:
        return Claim(MISMATCH)
    if done and outcome is not None:
        return Claim(REPLAY, Outcome.decode(outcome))
    # Retry-After: a second (polling sooner gains little; an answer rarely takes much longer).
    return Claim(IN_PROGRESS, retry_after=1)


_TABLE = "idempotency_keys"
_INSERT = (
    f"INSERT INTO {_TABLE} (account_id, key, fingerprint, owner, done, outcome, created_at, locked_until, expires_at)"
    " VALUES (:account_id, :key, :fingerprint, :owner, :done, NULL, :created_at, :locked_until, :expires_at)"
    " ON CONFLICT DO NOTHING"
)
_HELD = (
    "SELECT fingerprint, owner, done, outcome, (expires_at <= :now OR (NOT done AND locked_until <= :now))"
    f" FROM {_TABLE} WHERE account_id = :account_id AND key = :key"
)
_TAKE_OVER = (
    f"UPDATE {_TABLE} SET fingerprint = :fingerprint, owner = :owner, done = :done, outcome = NULL,"
    " created_at = :created_at, locked_until = :locked_until, expires_at = :expires_at"
    " WHERE account_id = :account_id AND key = :key AND owner = :held_by"
)
_MINE = "account_id = :account_id AND key = :key AND owner = :owner"
_COMPLETE_ROW = f"UPDATE {_TABLE} SET done = :done, outcome = :outcome WHERE {_MINE}"
_RELEASE_ROW = f"DELETE FROM {_TABLE} WHERE {_MINE}"
_TIMES = ("created_at", "locked_until", "expires_at", "now")


def _execute(tx: WriteTransaction, sql: str, params: dict[str, Any]) -> Any:
    """``sql`` (named ``:params``, the same text on SQLite and PostgreSQL) in the writer's
    transaction: on SQLite straight on the sqlite3 connection (times and booleans as SQLAlchemy
    stores them), else through Core."""
    if tx.dialect_name == "sqlite":
        for name in _TIMES:
            if name in params:
                params[name] = _sqlite_time(params[name])
        if "done" in params:
            params["done"] = int(params["done"])
        cursor = tx.dbapi().cursor()
        cursor.execute(sql, params)
        return cursor
    return tx.execute(text(sql), params)


_SQLITE_TIME: list[Callable[[Any], Any]] = []


def _sqlite_time(value: datetime) -> Any:
    if not _SQLITE_TIME:
        from sqlalchemy.dialects import sqlite

        process = IdempotencyKey.__table__.c.expires_at.type._cached_bind_processor(sqlite.dialect())
        assert process is not None
        _SQLITE_TIME.append(process)
    return _SQLITE_TIME[0](value)


class _ClaimStep(WriteStep):
    """The claim, in the writer's transaction: one ``INSERT … ON CONFLICT DO NOTHING`` for a new key."""

    __slots__ = ("fingerprint", "lease", "now", "params", "result", "ttl")

    def __init__(
        self, account_id: str, key: str, fingerprint: str, owner: str, now: datetime, ttl: float, lease: float
    ):
        self.params = {"account_id": account_id, "key": key, "fingerprint": fingerprint, "owner": owner}
        self.fingerprint = fingerprint
        self.now = now
        self.ttl = ttl
        self.lease = lease
        self.result = Claim(IN_PROGRESS)

    def run(self, tx: WriteTransaction) -> None:
        fresh = {
            **self.params,
            "done": False,
            "created_at": self.now,
            "locked_until": self.now + timedelta(seconds=self.lease),
            "expires_at": self.now + timedelta(seconds=self.ttl),
        }
        where = {"account_id": self.params["account_id"], "key": self.params["key"]}
        for _ in range(5):
            if _execute(tx, _INSERT, dict(fresh)).rowcount == 1:
                self.result = Claim(CLAIMED)
                return
            row = _execute(tx, _HELD, {**where, "now": self.now}).fetchone()
            if row is None:  # released meanwhile (PostgreSQL: by another transaction): try again
                continue
            held, held_by, done, outcome, stale = row
            if stale:
                # Expired, or its holder died: take it over, unless someone else just did.
                if _execute(tx, _TAKE_OVER, {**fresh, "held_by": held_by}).rowcount == 1:
                    self.result = Claim(CLAIMED)
                    return
                continue
            self.result = _verdict(self.fingerprint, held, bool(done), outcome)
            return
        self.result = Claim(IN_PROGRESS)


class _FinishStep(WriteStep):
    """The answer stored (``outcome``) or the claim released (None), in the writer's transaction —
    with the call's own rows when it hands them over. If the store refused one of those rows (the
    call's answer is not what is stored) the claim is released instead: a retry runs again."""

    __slots__ = ("outcome", "params")

    def __init__(self, account_id: str, key: str, owner: str, outcome: str | None) -> None:
        self.params = {"account_id": account_id, "key": key, "owner": owner}
        self.outcome = outcome

    def run(self, tx: WriteTransaction) -> None:
        if self.outcome is None or tx.salvaging:
            _execute(tx, _RELEASE_ROW, dict(self.params))
        else:
            _execute(tx, _COMPLETE_ROW, {**self.params, "done": True, "outcome": self.outcome})


class DatabaseIdempotencyStore(IdempotencyStore):
    """The ``idempotency_keys`` table: its primary key (account, key) makes the claim atomic on
    every replica sharing the database, and answers survive a restart.

    Claims and answers are statements in the group-commit writer's transactions (one statement
    for a new key's claim; the answer in the same transaction as the call's record, see
    :meth:`holding`): no transaction of their own, and on SQLite no thread hop. Every
    ``PRUNE_EVERY`` answers stored, a background task deletes the rows past their retention."""

    PRUNE_EVERY = 1000

    def __init__(
        self,
        writer: RecordWriter,
        sessions: async_sessionmaker[AsyncSession],
        ttl: float,
        lease: float,
        clock: Clock = time.time,
    ):
        super().__init__(ttl, lease, clock)
        self._writer = writer
        self._sessions = sessions
        self._stored = 0
        self._pruning: asyncio.Task[None] | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def holding(self) -> AbstractContextManager[list[Any]]:
        return self._writer.holding()

    async def claim(self, account_id: str, key: str, fingerprint: str, owner: str) -> Claim:
        step = _ClaimStep(account_id, key, fingerprint, owner, self._now(), self.ttl, self.lease)
        await self._writer.write(step)
        return step.result

    async def complete(
        self, account_id: str, key: str, owner: str, outcome: Outcome, rows: Sequence[Any] = ()
    ) -> tuple[Any, ...]:
        refused = await self._writer.write(*rows, _FinishStep(account_id, key, owner, outcome.encode().decode()))
        self._stored += 1
        if self._stored % self.PRUNE_EVERY == 0 and (self._pruning is None or self._pruning.done()):
            self._pruning = asyncio.create_task(self._prune_quietly(), name="idempotency-prune")
        return refused

    async def _prune_quietly(self) -> None:
        try:
            await self.prune()
        except Exception:
            log.warning("pruning expired idempotency keys failed", exc_info=True)

    async def close(self) -> None:
        if self._pruning is not None and not self._pruning.done():
            self._pruning.cancel()

    async def release(self, account_id: str, key: str, owner: str, rows: Sequence[Any] = ()) -> tuple[Any, ...]:
        return await self._writer.write(*rows, _FinishStep(account_id, key, owner, None))

    async def prune(self) -> int:
        """Delete answers past their retention; returns how many."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= self._now()))
        return int(result.rowcount)  # type: ignore[attr-defined]


# KEYS[1]: the key. ARGV: owner, the encoded outcome, ttl_ms. Stores the answer only if ``owner``
# still holds the claim.
_COMPLETE = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local held = cjson.decode(v)
if held['o'] ~= ARGV[1] then return 0 end
held['d'] = 1
held['r'] = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(held), 'PX', ARGV[3])
return 1
"""
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['o'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisIdempotencyStore(IdempotencyStore):
    """One Redis string per (account, key): ``SET NX PX lease`` claims it for every replica at once;
    the answer replaces it with the retention period as its expiry. A holder that dies lets its
    claim expire after the lease."""

    def __init__(self, url: str, ttl: float, lease: float, clock: Clock = time.time, prefix: str = "plutos:"):
        super().__init__(ttl, lease, clock)
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.prefix = prefix
        self._complete = self.client.register_script(_COMPLETE)
        self._release = self.client.register_script(_RELEASE)

    async def close(self) -> None:
        await self.client.aclose()

    def _key(self, account_id: str, key: str) -> str:
        # Hashed: bounded length, and the account as a hash tag (one cluster slot per account).
        return f"{self.prefix}idem:{{{account_id}}}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def claim(self, account_id: str, key: str, fingerprint: str, owner: str) -> Claim:
        name = self._key(account_id, key)
        value = orjson.dumps({"f": fingerprint, "o": owner, "d": 0})
        for _ in range(5):
            if await self.client.set(name, value, nx=True, px=int(self.lease * 1000)):
                return Claim(CLAIMED)
            raw = await self.client.get(name)
            if raw is None:  # released or expired meanwhile: try again
                continue
            held = orjson.loads(raw)
            return _verdict(fingerprint, held["f"], bool(held["d"]), held.get("r"))
        return Claim(IN_PROGRESS)

    async def complete(
        self, account_id: str, key: str, owner: str, outcome: Outcome, rows: Sequence[Any] = ()
    ) -> tuple[Any, ...]:
        args = [owner, outcome.encode(), int(self.ttl * 1000)]
        await self._complete(keys=[self._key(account_id, key)], args=args)
        return ()  # holds no rows (see holding)

    async def release(self, account_id: str, key: str, owner: str, rows: Sequence[Any] = ()) -> tuple[Any, ...]:
        await self._release(keys=[self._key(account_id, key)], args=[owner])
        return ()


def create_idempotency_store(
    redis_url: str,
    writer: RecordWriter,
    sessions: async_sessionmaker[AsyncSession],
    ttl: float,
    lease: float,
    clock: Clock = time.time,
) -> IdempotencyStore:
    """Redis when ``redis_url`` is set (shared by the replicas), else the database."""
    if redis_url:
        return RedisIdempotencyStore(redis_url, ttl, lease, clock)
    return DatabaseIdempotencyStore(writer, sessions, ttl, lease, clock)
