"""Lenient readers of the gateway's JSON values, used by the generated result types (_types_gen.py):
a missing value is the field's zero value (or None for optional fields), an int64 sent as a string
is accepted."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

T = TypeVar("T")
JSONObject = Mapping[str, Any]

_FRACTION = re.compile(r"\.(\d+)")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


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


def to_obj(value: Any) -> JSONObject:
    return value if isinstance(value, Mapping) else {}


def to_int(value: Any) -> int:
    return 0 if value is None or value == "" else int(value)


def to_float(value: Any) -> float:
    return 0.0 if value is None or value == "" else float(value)


def to_str(value: Any) -> str:
    return "" if value is None else str(value)


def to_bool(value: Any) -> bool:
    return bool(value) if value is not None else False


def to_strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def to_dict(value: Any) -> dict[str, Any]:
    return dict(to_obj(value))


def optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def optional_float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def optional_strings(value: Any) -> list[str] | None:
    return [str(v) for v in value] if isinstance(value, list) else None


def optional_message(parse: Callable[[Any], T], value: Any) -> T | None:
    """A message field that is None when absent or empty (``{}``)."""
    return parse(value) if isinstance(value, Mapping) and value else None


def key_limits(value: Any) -> dict[str, int]:
    """A key's limits (``KeyLimits``) as a dict with snake_case names: ``{"requests_per_minute": 60}``."""
    return {_CAMEL.sub("_", str(k)).lower(): to_int(v) for k, v in to_obj(value).items()}
