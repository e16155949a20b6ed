"""Authentication: Bearer key → :class:`Caller`, with a short-TTL cache in front of the store."""

from __future__ import annotations

import time
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import Settings
from server.context import Caller
from server.errors import PlutosError
from server.keys import hash_key
from server.store.models import Account, ApiKey

_LIMIT_FIELDS = ("requests_per_minute", "requests_per_hour", "requests_per_day", "concurrent_requests")


def invalid_key(message: str = "Invalid or missing API key.") -> PlutosError:
    return PlutosError("invalid_api_key", message)


class Authenticator:
    """Looks keys up by hash. Positive and negative answers are cached for ``ttl`` seconds, so a
    revoked key stops working within that time; expiry is checked on every call."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, max_entries: int = 10000
    ):
        self._sessions = sessions
        self._settings = settings
        self._ttl = settings.auth_cache_ttl
        self._max = max_entries
        # hash -> (cached_until, caller or None, expires_at epoch or None)
        self._cache: OrderedDict[str, tuple[float, Caller | None, float | None]] = OrderedDict()

    async def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise invalid_key("Missing API key. Send it as 'Authorization: Bearer YOUR_API_KEY'.")
        scheme, _, secret = authorization.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise invalid_key("Malformed Authorization header. Use 'Authorization: Bearer YOUR_API_KEY'.")
        if len(secret) > 256:
            raise invalid_key()
        digest = hash_key(secret)
        now = time.time()
        entry = self._cache.get(digest)
        if entry is None or entry[0] < now:
            entry = await self._load(digest, now)
        cached_caller, expires = entry[1], entry[2]
        if cached_caller is None:
            raise invalid_key("Invalid API key.")
        if expires is not None and expires <= now:
            raise invalid_key("API key has expired.")
        return cached_caller

    def invalidate(self) -> None:
        self._cache.clear()

    async def _load(self, digest: str, now: float) -> tuple[float, Caller | None, float | None]:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey, Account)
                    .join(Account, ApiKey.account_id == Account.id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
        entry: tuple[float, Caller | None, float | None]
        if row is None or row[0].revoked_at is not None or row[1].plan not in self._settings.plans:
            entry = (now + self._ttl, None, None)
        else:
            key, account = row
            expires = key.expires_at.timestamp() if key.expires_at is not None else None
            entry = (
                now + self._ttl,
                Caller(
                    account_id=account.id,
                    key_id=key.id,
                    plan=self._settings.plans[account.plan],
                    scopes=frozenset(key.scopes) if key.scopes is not None else None,
                    models=frozenset(key.models) if key.models is not None else None,
                    limits={f: v for f in _LIMIT_FIELDS if (v := getattr(key, f)) is not None},
                ),
                expires,
            )
        self._cache[digest] = entry
        self._cache.move_to_end(digest)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return entry
