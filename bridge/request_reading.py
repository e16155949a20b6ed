"""Reading a REST request: the few headers the bridge forwards (one pass over the raw headers), the
request id, and the body up to a size limit."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from core.ids import request_id_from

DUPLICATE = "\x00duplicate"  # an impossible header value: the header was sent more than once


def wanted_headers(request: Request) -> tuple[str | None, str | None, str | None, str | None]:
    """The request's ``x-request-id``, ``authorization``, ``content-length`` and ``idempotency-key``
    (the first of each, as ``request.headers.get`` gives them), found in one pass over the raw headers."""
    scope = request.scope
    found: tuple[str | None, str | None, str | None, str | None] | None = scope.get("plutos.headers")
    if found is None:
        request_id = authorization = length = idempotency_key = None
        for name, value in scope["headers"]:  # ASGI: names are lower-case
            if name == b"authorization":
                # Two Authorization headers: which one counts is ambiguous (proxies and servers
                # disagree); the request is refused (see Bridge._build_request).
                authorization = value.decode("latin-1") if authorization is None else DUPLICATE
            elif name == b"x-request-id":
                if request_id is None:
                    request_id = value.decode("latin-1")
            elif name == b"content-length":
                if length is None:
                    length = value.decode("latin-1")
            elif name == b"idempotency-key" and idempotency_key is None:
                idempotency_key = value.decode("latin-1")
        found = scope["plutos.headers"] = (request_id, authorization, length, idempotency_key)
    return found


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes (the rest is
    never read into memory)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                size += len(body)
                if size > limit:
                    return None
                chunks.append(body)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def request_id_of(request: Request) -> str:
    """The client's ``X-Request-Id`` if it passes the one rule (:func:`core.ids.valid_request_id`),
    else a new id; either is what the server sees, so header and body always agree."""
    return request_id_from(wanted_headers(request)[0])
