"""Typed results of the management endpoints: keys, accounts, audit, history, daily usage, deliveries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from ._types import Usage, _float, _int, _obj, _str, parse_timestamp

__all__ = [
    "Account",
    "AccountUsage",
    "ApiKey",
    "AuditEvent",
    "CreatedKey",
    "DailyUsage",
    "KeyRotation",
    "Page",
    "ProcessHistoryItem",
    "ResultList",
    "WebhookDelivery",
    "WebhookTestResult",
]

T = TypeVar("T")

#: The ``X-Request-Id`` of the response that carried a result (quote it when reporting a problem).
_REQUEST_ID = "request_id"


class ResultList(list[T]):
    """A list result (``list_keys``, ``get_daily_usage``): a plain list that also carries its
    response's ``request_id``."""

    request_id: str | None = None


def with_request_id(result: T, request_id: str | None) -> T:
    """``result`` carrying ``request_id``: every management result type has the field."""
    if isinstance(result, ResultList):
        result.request_id = request_id
        return result
    if any(f.name == _REQUEST_ID for f in fields(result)):  # type: ignore[arg-type]
        return replace(result, request_id=request_id)  # type: ignore[type-var]
    return result


_LIMITS = {
    "requestsPerMinute": "requests_per_minute",
    "requestsPerHour": "requests_per_hour",
    "requestsPerDay": "requests_per_day",
    "concurrentRequests": "concurrent_requests",
}


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, newest first. Pass ``last_id`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    first_id: str
    last_id: str
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any, item: Callable[[Any], T]) -> Page[T]:
        d = _obj(data)
        items = d.get("data")
        return cls(
            data=[item(x) for x in items] if isinstance(items, list) else [],
            has_more=bool(d.get("hasMore", False)),
            first_id=_str(d.get("firstId")),
            last_id=_str(d.get("lastId")),
        )


@dataclass(frozen=True)
class ApiKey:
    """An API key as listed: the visible prefix, never the secret."""

    id: str
    account_id: str
    name: str
    prefix: str
    scopes: list[str]
    #: Empty: every model.
    models: list[str]
    #: Per-key limits (snake_case names: ``requests_per_minute``, ...); absent: the plan's.
    limits: dict[str, int]
    #: "active", "rotated", "expired" or "revoked".
    status: str
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    #: On a rotated key: the id of its replacement.
    replaced_by: str
    #: When the key last authenticated a call (to within a minute); ``None`` if never.
    last_used_at: datetime | None = field(default=None, kw_only=True)
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> ApiKey:
        d = _obj(data)
        limits = _obj(d.get("limits"))
        return cls(
            id=_str(d.get("id")),
            account_id=_str(d.get("accountId")),
            name=_str(d.get("name")),
            prefix=_str(d.get("prefix")),
            scopes=_strings(d.get("scopes")),
            models=_strings(d.get("models")),
            limits={_LIMITS.get(k, k): _int(v) for k, v in limits.items()},
            status=_str(d.get("status")),
            created_at=parse_timestamp(d.get("createdAt")),
            expires_at=parse_timestamp(d.get("expiresAt")),
            revoked_at=parse_timestamp(d.get("revokedAt")),
            replaced_by=_str(d.get("replacedBy")),
            last_used_at=parse_timestamp(d.get("lastUsedAt")),
        )


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its secret (shown only here)."""

    key: ApiKey
    secret: str
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> CreatedKey:
        d = _obj(data)
        return cls(key=ApiKey.from_json(d.get("key")), secret=_str(d.get("secret")))


@dataclass(frozen=True)
class KeyRotation:
    """The replacement key, its secret (shown only here), and the key it replaced."""

    key: ApiKey
    secret: str
    replaced: ApiKey
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> KeyRotation:
        d = _obj(data)
        return cls(
            key=ApiKey.from_json(d.get("key")),
            secret=_str(d.get("secret")),
            replaced=ApiKey.from_json(d.get("replaced")),
        )


@dataclass(frozen=True)
class AccountUsage:
    """This calendar month's usage (UTC) so far."""

    total_requests: int
    total_tokens: int
    #: USD.
    total_cost: float


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    plan: str
    suspended: bool
    created_at: datetime | None
    #: Keys not revoked.
    key_count: int
    usage: AccountUsage
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> Account:
        d = _obj(data)
        u = _obj(d.get("usage"))
        return cls(
            id=_str(d.get("id")),
            name=_str(d.get("name")),
            plan=_str(d.get("plan")),
            suspended=bool(d.get("suspended", False)),
            created_at=parse_timestamp(d.get("createdAt")),
            key_count=_int(d.get("keyCount")),
            usage=AccountUsage(
                total_requests=_int(u.get("totalRequests")),
                total_tokens=_int(u.get("totalTokens")),
                total_cost=_float(u.get("totalCost")),
            ),
        )


@dataclass(frozen=True)
class AuditEvent:
    """A change to a key or an account."""

    id: str
    #: The acting key's id, or "cli".
    actor: str
    account_id: str
    #: "key.created", "key.updated", "key.rotated", "key.revoked", "account.created", "account.updated".
    action: str
    target_id: str
    details: dict[str, Any]
    created_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> AuditEvent:
        d = _obj(data)
        return cls(
            id=_str(d.get("id")),
            actor=_str(d.get("actor")),
            account_id=_str(d.get("accountId")),
            action=_str(d.get("action")),
            target_id=_str(d.get("targetId")),
            details=dict(_obj(d.get("details"))),
            created_at=parse_timestamp(d.get("createdAt")),
        )


@dataclass(frozen=True)
class ProcessHistoryItem:
    """One record of ``list_processes`` (GET /process)."""

    id: str
    #: "process", "stream", "batch" (a batch item), or the surface that made it.
    kind: str
    model: str
    #: "completed", "failed" or "cancelled".
    status: str
    input: str
    output: str
    usage: Usage
    created_at: datetime | None
    #: Milliseconds.
    processing_time: int
    batch_id: str | None
    batch_index: int | None
    error_code: str | None
    #: Whether the output was answered from the response cache (no model ran).
    cached: bool = False

    @classmethod
    def from_json(cls, data: Any) -> ProcessHistoryItem:
        d = _obj(data)
        return cls(
            id=_str(d.get("id")),
            kind=_str(d.get("kind")),
            model=_str(d.get("model")),
            status=_str(d.get("status")),
            input=_str(d.get("input")),
            output=_str(d.get("output")),
            usage=Usage.from_json(d.get("usage")),
            created_at=parse_timestamp(d.get("createdAt")),
            processing_time=_int(d.get("processingTime")),
            batch_id=d.get("batchId"),
            batch_index=_optional_int(d.get("batchIndex")),
            error_code=d.get("errorCode"),
            cached=d.get("cached") is True,
        )


@dataclass(frozen=True)
class DailyUsage:
    """One UTC day and model."""

    date: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    #: USD.
    cost: float

    @classmethod
    def from_json(cls, data: Any) -> DailyUsage:
        d = _obj(data)
        return cls(
            date=_str(d.get("date")),
            model=_str(d.get("model")),
            requests=_int(d.get("requests")),
            prompt_tokens=_int(d.get("promptTokens")),
            completion_tokens=_int(d.get("completionTokens")),
            total_tokens=_int(d.get("totalTokens")),
            cost=_float(d.get("cost")),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    webhook_id: str
    event: str
    #: "pending", "delivered" or "failed".
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime | None
    delivered_at: datetime | None
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> WebhookDelivery:
        d = _obj(data)
        return cls(
            id=_str(d.get("id")),
            webhook_id=_str(d.get("webhookId")),
            event=_str(d.get("event")),
            status=_str(d.get("status")),
            attempts=_int(d.get("attempts")),
            last_status_code=_optional_int(d.get("lastStatusCode")),
            last_error=d.get("lastError"),
            next_attempt_at=parse_timestamp(d.get("nextAttemptAt")),
            created_at=parse_timestamp(d.get("createdAt")),
            delivered_at=parse_timestamp(d.get("deliveredAt")),
        )


@dataclass(frozen=True)
class WebhookTestResult:
    """The receiver's answer to a signed ``ping``."""

    delivered: bool
    status_code: int | None
    error: str | None
    #: Milliseconds.
    duration: int
    delivery_id: str
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> WebhookTestResult:
        d = _obj(data)
        return cls(
            delivered=bool(d.get("delivered", False)),
            status_code=_optional_int(d.get("statusCode")),
            error=d.get("error"),
            duration=_int(d.get("duration")),
            delivery_id=_str(d.get("deliveryId")),
        )
