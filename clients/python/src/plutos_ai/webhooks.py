"""Verify webhook deliveries (Standard Webhooks signatures).

A delivery carries three headers:

- ``webhook-id``: the message id (the same across retries of one delivery),
- ``webhook-timestamp``: Unix seconds when it was sent,
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` signatures of
  ``f"{id}.{timestamp}.{body}"``.

The HMAC key is the webhook's secret: for a ``whsec_``-prefixed secret the base64-decoded remainder,
otherwise the secret's UTF-8 bytes. Usage, in any web framework::

    from plutos_ai import webhooks

    event = webhooks.verify(request_body_bytes, request_headers, secret=WEBHOOK_SECRET)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from ._exceptions import WebhookVerificationError

__all__ = ["WebhookVerificationError", "sign", "verify"]

DEFAULT_TOLERANCE = 300
_PREFIX = "whsec_"


def _key(secret: str) -> bytes:
    if not secret:
        raise WebhookVerificationError("no webhook secret given")
    if secret.startswith(_PREFIX):
        try:
            encoded = secret[len(_PREFIX) :]  # padding optional, as Standard Webhooks libraries read it
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookVerificationError("the whsec_ secret is not valid base64") from exc
    return secret.encode("utf-8")


def _header(headers: Mapping[str, Any], name: str) -> str:
    # Header names are case-insensitive; plain dicts from frameworks may use any casing.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    if value is None or value == "":
        raise WebhookVerificationError(f"missing {name} header")
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value)


def sign(payload: bytes | str, *, msg_id: str, timestamp: int, secret: str) -> str:
    """The ``webhook-signature`` header value (one ``v1,`` signature) for a payload.

    Useful to test a webhook receiver.
    """
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(
    payload: bytes | str,
    headers: Mapping[str, Any],
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Any:
    """Check a delivery's signature and timestamp; return its parsed JSON payload.

    Args:
        payload: the raw request body, exactly as received (verify before any JSON re-encoding).
        headers: the request headers (any mapping; names matched case-insensitively).
        secret: the webhook's secret.
        tolerance: how many seconds the timestamp may differ from now (replay protection).
        now: the current Unix time (for tests); defaults to ``time.time()``.

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is outside the tolerance,
            no signature matches, or the payload is not JSON.
    """
    msg_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise WebhookVerificationError("invalid webhook-timestamp header") from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook timestamp too new")

    expected = sign(payload, msg_id=msg_id, timestamp=timestamp, secret=secret).encode("ascii")
    matched = False
    for candidate in signatures.split():
        version, _, _ = candidate.partition(",")
        # Compare every v1 signature in constant time, without stopping at the first match.
        if version == "v1" and hmac.compare_digest(candidate.encode("ascii", "replace"), expected):
            matched = True
    if not matched:
        raise WebhookVerificationError("no matching webhook signature")

    try:
        return json.loads(payload)
    except ValueError as exc:
        raise WebhookVerificationError("the webhook payload is not valid JSON") from exc
