"""Typed results: the gateway's camelCase JSON as dataclasses with snake_case attributes.

Parsing is lenient on purpose: a field the server omits takes its zero value, and an integer sent as a
string (proto3 JSON's int64 rendering) is accepted, so a newer server never breaks an older SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "BatchItem",
    "BatchItemError",
    "BatchResult",
    "Model",
    "Pricing",
    "ProcessOptions",
    "ProcessRecord",
    "ProcessResult",
    "StreamChunk",
    "StreamComplete",
    "StreamEvent",
    "Usage",
    "UsageLimits",
    "UsagePeriod",
    "UsageReport",
    "UsageTotals",
    "Webhook",
    "WebhookDeletion",
]

JSONObject = Mapping[str, Any]

_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 -> aware datetime (UTC when no offset). None for empty values.

    Accepts a trailing "Z" and 0-9 fractional digits (proto3 JSON emits 3, 6 or 9), which
    `datetime.fromisoformat` only does by itself from Python 3.11 on.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _int(value: Any) -> int:
    if value is None or value == "":
        return 0
    return int(value)


def _float(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    return float(value)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _obj(value: Any) -> JSONObject:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Usage:
    """Token counts of one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        d = _obj(data)
        return cls(
            prompt_tokens=_int(d.get("promptTokens")),
            completion_tokens=_int(d.get("completionTokens")),
            total_tokens=_int(d.get("totalTokens")),
        )


@dataclass(frozen=True)
class ProcessOptions:
    """Generation options. ``None`` means "not set" (the server applies its default)."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    system_prompt: str | None = None
    stop: list[str] | None = None

    @classmethod
    def from_json(cls, data: Any) -> ProcessOptions:
        d = _obj(data)

        def num(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        stop = d.get("stop")
        return cls(
            temperature=num("temperature"),
            max_tokens=None if d.get("maxTokens") is None else int(d["maxTokens"]),
            top_p=num("topP"),
            frequency_penalty=num("frequencyPenalty"),
            presence_penalty=num("presencePenalty"),
            system_prompt=d.get("systemPrompt"),
            stop=[str(s) for s in stop] if isinstance(stop, list) else None,
        )


@dataclass(frozen=True)
class ProcessResult:
    """The result of ``process_data``."""

    id: str
    output: str
    model: str
    usage: Usage
    created_at: datetime | None
    #: Milliseconds.
    processing_time: int
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> ProcessResult:
        d = _obj(data)
        return cls(
            id=_str(d.get("id")),
            output=_str(d.get("output")),
            model=_str(d.get("model")),
            usage=Usage.from_json(d.get("usage")),
            created_at=parse_timestamp(d.get("createdAt")),
            processing_time=_int(d.get("processingTime")),
        )


@dataclass(frozen=True)
class ProcessRecord:
    """A stored processing result, from ``get_process``."""

    id: str
    input: str
    output: str
    model: str
    options: ProcessOptions
    usage: Usage
    created_at: datetime | None
    #: Milliseconds.
    processing_time: int
    #: "completed", "cancelled" (a stream whose client left) or "failed".
    status: str
    #: Whether the output was answered from the response cache (no model ran).
    cached: bool = field(default=False, kw_only=True)
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> ProcessRecord:
        d = _obj(data)
        return cls(
            id=_str(d.get("id")),
            input=_str(d.get("input")),
            output=_str(d.get("output")),
            model=_str(d.get("model")),
            options=ProcessOptions.from_json(d.get("options")),
            usage=Usage.from_json(d.get("usage")),
            created_at=parse_timestamp(d.get("createdAt")),
            processing_time=_int(d.get("processingTime")),
            status=_str(d.get("status")),
            cached=d.get("cached") is True,
        )


@dataclass(frozen=True)
class BatchItemError:
    """Why one batch item failed; the other items are unaffected."""

    code: str
    message: str


@dataclass(frozen=True)
class BatchItem:
    """One input's result within a batch."""

    input: str
    output: str
    usage: Usage
    #: Set only when this item failed.
    error: BatchItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_json(cls, data: Any) -> BatchItem:
        d = _obj(data)
        err = d.get("error")
        return cls(
            input=_str(d.get("input")),
            output=_str(d.get("output")),
            usage=Usage.from_json(d.get("usage")),
            error=(
                BatchItemError(code=_str(err.get("code")), message=_str(err.get("message")))
                if isinstance(err, Mapping) and err
                else None
            ),
        )


@dataclass(frozen=True)
class BatchResult:
    """The result of ``batch``: one item per input, in input order."""

    id: str
    results: list[BatchItem]
    total_usage: Usage
    created_at: datetime | None
    #: Milliseconds.
    processing_time: int
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> BatchResult:
        d = _obj(data)
        items = d.get("results")
        return cls(
            id=_str(d.get("id")),
            results=[BatchItem.from_json(r) for r in items] if isinstance(items, list) else [],
            total_usage=Usage.from_json(d.get("totalUsage")),
            created_at=parse_timestamp(d.get("createdAt")),
            processing_time=_int(d.get("processingTime")),
        )


@dataclass(frozen=True)
class StreamChunk:
    """A piece of streamed output (SSE ``event: chunk``): the text generated since the last chunk."""

    output: str
    chunk: Literal["partial"] = "partial"

    @property
    def is_final(self) -> bool:
        return False

    @classmethod
    def from_json(cls, data: Any) -> StreamChunk:
        return cls(output=_str(_obj(data).get("output")))


@dataclass(frozen=True)
class StreamComplete:
    """The end of a stream (SSE ``event: complete``): the whole output and its usage."""

    output: str
    usage: Usage
    #: The stored record's id, for ``get_process``.
    id: str
    model: str
    created_at: datetime | None
    #: Milliseconds.
    processing_time: int
    chunk: Literal["final"] = "final"

    @property
    def is_final(self) -> bool:
        return True

    @classmethod
    def from_json(cls, data: Any) -> StreamComplete:
        d = _obj(data)
        return cls(
            output=_str(d.get("output")),
            usage=Usage.from_json(d.get("usage")),
            id=_str(d.get("id")),
            model=_str(d.get("model")),
            created_at=parse_timestamp(d.get("createdAt")),
            processing_time=_int(d.get("processingTime")),
        )


#: What a stream yields: chunks, then one StreamComplete.
StreamEvent = StreamChunk | StreamComplete


@dataclass(frozen=True)
class Pricing:
    """USD per 1K tokens."""

    input_tokens: float
    output_tokens: float


@dataclass(frozen=True)
class Model:
    """An entry of the model catalogue."""

    id: str
    name: str
    description: str
    #: The model's context size in tokens.
    max_tokens: int
    supports_streaming: bool
    pricing: Pricing

    @classmethod
    def from_json(cls, data: Any) -> Model:
        d = _obj(data)
        p = _obj(d.get("pricing"))
        return cls(
            id=_str(d.get("id")),
            name=_str(d.get("name")),
            description=_str(d.get("description")),
            max_tokens=_int(d.get("maxTokens")),
            supports_streaming=bool(d.get("supportsStreaming", False)),
            pricing=Pricing(
                input_tokens=_float(p.get("inputTokens")), output_tokens=_float(p.get("outputTokens"))
            ),
        )


@dataclass(frozen=True)
class UsagePeriod:
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class UsageTotals:
    total_requests: int
    total_tokens: int
    #: USD.
    total_cost: float
    requests_by_model: dict[str, int] = field(default_factory=dict)
    #: Of ``total_requests``, those answered from the response cache (no model ran).
    cached_requests: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class UsageLimits:
    requests_per_minute: int
    requests_per_hour: int
    requests_per_day: int
    #: The plan's monthly token quota.
    monthly_tokens: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class UsageReport:
    """The result of ``get_usage``."""

    period: UsagePeriod
    usage: UsageTotals
    limits: UsageLimits
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> UsageReport:
        d = _obj(data)
        period, usage, limits = _obj(d.get("period")), _obj(d.get("usage")), _obj(d.get("limits"))
        return cls(
            period=UsagePeriod(
                start=parse_timestamp(period.get("start")), end=parse_timestamp(period.get("end"))
            ),
            usage=UsageTotals(
                total_requests=_int(usage.get("totalRequests")),
                total_tokens=_int(usage.get("totalTokens")),
                total_cost=_float(usage.get("totalCost")),
                requests_by_model={str(k): _int(v) for k, v in _obj(usage.get("requestsByModel")).items()},
                cached_requests=_int(usage.get("cachedRequests")),
            ),
            limits=UsageLimits(
                requests_per_minute=_int(limits.get("requestsPerMinute")),
                requests_per_hour=_int(limits.get("requestsPerHour")),
                requests_per_day=_int(limits.get("requestsPerDay")),
                monthly_tokens=_int(limits.get("monthlyTokens")),
            ),
        )


@dataclass(frozen=True)
class Webhook:
    """A registered webhook. Only whether a secret is set is listed, never the secret."""

    id: str
    url: str
    events: list[str]
    has_secret: bool
    created_at: datetime | None
    #: From ``create_webhook`` without a ``secret`` only: the signing secret the server generated
    #: (``"whsec_"`` + base64), returned this once; store it. ``None`` otherwise.
    secret: str | None = field(default=None, compare=False, repr=False, kw_only=True)
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> Webhook:
        d = _obj(data)
        events = d.get("events")
        return cls(
            id=_str(d.get("id")),
            url=_str(d.get("url")),
            events=[str(e) for e in events] if isinstance(events, list) else [],
            has_secret=bool(d.get("hasSecret", False)),
            created_at=parse_timestamp(d.get("createdAt")),
            secret=d["secret"] if isinstance(d.get("secret"), str) else None,
        )


@dataclass(frozen=True)
class WebhookDeletion:
    """The result of ``delete_webhook``."""

    id: str
    deleted: bool
    #: The ``X-Request-Id`` of the response that carried this result (quote it when reporting a problem).
    request_id: str | None = field(default=None, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Any) -> WebhookDeletion:
        d = _obj(data)
        return cls(id=_str(d.get("id")), deleted=bool(d.get("deleted", False)))
