"""Signatures on webhook deliveries.

Two signatures, both HMAC-SHA256 with the same key (for a ``whsec_``-prefixed secret — the
Standard Webhooks form — the base64-decoded remainder, padding optional; otherwise the secret's
UTF-8 bytes). Signatures verify with the ``standardwebhooks`` package (the tests use it as the
oracle): ``Webhook("whsec_…")``, or ``Webhook(secret.encode())`` for a secret without the prefix.

- the Standard Webhooks header ``webhook-signature: v1,<base64 HMAC of "{id}.{timestamp}.{body}">``
  where ``body`` is the raw request body, byte for byte;
- the body's ``"signature"`` field (the reference's payload): lowercase hex HMAC of the body
  *without* that field, i.e. of the exact bytes ``{"event":...,"timestamp":...,"data":...}``. The
  field is always the body's last member, so a receiver gets those bytes back by cutting the raw
  body at its last ``,"signature":"`` and appending ``}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
GENERATED_KEY_BYTES = 32  # Standard Webhooks libraries generate 24 or 32
_SIGNATURE_MEMBER = b',"signature":"'


def _b64(text: str) -> bytes:
    """Standard base64, padding optional (as Standard Webhooks libraries read secrets)."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hmac_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return _b64(secret[len(SECRET_PREFIX) :])
    return secret.encode("utf-8")


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode("ascii")


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign, or None when it can."""
    if len(secret) > 300:
        return "'secret' may be at most 300 characters."
    if secret.startswith(SECRET_PREFIX):
        try:
            key = _b64(secret[len(SECRET_PREFIX) :])
        except (binascii.Error, ValueError):
            return "A 'secret' starting with 'whsec_' must continue with base64."
        if not key:
            return "A 'whsec_' secret must not be empty."
    return None


def header_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(hmac_key(secret), signed, hashlib.sha256).digest()).decode("ascii")


def signed_body(payload: bytes, secret: str | None) -> bytes:
    """The request body: ``payload`` (a JSON object), plus the ``"signature"`` member when signed."""
    if not secret:
        return payload
    digest = hmac.new(hmac_key(secret), payload, hashlib.sha256).hexdigest()
    return payload[:-1] + _SIGNATURE_MEMBER + digest.encode("ascii") + b'"}'


def body_signature_valid(body: bytes, secret: str) -> bool:
    """How a receiver checks the body's ``"signature"`` field (the reference's payload signature)."""
    cut = body.rfind(_SIGNATURE_MEMBER)
    if cut < 0 or not body.endswith(b'"}'):
        return False
    claimed = body[cut + len(_SIGNATURE_MEMBER) : -2]
    expected = hmac.new(hmac_key(secret), body[:cut] + b"}", hashlib.sha256).hexdigest().encode("ascii")
    return hmac.compare_digest(claimed, expected)
