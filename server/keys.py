"""API keys: creation, hashing, lookup, revocation and rotation.

A key looks like ``pk_<43 url-safe characters>``. Only its SHA-256 is stored, plus the first
characters (``prefix``) so people can tell their keys apart in listings.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.ids import new_id
from server.store.models import Account, ApiKey, utcnow

KEY_PREFIX = "pk_"
VISIBLE_PREFIX_LEN = 10
SCOPES = ("process", "batch", "stream", "models", "usage", "webhooks")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A newly created key. ``secret`` is shown once and never stored."""

    id: str
    secret: str
    prefix: str
    account_id: str
    plan: str
    name: str
    scopes: list[str] | None
    models: list[str] | None
    expires_at: datetime | None


async def create_key(
    sessions: async_sessionmaker[AsyncSession],
    *,
    plan: str,
    name: str = "",
    account_id: str | None = None,
    scopes: list[str] | None = None,
    models: list[str] | None = None,
    expires_at: datetime | None = None,
    limits: dict[str, int] | None = None,
) -> CreatedKey:
    """Create a key, and its account when ``account_id`` is not given."""
    secret = generate_secret()
    async with sessions.begin() as session:
        if account_id is None:
            account = Account(id=new_id("acct"), name=name, plan=plan)
            session.add(account)
        else:
            found = await session.get(Account, account_id)
            if found is None:
                raise LookupError(f"no account {account_id}")
            account = found
        key = ApiKey(
            id=new_id("key"),
            account_id=account.id,
            name=name,
            prefix=secret[:VISIBLE_PREFIX_LEN],
            key_hash=hash_key(secret),
            scopes=scopes,
            models=models,
            expires_at=expires_at,
            **(limits or {}),
        )
        session.add(key)
    return CreatedKey(
        id=key.id,
        secret=secret,
        prefix=key.prefix,
        account_id=account.id,
        plan=account.plan,
        name=name,
        scopes=scopes,
        models=models,
        expires_at=expires_at,
    )


async def list_keys(session: AsyncSession) -> list[tuple[ApiKey, Account]]:
    rows = await session.execute(
        select(ApiKey, Account).join(Account, ApiKey.account_id == Account.id).order_by(ApiKey.created_at)
    )
    return [(k, a) for k, a in rows.tuples()]


async def revoke_key(sessions: async_sessionmaker[AsyncSession], key_id: str) -> bool:
    async with sessions.begin() as session:
        key = await session.get(ApiKey, key_id)
        if key is None:
            return False
        if key.revoked_at is None:
            key.revoked_at = utcnow()
        return True


async def rotate_key(sessions: async_sessionmaker[AsyncSession], key_id: str, grace: timedelta) -> CreatedKey | None:
    """Issue a replacement with the same account, scopes and limits; the old secret keeps working
    until ``grace`` has passed (or at once, with a zero grace)."""
    async with sessions.begin() as session:
        old = await session.get(ApiKey, key_id)
        if old is None or old.revoked_at is not None:
            return None
        account = await session.get(Account, old.account_id)
        assert account is not None
        secret = generate_secret()
        new = ApiKey(
            id=new_id("key"),
            account_id=old.account_id,
            name=old.name,
            prefix=secret[:VISIBLE_PREFIX_LEN],
            key_hash=hash_key(secret),
            scopes=old.scopes,
            models=old.models,
            requests_per_minute=old.requests_per_minute,
            requests_per_hour=old.requests_per_hour,
            requests_per_day=old.requests_per_day,
            concurrent_requests=old.concurrent_requests,
            expires_at=old.expires_at,
        )
        session.add(new)
        cutoff = utcnow() + grace
        if old.expires_at is None or old.expires_at > cutoff:
            old.expires_at = cutoff
        old.replaced_by = new.id
    return CreatedKey(
        id=new.id,
        secret=secret,
        prefix=new.prefix,
        account_id=account.id,
        plan=account.plan,
        name=new.name,
        scopes=new.scopes,
        models=new.models,
        expires_at=new.expires_at,
    )
