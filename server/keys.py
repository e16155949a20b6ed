"""API keys and accounts: the one implementation behind the CLI's ``plutos keys …`` and the
management RPCs (server/services/keys.py, server/services/admin.py).

A key looks like ``pk_<43 url-safe characters>``. Only its SHA-256 is stored, plus the first
characters (``prefix``) so people can tell their keys apart in listings. Every change to a key or
an account is written to ``audit_events`` in the same transaction (who: the acting key id, or
``"cli"``; what; when).

Errors are :class:`~core.errors.PlutosError` (``not_found``, ``conflict``), so the CLI prints the
same messages the API returns.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.errors import PlutosError
from core.ids import new_id
from server.store.caps import lock_account
from server.store.models import Account, ApiKey, AuditEvent, utcnow

KEY_PREFIX = "pk_"
VISIBLE_PREFIX_LEN = 10
# The scopes a key without an explicit list holds.
DEFAULT_SCOPES = ("process", "batch", "stream", "models", "usage", "webhooks")
# Every scope: the defaults, `keys` (manage the account's own keys) and `admin` (accounts, any
# account's keys, the audit trail; granted only by `plutos keys create --admin`).
SCOPES = (*DEFAULT_SCOPES, "keys", "admin")
ADMIN_SCOPES = list(SCOPES)
LIMIT_FIELDS = ("requests_per_minute", "requests_per_hour", "requests_per_day", "concurrent_requests")
CLI_ACTOR = "cli"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_status(key: ApiKey, now: datetime) -> str:
    """``revoked``, ``expired``, ``rotated`` (replaced, in its grace period) or ``active``."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.replaced_by is not None:
        return "rotated"
    return "active"


def effective_scopes(scopes: list[str] | None) -> list[str]:
    return list(DEFAULT_SCOPES) if scopes is None else list(scopes)


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
    row: ApiKey | None = None


def audit(
    session: AsyncSession, actor: str, account_id: str, action: str, target_id: str, details: dict[str, Any]
) -> None:
    """Record a change in the session's transaction."""
    session.add(
        AuditEvent(
            id=new_id("aud"),
            actor=actor,
            account_id=account_id,
            action=action,
            target_id=target_id,
            details=details,
            created_at=utcnow(),
        )
    )


def _key_details(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "scopes": key.scopes,
        "models": key.models,
        "limits": {f: v for f in LIMIT_FIELDS if (v := getattr(key, f)) is not None},
        "expiresAt": key.expires_at.isoformat() if key.expires_at else None,
    }


def key_not_found(key_id: str) -> PlutosError:
    # Another account's key is indistinguishable from a missing one.
    return PlutosError("not_found", f"No API key with id '{key_id}'.", {"id": key_id})


def account_not_found(account_id: str) -> PlutosError:
    return PlutosError("not_found", f"No account with id '{account_id}'.", {"id": account_id})


async def create_account(
    sessions: async_sessionmaker[AsyncSession], *, name: str, plan: str, actor: str = CLI_ACTOR
) -> Account:
    async with sessions.begin() as session:
        account = Account(id=new_id("acct"), name=name, plan=plan, created_at=utcnow())
        session.add(account)
        audit(session, actor, account.id, "account.created", account.id, {"name": name, "plan": plan})
    return account


async def update_account(
    sessions: async_sessionmaker[AsyncSession],
    account_id: str,
    *,
    name: str | None = None,
    plan: str | None = None,
    suspended: bool | None = None,
    actor: str = CLI_ACTOR,
) -> Account:
    """Change what is given; returns the account as it is now."""
    async with sessions.begin() as session:
        account = await session.get(Account, account_id)
        if account is None:
            raise account_not_found(account_id)
        changes: dict[str, Any] = {}
        if name is not None and name != account.name:
            account.name = changes["name"] = name
        if plan is not None and plan != account.plan:
            account.plan = changes["plan"] = plan
        if suspended is not None and suspended != (account.suspended_at is not None):
            account.suspended_at = utcnow() if suspended else None
            changes["suspended"] = suspended
        if changes:
            audit(session, actor, account.id, "account.updated", account.id, changes)
    return account


async def create_key(
    sessions: async_sessionmaker[AsyncSession],
    *,
    plan: str = "free",
    name: str = "",
    account_id: str | None = None,
    scopes: list[str] | None = None,
    models: list[str] | None = None,
    expires_at: datetime | None = None,
    limits: dict[str, int] | None = None,
    actor: str = CLI_ACTOR,
    max_keys: int | None = None,
    cache_default: str | None = None,
) -> CreatedKey:
    """Create a key, and an account on ``plan`` when ``account_id`` is not given. Raises
    ``not_found`` for an unknown ``account_id``, and ``invalid_parameters`` when the account
    already has ``max_keys`` keys that are not revoked (counted under the account's lock, so
    concurrent creations cannot pass the cap together)."""
    secret = generate_secret()
    async with sessions.begin() as session:
        if account_id is None:
            account = Account(id=new_id("acct"), name=name, plan=plan, created_at=utcnow())
            session.add(account)
            audit(session, actor, account.id, "account.created", account.id, {"name": name, "plan": plan})
        else:
            found = await session.get(Account, account_id)
            if found is None:
                raise account_not_found(account_id)
            account = found
            if max_keys is not None:
                await lock_account(session, account.id)
                live = (
                    await session.execute(
                        select(func.count()).where(ApiKey.account_id == account.id, ApiKey.revoked_at.is_(None))
                    )
                ).scalar_one()
                if live >= max_keys:
                    raise PlutosError(
                        "invalid_parameters",
                        f"An account may have at most {max_keys} keys that are not revoked.",
                        {"field": "accountId", "max": max_keys},
                    )
        key = ApiKey(
            id=new_id("key"),
            account_id=account.id,
            name=name,
            prefix=secret[:VISIBLE_PREFIX_LEN],
            key_hash=hash_key(secret),
            scopes=scopes,
            models=models,
            expires_at=expires_at,
            created_at=utcnow(),
            cache_default=cache_default,
            **(limits or {}),
        )
        session.add(key)
        audit(session, actor, account.id, "key.created", key.id, _key_details(key))
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
        row=key,
    )


async def list_keys(session: AsyncSession, account_id: str | None = None) -> list[tuple[ApiKey, Account]]:
    """Keys (of one account, or all) with their accounts, oldest first."""
    query = select(ApiKey, Account).join(Account, ApiKey.account_id == Account.id)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    rows = await session.execute(query.order_by(ApiKey.created_at, ApiKey.id))
    return [(k, a) for k, a in rows.tuples()]


async def get_key(session: AsyncSession, key_id: str, account_id: str | None = None) -> ApiKey:
    """The key, if it belongs to ``account_id`` (any account when None); else ``not_found``."""
    key = await session.get(ApiKey, key_id)
    if key is None or (account_id is not None and key.account_id != account_id):
        raise key_not_found(key_id)
    return key


async def update_key(
    sessions: async_sessionmaker[AsyncSession],
    key_id: str,
    changes: dict[str, Any],
    *,
    account_id: str | None = None,
    actor: str = CLI_ACTOR,
) -> ApiKey:
    """Set the given columns (name, scopes, models, the limit fields, expires_at, cache_default)."""
    async with sessions.begin() as session:
        key = await get_key(session, key_id, account_id)
        changed = {}
        for column, value in changes.items():
            if getattr(key, column) != value:
                setattr(key, column, value)
                changed[column] = value.isoformat() if isinstance(value, datetime) else value
        if changed:
            audit(session, actor, key.account_id, "key.updated", key.id, changed)
    return key


async def revoke_key(
    sessions: async_sessionmaker[AsyncSession], key_id: str, *, account_id: str | None = None, actor: str = CLI_ACTOR
) -> ApiKey:
    """Revoke now (a revoked key stays revoked; revoking again changes nothing)."""
    async with sessions.begin() as session:
        key = await get_key(session, key_id, account_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            audit(session, actor, key.account_id, "key.revoked", key.id, {})
    return key


@dataclass(frozen=True, slots=True)
class Rotation:
    new: CreatedKey
    old: ApiKey


async def rotate_key(
    sessions: async_sessionmaker[AsyncSession],
    key_id: str,
    grace: timedelta,
    *,
    account_id: str | None = None,
    actor: str = CLI_ACTOR,
) -> Rotation:
    """Issue a replacement with the same account, name, scopes, models, limits and cache default, and the old
    key's own expiry. The old secret keeps working until ``grace`` has passed (or its own expiry,
    if sooner; at once with a zero grace).

    Only an active key can be rotated, once: a revoked, expired or already rotated key raises
    ``conflict``. The key is claimed with one conditional UPDATE as the transaction's first
    statement, so of two simultaneous rotations exactly one succeeds (on PostgreSQL the second
    waits for the first's row lock and then finds it claimed; SQLite serializes the writers)."""
    now = utcnow()
    secret = generate_secret()
    new_key_id = new_id("key")
    async with sessions.begin() as session:
        claim = (
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                ApiKey.revoked_at.is_(None),
                ApiKey.replaced_by.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
            .values(replaced_by=new_key_id)
            .execution_options(synchronize_session=False)
        )
        if account_id is not None:
            claim = claim.where(ApiKey.account_id == account_id)
        claimed = (await session.execute(claim)).rowcount == 1  # type: ignore[attr-defined]
        old = await get_key(session, key_id, account_id)
        if not claimed:
            status = key_status(old, now)
            raise PlutosError(
                "conflict",
                f"API key '{key_id}' is {status}; only an active key can be rotated.",
                {"id": key_id, "status": status},
            )
        await session.refresh(old)
        account = await session.get(Account, old.account_id)
        assert account is not None
        own_expiry = old.expires_at
        new = ApiKey(
            id=new_key_id,
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
            cache_default=old.cache_default,
            expires_at=own_expiry,
            created_at=now,
        )
        session.add(new)
        cutoff = now + grace
        if own_expiry is None or own_expiry > cutoff:
            old.expires_at = cutoff
        audit(
            session,
            actor,
            old.account_id,
            "key.rotated",
            old.id,
            {"replacedBy": new.id, "graceSeconds": int(grace.total_seconds())},
        )
    created = CreatedKey(
        id=new.id,
        secret=secret,
        prefix=new.prefix,
        account_id=account.id,
        plan=account.plan,
        name=new.name,
        scopes=new.scopes,
        models=new.models,
        expires_at=new.expires_at,
        row=new,
    )
    return Rotation(created, old)
