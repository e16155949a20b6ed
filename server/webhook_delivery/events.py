"""Event names and payloads.

A payload is the reference's ``{"event", "timestamp", "data"}`` object as compact JSON, members in
that order; ``"signature"`` is appended at send time when the webhook has a secret (see signing.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from server.store.models import ProcessRecord

PROCESSING_COMPLETED = "processing.completed"
PROCESSING_FAILED = "processing.failed"
USAGE_THRESHOLD = "usage.threshold"
EVENTS = (PROCESSING_COMPLETED, PROCESSING_FAILED, USAGE_THRESHOLD)
# Sent only by POST /v1/webhooks/{id}:test, whatever events the webhook subscribes to.
PING = "ping"


def iso(value: datetime, millis: bool = False) -> str:
    value = value.astimezone(UTC)
    if millis:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def payload(event: str, data: dict[str, Any], at: datetime) -> str:
    return orjson.dumps({"event": event, "timestamp": iso(at, millis=True), "data": data}).decode("utf-8")


def processing_event(record: ProcessRecord) -> tuple[str, dict[str, Any]]:
    """The event for a stored processing result: a /process call, a /stream call or one /batch item.

    ``completed`` → processing.completed; ``failed`` and ``cancelled`` → processing.failed, with
    ``data.status`` telling which and ``data.error.code`` the error."""
    event = PROCESSING_COMPLETED if record.status == "completed" else PROCESSING_FAILED
    data: dict[str, Any] = {
        "id": record.id,
        "type": record.kind,
        "status": record.status,
        "model": record.model,
        "output": record.output,
        "usage": {
            "promptTokens": record.prompt_tokens,
            "completionTokens": record.completion_tokens,
            "totalTokens": record.prompt_tokens + record.completion_tokens,
        },
        "createdAt": iso(record.created_at),
        "processingTime": record.processing_time_ms,
    }
    if record.batch_id is not None:
        data["batchId"] = record.batch_id
        data["batchIndex"] = record.batch_index
    if record.status != "completed":
        data["error"] = {"code": record.error_code or record.status}
    return event, data


def threshold_data(
    *, period: str, threshold: float, used_tokens: int, monthly_tokens: int, plan: str
) -> dict[str, Any]:
    return {
        "period": period,
        "threshold": threshold,
        "usedTokens": used_tokens,
        "monthlyTokens": monthly_tokens,
        "plan": plan,
    }
