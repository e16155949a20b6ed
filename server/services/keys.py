"""KeysService: API keys over gRPC and REST, on the same code as ``plutos keys …`` (server/keys.py).

Who may do what:

- A key with the ``keys`` scope manages its own account's keys. What it creates or changes can
  never hold more than the caller itself: no scope it lacks, no model outside its allow-list, no
  limit above its own (nor above the plan), no expiry after its own. Revoking the calling key
  itself needs ``allow_self``. Another account's key ids answer 404.
- ``account_id`` set (REST: ``/v1/admin/accounts/{account_id}/keys…``) needs the ``admin`` scope
  and acts on that account's keys, held to its plan only.
- The ``admin`` scope is never granted here (only by ``plutos keys create --admin``).

Revoking, rotating or narrowing a key drops it from this process's auth cache and announces it
to the other replicas (see :meth:`server.authenticator.Authenticator.forget_everywhere`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2
from plutos.v1 import keys_pb2, keys_pb2_grpc
from sqlalchemy import select

from core.errors import PlutosError, invalid_parameter
from core.field_ranges import message_field_range
from server.call_state import Caller, caller
from server.config import Plan
from server.keys import (
    DEFAULT_SCOPES,
    LIMIT_FIELDS,
    SCOPES,
    create_key,
    effective_scopes,
    get_key,
    key_status,
    revoke_key,
    rotate_key,
    update_key,
)
from server.response_cache import CACHE_MODES
from server.runtime import Runtime
from server.services.generation import timestamp
from server.store.models import Account, ApiKey, utcnow

MAX_KEYS_PER_ACCOUNT = 100
MIN_GRACE_SECONDS, MAX_GRACE_SECONDS = message_field_range(keys_pb2.RotateKeyRequest, "grace_seconds")  # 0, 30 days
DEFAULT_GRACE_SECONDS = 86400
_UPDATABLE = {"name", "scopes", "models", "limits", "expires_at", "cache_default"}
_JSON_NAMES = {"expiresAt": "expires_at", "updateMask": "update_mask", "cacheDefault": "cache_default"}


def api_key_message(key: ApiKey, now: datetime | None = None) -> keys_pb2.ApiKey:
    msg = keys_pb2.ApiKey(
        id=key.id,
        account_id=key.account_id,
        name=key.name,
        prefix=key.prefix,
        scopes=effective_scopes(key.scopes),
        models=key.models or [],
        status=key_status(key, now or utcnow()),
        created_at=timestamp(key.created_at),
        replaced_by=key.replaced_by or "",
    )
    for field in LIMIT_FIELDS:
        value = getattr(key, field)
        if value is not None:
            setattr(msg.limits, field, value)
    if key.expires_at is not None:
        msg.expires_at.CopyFrom(timestamp(key.expires_at))
    if key.revoked_at is not None:
        msg.revoked_at.CopyFrom(timestamp(key.revoked_at))
    if key.last_used_at is not None:
        msg.last_used_at.CopyFrom(timestamp(key.last_used_at))
    if key.cache_default is not None:
        msg.cache_default = key.cache_default
    return msg


def _cache_default(given: bool, value: str) -> str | None:
    """``cacheDefault`` checked (None when not given); ``invalid_parameters`` otherwise."""
    if not given:
        return None
    if value not in CACHE_MODES:
        raise invalid_parameter("cacheDefault", '\'cacheDefault\' must be one of "use", "refresh" or "bypass".')
    return value


@dataclass(frozen=True, slots=True)
class Target:
    """The account a call acts on, and what the new or changed keys may hold at most."""

    account_id: str
    plan: Plan
    operator: bool  # an admin acting on any account: held to the plan only
    own_key: ApiKey | None  # the calling key (self-service): its own grants are the ceiling


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)


class KeysService(keys_pb2_grpc.KeysServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _target(self, account_id: str) -> Target:
        who = caller()
        settings = self.runtime.settings
        async with self.runtime.sessions() as session:
            if account_id:
                if not who.has_scope("admin"):
                    raise PlutosError(
                        "permission_denied",
                        "Managing another account's keys needs the 'admin' permission.",
                        {"scope": "admin"},
                    )
                account = await session.get(Account, account_id)
                if account is None:
                    raise PlutosError("not_found", f"No account with id '{account_id}'.", {"id": account_id})
                return Target(account.id, settings.plans.get(account.plan, who.plan), True, None)
            own = await session.get(ApiKey, who.key_id)
        if own is None:  # pragma: no cover - the key authenticated a moment ago
            raise PlutosError("invalid_api_key", "Invalid API key.")
        return Target(who.account_id, who.plan, False, own)

    # -- validation ------------------------------------------------------------------------------

    def _scopes(self, who: Caller, target: Target, requested: list[str]) -> list[str] | None:
        if not requested:
            if target.operator or target.own_key is None or target.own_key.scopes is None:
                return None
            return [s for s in target.own_key.scopes if s != "admin"]
        for scope in requested:
            if scope not in SCOPES:
                raise PlutosError(
                    "invalid_parameters",
                    f"Unknown scope '{scope}'. Scopes: {', '.join(s for s in SCOPES if s != 'admin')}.",
                    {"field": "scopes", "allowed": [s for s in SCOPES if s != "admin"]},
                )
            if scope == "admin":
                raise invalid_parameter("scopes", "The 'admin' scope is granted only by `plutos keys create --admin`.")
            if not target.operator and not who.has_scope(scope):
                raise invalid_parameter("scopes", f"A key cannot grant the '{scope}' scope, which it does not hold.")
        scopes = list(dict.fromkeys(requested))
        return None if sorted(scopes) == sorted(DEFAULT_SCOPES) else scopes

    def _models(self, who: Caller, target: Target, requested: list[str]) -> list[str] | None:
        if not requested:
            return None if target.operator or who.models is None else sorted(who.models)
        for model in requested:
            if self.runtime.settings.model(model) is None:
                raise PlutosError("invalid_parameters", f"Unknown model '{model}'.", {"field": "models"})
            if not target.operator and not who.allows_model(model):
                raise invalid_parameter("models", f"A key cannot grant model '{model}', which it may not use.")
        return list(dict.fromkeys(requested))

    def _limits(self, who: Caller, target: Target, limits: keys_pb2.KeyLimits) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for field in LIMIT_FIELDS:
            if not limits.HasField(field):  # type: ignore[arg-type]
                out[field] = None if target.operator else who.limits.get(field)
                continue
            value = int(getattr(limits, field))
            plan_value = int(getattr(target.plan, field))
            own = None if target.operator else who.limits.get(field)
            ceilings = [v for v in (plan_value if plan_value > 0 else None, own) if v is not None]
            name = _camel(field)
            if value <= 0:
                raise invalid_parameter(f"limits.{name}", f"'{name}' must be a positive number.")
            if ceilings and value > min(ceilings):
                raise PlutosError(
                    "invalid_parameters",
                    f"'{name}' may be at most {min(ceilings)} (the plan's or the calling key's own limit).",
                    {"field": f"limits.{name}", "max": min(ceilings)},
                )
            out[field] = value
        return out

    def _expiry(self, target: Target, given: bool, ts: timestamp_pb2.Timestamp) -> datetime | None:
        own = target.own_key.expires_at if target.own_key is not None else None
        if not given:
            return own
        value = _datetime(ts)
        if value <= utcnow():
            raise invalid_parameter("expiresAt", "'expiresAt' must be in the future.")
        if own is not None and value > own:
            raise invalid_parameter("expiresAt", "A key cannot outlive the calling key's own expiry.")
        return value

    async def _forget(self, *keys: ApiKey) -> None:
        await self.runtime.authenticator.forget_everywhere([k.key_hash for k in keys])

    # -- RPCs ------------------------------------------------------------------------------------

    async def CreateKey(self, request: keys_pb2.CreateKeyRequest, context: Any) -> keys_pb2.CreateKeyResponse:
        who = caller()
        target = await self._target(request.account_id)
        scopes = self._scopes(who, target, list(request.scopes))
        models = self._models(who, target, list(request.models))
        limits = {k: v for k, v in self._limits(who, target, request.limits).items() if v is not None}
        expires_at = self._expiry(target, request.HasField("expires_at"), request.expires_at)
        if len(request.name) > 200:
            raise invalid_parameter("name", "'name' may be at most 200 characters.")
        created = await create_key(
            self.runtime.sessions,
            name=request.name,
            account_id=target.account_id,
            scopes=scopes,
            models=models,
            expires_at=expires_at,
            limits=limits,
            actor=who.key_id,
            max_keys=MAX_KEYS_PER_ACCOUNT,
            cache_default=_cache_default(request.HasField("cache_default"), request.cache_default),
        )
        assert created.row is not None
        return keys_pb2.CreateKeyResponse(key=api_key_message(created.row), secret=created.secret)

    async def ListKeys(self, request: keys_pb2.ListKeysRequest, context: Any) -> keys_pb2.ListKeysResponse:
        target = await self._target(request.account_id)
        async with self.runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(ApiKey).where(ApiKey.account_id == target.account_id).order_by(ApiKey.created_at, ApiKey.id)
                )
            ).scalars()
            now = utcnow()
            return keys_pb2.ListKeysResponse(keys=[api_key_message(k, now) for k in rows])

    async def GetKey(self, request: keys_pb2.GetKeyRequest, context: Any) -> keys_pb2.GetKeyResponse:
        target = await self._target(request.account_id)
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        async with self.runtime.sessions() as session:
            key = await get_key(session, request.id, target.account_id)
        return keys_pb2.GetKeyResponse(key=api_key_message(key))

    async def UpdateKey(self, request: keys_pb2.UpdateKeyRequest, context: Any) -> keys_pb2.UpdateKeyResponse:
        who = caller()
        target = await self._target(request.account_id)
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        if request.HasField("update_mask"):
            fields = {_JSON_NAMES.get(p, p) for p in request.update_mask.paths}
            unknown = fields - _UPDATABLE
            if unknown:
                raise invalid_parameter("updateMask", f"Cannot update '{sorted(unknown)[0]}'.")
        else:
            fields = set()
            if request.HasField("name"):
                fields.add("name")
            if request.scopes:
                fields.add("scopes")
            if request.models:
                fields.add("models")
            if request.HasField("limits"):
                fields.add("limits")
            if request.HasField("expires_at"):
                fields.add("expires_at")
            if request.HasField("cache_default"):
                fields.add("cache_default")
        changes: dict[str, Any] = {}
        if "name" in fields:
            if len(request.name) > 200:
                raise invalid_parameter("name", "'name' may be at most 200 characters.")
            changes["name"] = request.name
        if "scopes" in fields:
            changes["scopes"] = self._scopes(who, target, list(request.scopes))
        if "models" in fields:
            changes["models"] = self._models(who, target, list(request.models))
        if "limits" in fields:
            # Self-service: an unset limit keeps the caller's own ceiling; operator: the plan's.
            changes.update(self._limits(who, target, request.limits))
        if "expires_at" in fields:
            changes["expires_at"] = self._expiry(target, request.HasField("expires_at"), request.expires_at)
        if "cache_default" in fields:
            changes["cache_default"] = _cache_default(request.HasField("cache_default"), request.cache_default)
        key = await update_key(
            self.runtime.sessions, request.id, changes, account_id=target.account_id, actor=who.key_id
        )
        await self._forget(key)
        return keys_pb2.UpdateKeyResponse(key=api_key_message(key))

    async def RotateKey(self, request: keys_pb2.RotateKeyRequest, context: Any) -> keys_pb2.RotateKeyResponse:
        who = caller()
        target = await self._target(request.account_id)
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        grace = request.grace_seconds if request.HasField("grace_seconds") else DEFAULT_GRACE_SECONDS
        if not MIN_GRACE_SECONDS <= grace <= MAX_GRACE_SECONDS:
            raise PlutosError(
                "invalid_parameters",
                f"'graceSeconds' must be between {MIN_GRACE_SECONDS} and {MAX_GRACE_SECONDS} (got {grace}).",
                {"field": "graceSeconds", "max": MAX_GRACE_SECONDS},
            )
        rotation = await rotate_key(
            self.runtime.sessions,
            request.id,
            timedelta(seconds=grace),
            account_id=target.account_id,
            actor=who.key_id,
        )
        await self._forget(rotation.old)
        assert rotation.new.row is not None
        now = utcnow()
        return keys_pb2.RotateKeyResponse(
            key=api_key_message(rotation.new.row, now),
            secret=rotation.new.secret,
            replaced=api_key_message(rotation.old, now),
        )

    async def RevokeKey(self, request: keys_pb2.RevokeKeyRequest, context: Any) -> keys_pb2.RevokeKeyResponse:
        who = caller()
        target = await self._target(request.account_id)
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        if request.id == who.key_id and not request.allow_self:
            raise invalid_parameter(
                "allowSelf", "This is the key making the request; set 'allowSelf' to true to revoke it."
            )
        key = await revoke_key(self.runtime.sessions, request.id, account_id=target.account_id, actor=who.key_id)
        await self._forget(key)
        return keys_pb2.RevokeKeyResponse(key=api_key_message(key))
