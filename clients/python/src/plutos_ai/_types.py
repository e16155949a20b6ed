"""Typed results: the gateway's camelCase JSON as dataclasses with snake_case attributes.

The classes are generated from the protos (_types_gen.py, by scripts/gen_types.py); this module
keeps their public import path and adds what is not a proto message.
"""

from __future__ import annotations

from ._parsing import JSONObject, parse_timestamp
from ._types_gen import (
    BatchItem,
    BatchItemError,
    BatchResult,
    Model,
    Pricing,
    ProcessOptions,
    ProcessRecord,
    ProcessResult,
    StreamChunk,
    StreamComplete,
    Usage,
    UsageLimits,
    UsagePeriod,
    UsageReport,
    UsageTotals,
    Webhook,
    WebhookDeletion,
)

__all__ = [
    "BatchItem",
    "BatchItemError",
    "BatchResult",
    "JSONObject",
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
    "parse_timestamp",
]

#: What a stream yields: chunks, then one StreamComplete.
StreamEvent = StreamChunk | StreamComplete
