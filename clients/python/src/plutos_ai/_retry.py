"""When to retry a failed request, and how long to wait first.

Retried: connection failures and the codes the server's table marks retryable (``_error_table.py``,
generated from core/errors.py: ``rate_limit_exceeded``, ``upstream_error``,
``service_unavailable``, ``timeout``); for codes it does not list, 429, 502, 503 and 504.
Never retried: other 4xx (the same request would fail the same way), ``insufficient_quota`` (a
quota does not recover within seconds) and 500 (the request may have had effects).
The wait is the server's ``Retry-After`` / ``details.retryAfter`` when it gives one, otherwise
exponential backoff with jitter.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from ._error_table import ERROR_TABLE
from ._exceptions import APIConnectionError, APIError, InsufficientQuotaError, PlutosError

__all__ = ["RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def parse_retry_after(value: object) -> float | None:
    """A ``Retry-After`` value (delta-seconds or an HTTP date) or ``retryAfter`` number -> seconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Retry decisions shared by the sync, async and gRPC clients."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    #: A server-requested wait longer than this is not slept through: the error is raised instead,
    #: so the caller decides (its ``retry_after`` attribute says how long).
    max_retry_after: float = 60.0

    def is_retryable(self, error: PlutosError) -> bool:
        if isinstance(error, APIConnectionError):
            return True
        if not isinstance(error, APIError):
            return False
        kind = ERROR_TABLE.get(error.code or "")
        if kind is not None:  # the server's table (generated from core/errors.py)
            return kind.retryable
        if isinstance(error, InsufficientQuotaError):
            return False
        return error.status_code in RETRYABLE_STATUS

    def backoff(self, retries_done: int) -> float:
        """Exponential backoff with "equal jitter": a random wait in [d/2, d], d = initial * 2**n."""
        ceiling = min(self.max_delay, self.initial_delay * float(2**retries_done))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay(self, error: PlutosError, retries_done: int) -> float | None:
        """Seconds to wait before the next attempt, or None when the error must be raised."""
        if retries_done >= self.max_retries or not self.is_retryable(error):
            return None
        retry_after = error.retry_after if isinstance(error, APIError) else None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self.backoff(retries_done)
