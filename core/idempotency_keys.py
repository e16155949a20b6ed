"""What an idempotency key may be (shared by the interceptor and the REST bridge's header check)."""

from __future__ import annotations

MAX_KEY_LENGTH = 255


def valid_key(key: str) -> bool:
    """1 to 255 printable ASCII characters."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()
