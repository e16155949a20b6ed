"""A service's HTTP dialect, read from its ``(plutos.v1.http_surface)`` option.

The bridge serves every service through the same generic endpoints; what differs between the
reference's API and, say, the OpenAI-compatible one (JSON names, the error body, SSE framing,
extra rate-limit headers) is data in the proto, interpreted here. A service without the option
gets :data:`REFERENCE`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from plutos.v1 import http_options_pb2

from bridge.errors import envelope
from bridge.json_codec import message_to_obj, message_to_proto_obj
from core.errors import ERRORS


def _default_dumps() -> Callable[[Any], str]:
    """``json.dumps`` with its defaults (ASCII-only, ``", "`` and ``": "``), without the set-up it
    repeats per call (an encoder and a closure each time): its C encoder, made once. Byte for byte
    the same text; only the circular-reference check is left out (the payloads are trees built
    from messages)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        return json.dumps
    default = json.JSONEncoder().default
    encode = make(None, default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)

    def dumps(payload: Any) -> str:
        return "".join(encode(payload, 0))

    return dumps


json_text = _default_dumps()


@dataclass(frozen=True, slots=True)
class Surface:
    """How one service's REST routes speak: see ``protos/plutos/v1/http_options.proto``."""

    to_obj: Callable[[Message], Any]
    proto_names: bool  # JSON bodies name fields as the proto does (``max_tokens``)
    openai_errors: bool
    data_only_sse: bool
    sse_done: bytes  # the stream's last frame, or b""
    openai_rate_limit_headers: bool

    def error_body(
        self, code: str, message: str, request_id: str | None, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The error's JSON body in this surface's format (the kind comes from the one error table)."""
        if not self.openai_errors:
            return envelope(code, message, request_id, details)
        param = (details or {}).get("field")
        return {
            "error": {
                "message": message,
                "type": ERRORS[code].openai_type,
                "param": param if isinstance(param, str) else None,
                "code": code,
            }
        }

    def frame(self, event: str, payload: Any) -> bytes:
        """One server-sent event carrying ``payload`` (a JSON-ready value), ASCII-only JSON."""
        data = json_text(payload)
        if self.data_only_sse:
            return f"data: {data}\n\n".encode()
        return f"event: {event}\ndata: {data}\n\n".encode()

    def add_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """Headers derived from the reference's ones (OpenAI's ``x-ratelimit-*-requests``)."""
        if self.openai_rate_limit_headers and "X-RateLimit-Limit" in headers:
            headers["x-ratelimit-limit-requests"] = headers["X-RateLimit-Limit"]
            headers["x-ratelimit-remaining-requests"] = headers.get("X-RateLimit-Remaining", "0")
            reset = headers.get("X-RateLimit-Reset", "")
            if reset.isdigit():
                headers["x-ratelimit-reset-requests"] = f"{max(0, int(reset) - int(time.time()))}s"
        return headers


REFERENCE = Surface(
    to_obj=message_to_obj,
    proto_names=False,
    openai_errors=False,
    data_only_sse=False,
    sse_done=b"",
    openai_rate_limit_headers=False,
)


def surface_of(service: ServiceDescriptor) -> Surface:
    """The service's surface, from its ``(plutos.v1.http_surface)`` option."""
    options = service.GetOptions()
    if not options.HasExtension(http_options_pb2.http_surface):
        return REFERENCE
    spec: http_options_pb2.HttpSurface = options.Extensions[http_options_pb2.http_surface]
    proto_names = spec.json_names == http_options_pb2.JSON_NAMES_PROTO
    return Surface(
        to_obj=message_to_proto_obj if proto_names else message_to_obj,
        proto_names=proto_names,
        openai_errors=spec.error_format == http_options_pb2.ERROR_FORMAT_OPENAI,
        data_only_sse=spec.sse_format == http_options_pb2.SSE_FORMAT_DATA_ONLY,
        sse_done=f"data: {spec.sse_done}\n\n".encode() if spec.sse_done else b"",
        openai_rate_limit_headers=spec.rate_limit_headers == http_options_pb2.RATE_LIMIT_HEADERS_OPENAI,
    )


def surface_for_path(bindings: Iterable[Any]) -> Callable[[str], Surface]:
    """A lookup of the surface that answers for a path no route took (404, 405): the surface of
    the services whose routes all lie under the path's longest matching common prefix
    (``/openai/v1``), else :data:`REFERENCE`."""
    paths: dict[Surface, list[str]] = {}
    for b in bindings:
        surface = surface_of(b.method.containing_service)
        if surface is not REFERENCE:
            paths.setdefault(surface, []).append(b.path)
    prefixes = sorted(
        ((os.path.commonpath(p).rstrip("/"), s) for s, p in paths.items()), key=lambda e: len(e[0]), reverse=True
    )

    def lookup(path: str) -> Surface:
        for prefix, surface in prefixes:
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                return surface
        return REFERENCE

    return lookup
