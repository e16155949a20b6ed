"""Where claimed keys and their answers live: the database (default) or Redis (replicas)."""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.store.models import IdempotencyKey
from server.store.upsert import insert_ignoring_conflicts

Clock = Callable[[], float]
log = logging.getLogger("plutos.idempotency")

CLAIMED, REPLAY, IN_PROGRESS, MISMATCH = "claimed", "replay", "in_progress", "mismatch"


@dataclass(slots=True)
class Outcome:
    """A finished call's answer: its response messages (one for a unary call, each of a stream's in
    order) and, for a call that failed with a 4xx, the error after them."""

    messages: list[bytes] = field(default_factory=list)
    error: dict[str, Any] | None = None  # {"code", "message", "details"}

    def encode(self) -> bytes:
        return orjson.dumps({"m": [base64.b64encode(m).decode() for m in self.messages], "e": self.error})

    @classmethod
    def decode(cls, raw: bytes | str) -> Outcome:
        obj = orjson.loads(raw)
        return cls([base64.b64decode(m) for m in obj["m"]], obj.get("e"))


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

    @abc.abstractmethod
    async def claim(self, account_id: str, key: str, fingerprint: str, owner: str) -> Claim: ...

    @abc.abstractmethod
    async def complete(self, account_id: str, key: str, owner: str, outcome: Outcome) -> None: ...

    @abc.abstractmethod
    async def release(self, account_id: str, key: str, owner: str) -> None: ...


def _verdict(fingerprint: str, held: str, done: bool, outcome: bytes | str | None) -> Claim:
    if held != fingerprint:
        return Claim(MISMATCH)
    if done and outcome is not None:
        return Claim(REPLAY, Outcome.decode(outcome))
    # Retry-After: a second (polling sooner gains little; an answer rarely takes much longer).
    return Claim(IN_PROGRESS, retry_after=1)


class DatabaseIdempotencyStore(IdempotencyStore):
    """The ``idempotency_keys`` table: its primary key (account, key) makes the claim atomic on
    every replica sharing the database, and answers survive a restart. Every ``PRUNE_EVERY``
    answers stored, a background task deletes the rows past their retention."""

    PRUNE_EVERY = 1000

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float, lease: float, clock: Clock = time.time):
        super().__init__(ttl, lease, clock)
        self._sessions = sessions
        self._table: Any = IdempotencyKey.__table__
        self._stored = 0
        self._pruning: asyncio.Task[None] | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def claim(self, account_id: str, key: str, fingerprint: str, owner: str) -> Claim:
        for _ in range(5):
            now = self._now()
            fresh = {
                "fingerprint": fingerprint,
                "owner": owner,
                "done": False,
                "outcome": None,
                "created_at": now,
                "locked_until": now + timedelta(seconds=self.lease),
                "expires_at": now + timedelta(seconds=self.ttl),
            }
            async with self._sessions() as session, session.begin():
                dialect = session.bind.dialect.name
                stmt = insert_ignoring_conflicts(dialect, self._table, {"account_id": account_id, "key": key, **fresh})
                if (await session.execute(stmt)).rowcount == 1:  # type: ignore[attr-defined]
                    return Claim(CLAIMED)
                row = (
                    await session.execute(
                        select(IdempotencyKey).where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
                    )
                ).scalar_one_or_none()
                if row is None:  # released meanwhile: try again
                    continue
                if row.expires_at <= now or (not row.done and row.locked_until <= now):
                    # Expired, or its holder died: take it over, unless someone else just did.
                    taken = await session.execute(
                        update(IdempotencyKey)
                        .where(
                            IdempotencyKey.account_id == account_id,
                            IdempotencyKey.key == key,
                            IdempotencyKey.owner == row.owner,
                        )
                        .values(**fresh)
                    )
                    if taken.rowcount == 1:  # type: ignore[attr-defined]
                        return Claim(CLAIMED)
                    continue
                return _verdict(fingerprint, row.fingerprint, row.done, row.outcome)
        return Claim(IN_PROGRESS)

    async def complete(self, account_id: str, key: str, owner: str, outcome: Outcome) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.account_id == account_id, IdempotencyKey.key == key, IdempotencyKey.owner == owner
                )
                .values(done=True, outcome=outcome.encode().decode())
            )
        self._stored += 1
        if self._stored % self.PRUNE_EVERY == 0 and (self._pruning is None or self._pruning.done()):
            self._pruning = asyncio.create_task(self._prune_quietly(), name="idempotency-prune")

    async def _prune_quietly(self) -> None:
        try:
            await self.prune()
        except Exception:
            log.warning("pruning expired idempotency keys failed", exc_info=True)

    async def close(self) -> None:
        if self._pruning is not None and not self._pruning.done():
            self._pruning.cancel()

    async def release(self, account_id: str, key: str, owner: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.account_id == account_id, IdempotencyKey.key == key, IdempotencyKey.owner == owner
                )
            )

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

    async def complete(self, account_id: str, key: str, owner: str, outcome: Outcome) -> None:
        args = [owner, outcome.encode(), int(self.ttl * 1000)]
        await self._complete(keys=[self._key(account_id, key)], args=args)

    async def release(self, account_id: str, key: str, owner: str) -> None:
        await self._release(keys=[self._key(account_id, key)], args=[owner])


def create_idempotency_store(
    redis_url: str, sessions: async_sessionmaker[AsyncSession], ttl: float, lease: float, clock: Clock = time.time
) -> IdempotencyStore:
    """Redis when ``redis_url`` is set (shared by the replicas), else the database."""
    if redis_url:
        return RedisIdempotencyStore(redis_url, ttl, lease, clock)
    return DatabaseIdempotencyStore(sessions, ttl, lease, clock)
