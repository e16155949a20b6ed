"""Typed results of the management endpoints: keys, accounts, audit, history, daily usage, deliveries.

The record types are generated from the protos (_types_gen.py); ``Page`` is the SDK's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    "WebhookDelivery",
    "WebhookTestResult",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, newest first. Pass ``last_id`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    first_id: str
    last_id: str

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
