"""The management endpoints as request descriptions shared by the sync and async clients: each
function returns a :class:`Call` (method, path, query, body, parser); the client sends it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ._base import path_segment
from ._management_types import (
    Account,
    ApiKey,
    AuditEvent,
    CreatedKey,
    DailyUsage,
    KeyRotation,
    Page,
    ProcessHistoryItem,
    ResultList,
    WebhookDelivery,
    WebhookTestResult,
)
from ._options import format_date

T = TypeVar("T")

_LIMIT_NAMES = {
    "requests_per_minute": "requestsPerMinute",
    "requests_per_hour": "requestsPerHour",
    "requests_per_day": "requestsPerDay",
    "concurrent_requests": "concurrentRequests",
}


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    params: Mapping[str, str] | None
    body: Any
    parse: Callable[[Any], T]


def _keys_path(account_id: str | None, key_id: str | None = None, verb: str = "") -> str:
    base = f"/admin/accounts/{path_segment(account_id)}/keys" if account_id else "/keys"
    if key_id is not None:
        base += f"/{path_segment(key_id)}"
    return base + (f":{verb}" if verb else "")


def _timestamp(value: datetime | str) -> str:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def _key_fields(
    name: str | None,
    scopes: list[str] | None,
    models: list[str] | None,
    limits: Mapping[str, int] | None,
    expires_at: datetime | str | None,
    cache_default: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if cache_default is not None:
        body["cacheDefault"] = cache_default
    if name is not None:
        body["name"] = name
    if scopes is not None:
        body["scopes"] = list(scopes)
    if models is not None:
        body["models"] = list(models)
    if limits is not None:
        body["limits"] = {_LIMIT_NAMES.get(k, k): v for k, v in limits.items()}
    if expires_at is not None:
        body["expiresAt"] = _timestamp(expires_at)
    return body


def _page_params(**values: Any) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = format_date(value) if name.endswith("_date") else str(value)  # type: ignore[assignment]
    return params


def _key(data: Any) -> ApiKey:
    return ApiKey.from_json(_field(data, "key"))


def _field(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, Mapping) else None


def create_key(
    *,
    name: str | None,
    scopes: list[str] | None,
    models: list[str] | None,
    limits: Mapping[str, int] | None,
    expires_at: datetime | str | None,
    account_id: str | None,
    cache_default: str | None = None,
) -> Call[CreatedKey]:
    body = _key_fields(name, scopes, models, limits, expires_at, cache_default)
    return Call("POST", _keys_path(account_id), None, body, CreatedKey.from_json)


def list_keys(account_id: str | None) -> Call[ResultList[ApiKey]]:
    def parse(data: Any) -> ResultList[ApiKey]:
        keys = _field(data, "keys")
        return ResultList(ApiKey.from_json(k) for k in keys) if isinstance(keys, list) else ResultList()

    return Call("GET", _keys_path(account_id), None, None, parse)


def get_key(id: str, account_id: str | None) -> Call[ApiKey]:
    return Call("GET", _keys_path(account_id, id), None, None, _key)


def update_key(
    id: str,
    *,
    name: str | None,
    scopes: list[str] | None,
    models: list[str] | None,
    limits: Mapping[str, int] | None,
    expires_at: datetime | str | None,
    account_id: str | None,
    cache_default: str | None = None,
) -> Call[ApiKey]:
    body = _key_fields(name, scopes, models, limits, expires_at, cache_default)
    if models is not None and not models:  # an empty allow-list means "every model": say so
        body["updateMask"] = ",".join(sorted({*body, "models"} - {"updateMask"}))
    return Call("PATCH", _keys_path(account_id, id), None, body, _key)


def rotate_key(id: str, grace_seconds: int | None, account_id: str | None) -> Call[KeyRotation]:
    body = {} if grace_seconds is None else {"graceSeconds": grace_seconds}
    return Call("POST", _keys_path(account_id, id, "rotate"), None, body, KeyRotation.from_json)


def revoke_key(id: str, allow_self: bool, account_id: str | None) -> Call[ApiKey]:
    body = {"allowSelf": True} if allow_self else {}
    return Call("POST", _keys_path(account_id, id, "revoke"), None, body, _key)


def list_processes(**filters: Any) -> Call[Page[ProcessHistoryItem]]:
    return Call(
        "GET",
        "/process",
        _page_params(**filters),
        None,
        lambda d: Page.from_json(d, ProcessHistoryItem.from_json),
    )


def get_daily_usage(start_date: Any, end_date: Any, model: str | None) -> Call[ResultList[DailyUsage]]:
    def parse(data: Any) -> ResultList[DailyUsage]:
        rows = _field(data, "data")
        return ResultList(DailyUsage.from_json(r) for r in rows) if isinstance(rows, list) else ResultList()

    params = _page_params(start_date=start_date, end_date=end_date, model=model)
    return Call("GET", "/usage/daily", params, None, parse)


def list_webhook_deliveries(webhook_id: str, **filters: Any) -> Call[Page[WebhookDelivery]]:
    return Call(
        "GET",
        f"/webhooks/{path_segment(webhook_id)}/deliveries",
        _page_params(**filters),
        None,
        lambda d: Page.from_json(d, WebhookDelivery.from_json),
    )


def redeliver_webhook_delivery(webhook_id: str, delivery_id: str) -> Call[WebhookDelivery]:
    path = f"/webhooks/{path_segment(webhook_id)}/deliveries/{path_segment(delivery_id)}:redeliver"
    return Call("POST", path, None, {}, lambda d: WebhookDelivery.from_json(_field(d, "delivery")))


def test_webhook(id: str) -> Call[WebhookTestResult]:
    return Call("POST", f"/webhooks/{path_segment(id)}:test", None, {}, WebhookTestResult.from_json)


def _account(data: Any) -> Account:
    return Account.from_json(_field(data, "account"))


def create_account(name: str | None, plan: str | None) -> Call[Account]:
    body = {k: v for k, v in (("name", name), ("plan", plan)) if v is not None}
    return Call("POST", "/admin/accounts", None, body, _account)


def list_accounts(limit: int | None, after: str | None) -> Call[Page[Account]]:
    params = _page_params(limit=limit, after=after)
    return Call("GET", "/admin/accounts", params, None, lambda d: Page.from_json(d, Account.from_json))


def get_account(id: str) -> Call[Account]:
    return Call("GET", f"/admin/accounts/{path_segment(id)}", None, None, _account)


def update_account(id: str, name: str | None, plan: str | None, suspended: bool | None) -> Call[Account]:
    body = {k: v for k, v in (("name", name), ("plan", plan), ("suspended", suspended)) if v is not None}
    return Call("PATCH", f"/admin/accounts/{path_segment(id)}", None, body, _account)


def list_audit_events(limit: int | None, after: str | None, account_id: str | None) -> Call[Page[AuditEvent]]:
    params = _page_params(limit=limit, after=after, account_id=account_id)
    return Call("GET", "/admin/audit", params, None, lambda d: Page.from_json(d, AuditEvent.from_json))
