"""What a caller is told when an upstream fails: the platform's errors for one upstream, and the
one table mapping the HTTP client's lower-level errors (:mod:`server.backends.http_client`) to them.

Every error a caller can meet from an upstream, and what it means (see docs/upstreams.md)::

    upstream answered 5xx (not retried: 500, 501, ...)   → upstream_error       502
    upstream answered 502/503/504, retries used up       → upstream_error       502
    upstream answered another 4xx (400, 401, 404, ...)   → upstream_error       502
    connection reset (before any response: after
      retries), truncated stream, bad JSON, an error
      object inside the stream                           → upstream_error       502
    upstream answered 429, retries used up               → service_unavailable  503 (+ Retry-After)
    connection refused / connect timeout, retries used up → service_unavailable  503
    read timeout, or the caller's deadline reached       → timeout              504

``details`` carries ``model`` (the catalogue id), and when the upstream answered, ``upstreamStatus``
and ``upstreamRequestId`` (its ``x-request-id`` header). The upstream's own error message is logged,
never passed on (it can name the account or a key prefix).
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from core.errors import PlutosError
from server.backends.http_client import ConnectError, HttpClientError


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one lower-level error becomes."""

    code: str  # the platform's error code (core/errors.py)
    message: str  # for the caller; ``{model}`` is the catalogue id
    answered: bool  # the upstream had answered (200): details carry its status and request id
    retryable: bool  # nothing was answered, so trying again is safe
    metric: str  # plutos_upstream_errors_total's ``kind``


# The HTTP client's errors (first match wins), while the request is sent and its answer's status
# line awaited: a refused or timed-out connect may be retried; so may a connection closed before
# any answer (typically a keep-alive connection the server dropped as it was reused); a read
# timeout or the caller's deadline ends the call.
_TIMEOUT = Mapped("timeout", "The upstream for model '{model}' did not answer in time.", False, False, "timeout")
SENDING: tuple[tuple[type[BaseException], Mapped], ...] = (
    (
        ConnectError,
        Mapped("service_unavailable", "The upstream for model '{model}' cannot be reached.", False, True, "connect"),
    ),
    (TimeoutError, _TIMEOUT),
    (HttpClientError, Mapped("upstream_error", "The upstream connection failed.", False, True, "connection")),
)
# ... and while the accepted (200) answer's body is read.
READING: tuple[tuple[type[BaseException], Mapped], ...] = (
    (TimeoutError, _TIMEOUT),
    (
        HttpClientError,
        Mapped("upstream_error", "The upstream connection broke during generation.", True, False, "connection"),
    ),
)
# What the call sites catch: every class in the tables.
CLIENT_ERRORS = (HttpClientError, TimeoutError)


def mapped(table: tuple[tuple[type[BaseException], Mapped], ...], exc: BaseException) -> Mapped:
    """The table's entry for ``exc`` (one of :data:`CLIENT_ERRORS`)."""
    for kind, entry in table:
        if isinstance(exc, kind):
            return entry
    raise exc  # pragma: no cover - the tables cover CLIENT_ERRORS


class UpstreamErrors:
    """The platform's errors for one catalogue entry's upstream."""

    __slots__ = ("max_retry_after", "model_id", "url")

    def __init__(self, model_id: str, url: str, max_retry_after: float) -> None:
        self.model_id = model_id
        self.url = url  # for the logs
        self.max_retry_after = max_retry_after

    def from_client_error(
        self,
        table: tuple[tuple[type[BaseException], Mapped], ...],
        exc: BaseException,
        request_id: str | None = None,
    ) -> PlutosError:
        """The error a lower-level one (``exc``) becomes, by ``table`` (:data:`SENDING`, :data:`READING`)."""
        entry = mapped(table, exc)
        details = self.details(200, request_id) if entry.answered else self.details(None, None)
        return PlutosError(entry.code, entry.message.format(model=self.model_id), details)

    def details(self, status: int | None, request_id: str | None) -> dict[str, Any]:
        details: dict[str, Any] = {"model": self.model_id}
        if status is not None:
            details["upstreamStatus"] = status
        if request_id:
            details["upstreamRequestId"] = request_id
        return details

    def upstream_error(self, message: str, status: int | None = None, request_id: str | None = None) -> PlutosError:
        return PlutosError("upstream_error", message, self.details(status, request_id))

    def unavailable(
        self, message: str, status: int | None = None, request_id: str | None = None, retry_after: float | None = None
    ) -> PlutosError:
        cap = self.max_retry_after
        return PlutosError(
            "service_unavailable",
            message,
            self.details(status, request_id),
            # What the caller is told to wait: the upstream's figure, at most max_retry_after.
            retry_after=None if retry_after is None else max(1, math.ceil(min(retry_after, cap))),
        )

    def timeout(self) -> PlutosError:
        return PlutosError(
            "timeout", f"The upstream for model '{self.model_id}' did not answer in time.", {"model": self.model_id}
        )


_DELAY_SECONDS = re.compile(r"[0-9]{1,30}")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds, per RFC 9110 §10.2.3: ``delay-seconds`` (digits only) or an
    HTTP date. Anything else (``inf``, ``nan``, ``-5``, ``1e9``, ``abc``, a malformed date) is
    invalid and ignored: None. Finite, never negative; callers cap it (``max_retry_after``)."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
