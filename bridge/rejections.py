"""Requests the bridge answers itself, before any RPC runs: malformed JSON, a body over the limit,
bad parameters, an unknown route (404), a method the route does not take (405), a request that is
not valid HTTP/1.1 (400), headers over the limit (431) or too slow (408).

The service never sees them, so its access line and metrics do not either: the bridge reports each
one through a ``Rejected`` callback the composition root fills (one structured log line), and counts
the ones outside an API route through ``observe``. Every label is bounded: a route template, or
``unmatched`` (no route) / ``unparsed`` (not valid HTTP); a known HTTP method, or ``other``."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.responses import Response

# (route template | UNMATCHED | UNPARSED, HTTP method (bounded), status, error code, request id) -> None
Rejected = Callable[[str, str, int, str, str], None]

UNMATCHED = "unmatched"  # the route label of a request no route takes (404)
UNPARSED = "unparsed"  # ... of one that is not valid HTTP/1.1, or whose head is too large or too slow

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def bounded_method(method: str | None) -> str:
    """The method as a label: one of the standard ones, else ``other`` (clients may send any token)."""
    return method if method in _METHODS else "other"


def error_code_of(response: Response) -> str:
    """The ``error.code`` of an envelope the bridge built (both surfaces put it there)."""
    try:
        error = orjson.loads(bytes(response.body)).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else ""
