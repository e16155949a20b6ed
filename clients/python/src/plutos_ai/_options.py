"""Request-side conversions: generation options to the wire's camelCase, dates to YYYY-MM-DD."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from ._types import ProcessOptions

__all__ = ["Options", "format_date", "normalize_options", "to_camel_case"]

#: What ``options=`` accepts: a mapping with camelCase or snake_case keys, or ProcessOptions.
Options = Mapping[str, Any] | ProcessOptions

_SNAKE = re.compile(r"_([a-z0-9])")


def to_camel_case(key: str) -> str:
    """``max_tokens`` -> ``maxTokens``; camelCase keys are returned unchanged."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), key)


def normalize_options(options: Options | None) -> dict[str, Any] | None:
    """Options as the gateway expects them: camelCase keys, unset (None) values dropped.

    Both spellings are accepted (``{"max_tokens": 100}`` as in the reference's Python example, and
    ``{"maxTokens": 100}`` as in its JSON); giving the same option twice is an error. Unknown keys
    are passed on camelCased, for the server to accept or reject. A lone ``stop`` string is sent as
    a one-item list.
    """
    if options is None:
        return None
    if isinstance(options, ProcessOptions):
        items: Mapping[str, Any] = dataclasses.asdict(options)
    elif isinstance(options, Mapping):
        items = options
    else:
        raise TypeError(f"options must be a mapping or ProcessOptions, not {type(options).__name__}")
    out: dict[str, Any] = {}
    for key, value in items.items():
        if not isinstance(key, str):
            raise TypeError(f"option names must be strings, got {key!r}")
        if value is None:
            continue
        wire = to_camel_case(key)
        if wire in out:
            raise ValueError(f"option {wire!r} given more than once (as {key!r} and another spelling)")
        if wire == "stop" and isinstance(value, str):
            value = [value]
        elif wire == "stop":
            value = list(value)
        out[wire] = value
    return out


def format_date(value: str | dt.date | None) -> str | None:
    """``datetime.date`` (or datetime) -> ``YYYY-MM-DD``; strings are passed through."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"dates must be str or datetime.date, not {type(value).__name__}")
