"""Typed results of the management endpoints: keys, accounts, audit, history, daily usage, deliveries.

The record types are generated from the protos (_types_gen.py); ``Page`` is the SDK's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, TypeVar

from ._parsing import to_bool, to_obj, to_str
from ._types_gen import (
    Account,
    AccountUsage,
    ApiKey,
    AuditEvent,
    CreatedKey,
    DailyUsage,
    KeyRotation,
    ProcessHistoryItem,
    WebhookDelivery,
    WebhookTestResult,
)

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


class ResultList(list[T]):
    """A list result (``list_keys``, ``get_daily_usage``): a plain list that also carries its
    response's ``request_id``."""

    request_id: str | None = None


def with_request_id(result: T, request_id: str | None) -> T:
    """``result`` carrying its response's ``request_id`` (every management result has the field)."""
    if isinstance(result, ResultList):
        result.request_id = request_id
        return result
    if any(f.name == "request_id" for f in fields(result)):  # type: ignore[arg-type]
        return replace(result, request_id=request_id)  # type: ignore[type-var]
    return result


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
        d = to_obj(data)
        items = d.get("data")
        return cls(
            data=[item(x) for x in items] if isinstance(items, list) else [],
            has_more=to_bool(d.get("hasMore")),
            first_id=to_str(d.get("firstId")),
            last_id=to_str(d.get("lastId")),
        )
