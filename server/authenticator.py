"""Authentication: Bearer key → :class:`Caller`, behind a short-TTL ``cachetools.TTLCache`` of the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import PlutosError
from server.call_state import Caller
from server.config import Settings
from server.keys import hash_key
from server.observability.metrics import AUTH_CACHE, AUTH_REJECTED
from server.store.models import Account, ApiKey

if TYPE_CHECKING:
    from server.auth_invalidation import RedisInvalidation

log = logging.getLogger("plutos.auth")

_CACHE_HIT = AUTH_CACHE.labels("hit")
_CACHE_MISS = AUTH_CACHE.labels("miss")
_LIMIT_FIELDS = ("requests_per_minute", "requests_per_hour", "requests_per_day", "concurrent_requests")
# api_keys.last_used_at is written at most once per key per this many seconds (and on shutdown).
LAST_USED_FLUSH_SECONDS = 60.0
_api_keys = ApiKey.__table__
assert isinstance(_api_keys, Table)
# One executemany for every key used since the last flush; never moves a time backwards (replicas).
_TOUCH = (
    update(_api_keys)
    .where(
        _api_keys.c.id == bindparam("key_id"),
        or_(_api_keys.c.last_used_at.is_(None), _api_keys.c.last_used_at < bindparam("used_at")),
    )
    .values(last_used_at=bindparam("used_at"))
)


# A cached answer: the caller (None: no such key), its key's expiry (epoch seconds or None), and
# when a call should start refreshing it in the background (epoch seconds).
_Entry = tuple[Caller | None, float | None, float]


def invalid_key(message: str = "Invalid or missing API key.") -> PlutosError:
    return PlutosError("invalid_api_key", message)


class Authenticator:
    """Looks keys up by hash. Positive and negative answers are cached for ``ttl`` seconds, so a
    revoked key stops working within that time; expiry is checked on every call.

    Under load a key is in use all the time, so its entry never blocks a call on the store:
    once three quarters of its TTL have passed, the next call starts a refresh in the background
    and is answered from the cache; only an entry past its TTL is waited for. Concurrent calls
    that need the same entry share one lookup (no stampede of identical queries when it expires).

    Each accepted call notes its key's id and time in a dict (no store write on the request path);
    a background task writes them to ``api_keys.last_used_at`` every ``last_used_interval`` seconds
    (one executemany per flush, so at most one write per key per interval) and once more on close."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        max_entries: int = 10000,
        last_used_interval: float = LAST_USED_FLUSH_SECONDS,
    ):
        self._sessions = sessions
        self._settings = settings
        self._ttl = settings.auth_cache_ttl
        # hash -> (caller or None, expires_at epoch or None, refresh_after epoch); entries leave
        # after ``ttl`` seconds, or least recently used first beyond ``max_entries``.
        self._cache: TTLCache[str, _Entry] = TTLCache(max_entries, self._ttl, timer=time.time)
        self._loading: dict[str, asyncio.Future[_Entry]] = {}
        self.invalidation: RedisInvalidation | None = None
        # key id -> epoch seconds of its latest accepted call since the last flush
        self._used: dict[str, float] = {}
        self._last_used_interval = last_used_interval
        self._flusher: asyncio.Task[None] | None = None

    async def authenticate(self, authorization: str | None) -> Caller:
        digest = self._digest(authorization)
        now = time.time()
        entry = self._cache.get(digest)
        if entry is None:
            _CACHE_MISS.inc()
            entry = await self._lookup(digest, now)
        else:
            _CACHE_HIT.inc()
            if entry[2] < now and digest not in self._loading:
                self._lookup_in_background(digest, now)
        cached_caller, expires = entry[0], entry[1]
        if cached_caller is None:
            AUTH_REJECTED.labels("invalid").inc()
            raise invalid_key("Invalid API key.")
        if expires is not None and expires <= now:
            AUTH_REJECTED.labels("expired").inc()
            raise invalid_key("API key has expired.")
        if cached_caller.suspended:
            AUTH_REJECTED.labels("suspended").inc()
            raise PlutosError("account_suspended", "This account is suspended. Contact the operator.")
        self._used[cached_caller.key_id] = now
        return cached_caller

    def _digest(self, authorization: str | None) -> str:
        if not authorization:
            AUTH_REJECTED.labels("missing").inc()
            raise invalid_key("Missing API key. Send it as 'Authorization: Bearer YOUR_API_KEY'.")
        scheme, _, secret = authorization.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            AUTH_REJECTED.labels("malformed").inc()
            raise invalid_key("Malformed Authorization header. Use 'Authorization: Bearer YOUR_API_KEY'.")
        if len(secret) > 256:
            AUTH_REJECTED.labels("malformed").inc()
            raise invalid_key()
        return hash_key(secret)

    def invalidate(self) -> None:
        self._cache.clear()

    def forget(self, key_hashes: list[str]) -> None:
        """Drop these keys' entries: their next call reads the store."""
        for digest in key_hashes:
            self._cache.pop(digest, None)

    def start(self) -> None:
        """Start the ``last_used_at`` flusher; with ``redis_url``, subscribe to the other replicas'
        invalidations (server/auth_invalidation.py)."""
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_periodically(), name="plutos-key-last-used")
        if self._settings.redis_url:
            from server.auth_invalidation import RedisInvalidation

            self.invalidation = RedisInvalidation(self._settings.redis_url, self.forget, self.invalidate)
            self.invalidation.start()

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush_last_used()
        if self.invalidation is not None:
            await self.invalidation.close()
            self.invalidation = None

    async def flush_last_used(self) -> int:
        """Write the noted last-use times to ``api_keys.last_used_at``; returns how many keys.
        A failed write is logged and its times kept for the next flush."""
        if not self._used:
            return 0
        used, self._used = self._used, {}
        rows = [{"key_id": k, "used_at": datetime.fromtimestamp(t, UTC)} for k, t in used.items()]
        try:
            async with self._sessions.begin() as session:
                await (await session.connection()).execute(_TOUCH, rows)
        except Exception as err:  # the store is down: keep the times, try again next flush
            log.warning("could not write keys' last use: %r", err)
            for key_id, at in used.items():
                self._used[key_id] = max(at, self._used.get(key_id, 0.0))
            return 0
        return len(rows)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._last_used_interval)
            await self.flush_last_used()

    async def forget_everywhere(self, key_hashes: list[str]) -> None:
        """Drop these keys' entries here and on every replica (at once with Redis; else within the TTL)."""
        self.forget(key_hashes)
        if self.invalidation is not None:
            await self.invalidation.publish(key_hashes)

    async def forget_all_everywhere(self) -> None:
        """Drop every entry here and on every replica (an account's plan or suspension changed)."""
        self.invalidate()
        if self.invalidation is not None:
            await self.invalidation.publish(["*"])

    async def _lookup(self, digest: str, now: float) -> _Entry:
        pending = self._loading.get(digest)
        if pending is None:
            pending = self._lookup_in_background(digest, now)
        return await asyncio.shield(pending)

    def _lookup_in_background(self, digest: str, now: float) -> asyncio.Future[_Entry]:
        task = asyncio.ensure_future(self._load(digest, now))
        self._loading[digest] = task
        task.add_done_callback(partial(self._loaded, digest))
        return task

    def _loaded(self, digest: str, task: asyncio.Future[Any]) -> None:
        self._loading.pop(digest, None)
        if not task.cancelled() and task.exception() is not None:
            # Callers waiting on it get the error; a background refresh's is logged here.
            log.warning("API key lookup failed: %r", task.exception())

    async def _load(self, digest: str, now: float) -> _Entry:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey, Account)
                    .join(Account, ApiKey.account_id == Account.id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
        found: Caller | None = None
        expires: float | None = None
        if row is not None and row[0].revoked_at is None and row[1].plan in self._settings.plans:
            key, account = row
            expires = key.expires_at.timestamp() if key.expires_at is not None else None
            found = Caller(
                account_id=account.id,
                key_id=key.id,
                plan=self._settings.plans[account.plan],
                scopes=frozenset(key.scopes) if key.scopes is not None else None,
                models=frozenset(key.models) if key.models is not None else None,
                limits={f: v for f in _LIMIT_FIELDS if (v := getattr(key, f)) is not None},
                key_prefix=key.prefix,
                suspended=account.suspended_at is not None,
                cache_default=key.cache_default,
            )
            previous = self._cache.get(digest)
            if previous is not None and previous[0] == found:
                found = previous[0]  # unchanged: the same object, so per-caller caches stay warm
        entry = (found, expires, now + 0.75 * self._ttl)
        self._cache[digest] = entry
        return entry
