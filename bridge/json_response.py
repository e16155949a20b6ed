"""JSON answers: the RPC's reply or an error's envelope, with the gRPC metadata the client sees as
HTTP headers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.responses import Response

from bridge.surface import REFERENCE, Surface
from core.errors import ERRORS

# gRPC response metadata → HTTP response header.
FORWARDED_METADATA = {
    "x-request-id": "X-Request-Id",
    "x-ratelimit-limit": "X-RateLimit-Limit",
    "x-ratelimit-remaining": "X-RateLimit-Remaining",
    "x-ratelimit-reset": "X-RateLimit-Reset",
    "retry-after": "Retry-After",
    "idempotent-replayed": "Idempotent-Replayed",
    "x-cache": "X-Cache",
    "x-process-id": "X-Process-Id",
}
_JSON = "application/json"


class JsonResponse(Response):
    """A JSON response with exactly the headers Starlette's ``Response`` would give it (the given
    ones, lower-cased, then ``content-length`` and ``content-type``), built without its
    general-purpose rendering and header checks."""

    media_type = _JSON

    def __init__(self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] if headers else []
        raw.append((b"content-length", b"%d" % len(body)))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``obj`` (a JSON-ready value) as a JSON response."""
    return JsonResponse(orjson.dumps(obj), status, headers)


def error_response(
    code: str,
    message: str,
    request_id: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    surface: Surface = REFERENCE,
) -> Response:
    """The error's body in ``surface``'s format, with the status from the error table."""
    all_headers = {"X-Request-Id": request_id, **(headers or {})}
    if details and "retryAfter" in details:
        all_headers.setdefault("Retry-After", str(details["retryAfter"]))
    if surface.openai_rate_limit_headers:
        surface.add_headers(all_headers)
    body = surface.error_body(code, message, request_id, details)
    return json_response(body, ERRORS[code].http_status, all_headers)


def headers_from(metadata: Iterable[tuple[str, str | bytes]] | None, into: dict[str, str]) -> dict[str, str]:
    """``into``, with the forwarded entries of ``metadata`` added under their HTTP header names."""
    for key, value in metadata or ():
        header = FORWARDED_METADATA.get(key)
        if header is not None and isinstance(value, str):
            into[header] = value
    return into
