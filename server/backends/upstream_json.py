"""An upstream's JSON: answer and chunk objects parsed strictly, its token counts, its finish reasons."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import orjson

from server.backends.base import GenerationState
from server.backends.upstream_errors import UpstreamErrors

log = logging.getLogger("plutos.backends.openai")

NUL = "\x00"  # the store cannot keep U+0000 (server/interceptors/text.py): dropped from upstream text
FINISH_REASONS = {"length": "length", "tool_calls": "tool_calls"}  # anything else ends as "stop"


def json_object(data: bytes, errors: UpstreamErrors, request_id: str | None) -> dict[str, Any]:
    """``data`` parsed as a JSON object; ``upstream_error`` if it is not one."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.warning("upstream %s sent invalid JSON: %r", errors.url, data[:200])
        raise errors.upstream_error("The upstream sent invalid JSON.", 200, request_id) from None
    if not isinstance(value, dict):
        raise errors.upstream_error("The upstream sent an unexpected JSON value.", 200, request_id)
    return value


def json_objects(datas: list[bytes], errors: UpstreamErrors, request_id: str | None) -> Iterable[dict[str, Any]]:
    """Each of ``datas`` parsed as a JSON object; one parser call for all of a read's events.

    If that fails, one at a time and lazily: the events before a bad one still count."""
    if len(datas) > 1:
        try:
            values = orjson.loads(b"[" + b",".join(datas) + b"]")
        except orjson.JSONDecodeError:
            values = None
        if isinstance(values, list) and len(values) == len(datas) and all(isinstance(v, dict) for v in values):
            return values
    return (json_object(data, errors, request_id) for data in datas)


def apply_usage(usage: dict[str, Any], state: GenerationState) -> None:
    """The upstream's token counts where they are whole, non-negative numbers (anything else
    keeps the gateway's own count). Counts beyond what the request could use are bounded
    when billed (:meth:`server.services.generation.Generation.bound_usage`)."""
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    if prompt is not None:
        state.prompt_tokens = prompt
    if completion is not None:
        state.completion_tokens = completion


def token_count(value: Any) -> int | None:
    """A token count from an upstream's JSON: a non-negative integer (``12`` or ``12.0``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None
