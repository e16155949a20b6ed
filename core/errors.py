"""Every error a caller can meet, in one table used both ways.

The server raises :class:`PlutosError` with a code string from :data:`ERRORS`; the error
interceptor turns it into a ``google.rpc.Status`` (``ErrorInfo.reason`` = the code, a
``google.protobuf.Struct`` with the details, ``RetryInfo`` where it applies). The REST bridge reads
the same table to pick the HTTP status, and the OpenAI-compatible surface (``/openai/v1``) to
render OpenAI's error body (``type`` from the last column, ``code`` = the code).

    code                    gRPC status         HTTP OpenAI type
    invalid_parameters      INVALID_ARGUMENT    400  invalid_request_error
    invalid_model           INVALID_ARGUMENT    400  invalid_request_error
    input_too_long          INVALID_ARGUMENT    400  invalid_request_error
    invalid_api_key         UNAUTHENTICATED     401  authentication_error
    permission_denied       PERMISSION_DENIED   403  permission_error
    account_suspended       PERMISSION_DENIED   403  permission_error       (the key's account is suspended by an ope
    not_found               NOT_FOUND           404  invalid_request_error
    model_not_found         NOT_FOUND           404  invalid_request_error  (OpenAIService's unknown model, as OpenAI)
    idempotency_in_progress ABORTED             409  invalid_request_error  (+ RetryInfo, Retry-After: the first call
    idempotency_key_reused  FAILED_PRECONDITION 422  invalid_request_error  (the key came with another request)
    method_not_allowed      UNIMPLEMENTED       405  invalid_request_error  (REST only)
    conflict                ABORTED             409  invalid_request_error  (the resource's state forbids it: e.g. ro
    rate_limit_exceeded     RESOURCE_EXHAUSTED  429  requests               (+ RetryInfo, Retry-After) retryable
    insufficient_quota      RESOURCE_EXHAUSTED  429  insufficient_quota
    internal_error          INTERNAL            500  server_error
    not_implemented         UNIMPLEMENTED       501  invalid_request_error
    upstream_error          UNKNOWN             502  server_error           retryable
    service_unavailable     UNAVAILABLE         503  server_error           retryable
    timeout                 DEADLINE_EXCEEDED   504  server_error           retryable
    cancelled               CANCELLED           499  server_error           (client went away)
    headers_too_large       RESOURCE_EXHAUSTED  431  invalid_request_error  (REST only: request headers over the limit)
    request_timeout         DEADLINE_EXCEEDED   408  invalid_request_error  (REST only: headers not received in time)

``scripts/gen_error_tables.py`` writes this table into each SDK (``make clients``; a test fails when a
copy drifts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

ERROR_DOMAIN = "plutos.ai"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: str
    grpc_status: grpc.StatusCode
    http_status: int
    openai_type: str  # the ``type`` of OpenAI's error body, on the /openai/v1 surface
    # Whether a client should retry (with backoff, honouring Retry-After): the SDKs' retry rule,
    # generated into each SDK with the rest of this table (scripts/gen_error_tables.py).
    retryable: bool = False


ERRORS: dict[str, ErrorKind] = {
    kind.code: kind
    for kind in (
        ErrorKind("invalid_parameters", grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        ErrorKind("invalid_model", grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        ErrorKind("input_too_long", grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        ErrorKind("invalid_api_key", grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error"),
        ErrorKind("permission_denied", grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
        ErrorKind("account_suspended", grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
        ErrorKind("not_found", grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
        ErrorKind("model_not_found", grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
        ErrorKind("method_not_allowed", grpc.StatusCode.UNIMPLEMENTED, 405, "invalid_request_error"),
        ErrorKind("conflict", grpc.StatusCode.ABORTED, 409, "invalid_request_error"),
        ErrorKind("idempotency_in_progress", grpc.StatusCode.ABORTED, 409, "invalid_request_error", retryable=True),
        ErrorKind("idempotency_key_reused", grpc.StatusCode.FAILED_PRECONDITION, 422, "invalid_request_error"),
        ErrorKind("rate_limit_exceeded", grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "requests", retryable=True),
        ErrorKind("insufficient_quota", grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "insufficient_quota"),
        ErrorKind("internal_error", grpc.StatusCode.INTERNAL, 500, "server_error"),
        ErrorKind("not_implemented", grpc.StatusCode.UNIMPLEMENTED, 501, "invalid_request_error"),
        ErrorKind("upstream_error", grpc.StatusCode.UNKNOWN, 502, "server_error", retryable=True),
        ErrorKind("service_unavailable", grpc.StatusCode.UNAVAILABLE, 503, "server_error", retryable=True),
        ErrorKind("timeout", grpc.StatusCode.DEADLINE_EXCEEDED, 504, "server_error", retryable=True),
        ErrorKind("cancelled", grpc.StatusCode.CANCELLED, 499, "server_error"),
        # REST only, answered by the HTTP server before a request reaches the API (bridge/http_protocol.py).
        ErrorKind("headers_too_large", grpc.StatusCode.RESOURCE_EXHAUSTED, 431, "invalid_request_error"),
        ErrorKind("request_timeout", grpc.StatusCode.DEADLINE_EXCEEDED, 408, "invalid_request_error"),
    )
}

# For statuses that arrive without ErrorInfo (e.g. a deadline enforced by gRPC itself).
CODE_FOR_GRPC_STATUS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_parameters",
    grpc.StatusCode.UNAUTHENTICATED: "invalid_api_key",
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.ABORTED: "conflict",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limit_exceeded",
    grpc.StatusCode.UNIMPLEMENTED: "not_implemented",
    grpc.StatusCode.UNAVAILABLE: "service_unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.CANCELLED: "cancelled",
}


def kind_for_grpc_status(status: grpc.StatusCode) -> ErrorKind:
    return ERRORS[CODE_FOR_GRPC_STATUS.get(status, "internal_error")]


# How much of a caller's own input a message or detail repeats back (characters).
MAX_ECHO = 64
MAX_MESSAGE = 512
MAX_DETAIL = 256


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """``value`` as text to repeat in an error message: at most ``limit`` characters (then "…"),
    control characters shown as ``?``: a message never grows with the caller's input."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return "".join(c if c.isprintable() else "?" for c in text)


def _capped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL:
        return value[:MAX_DETAIL] + "…"
    return value


class PlutosError(Exception):
    """An error with a code from :data:`ERRORS`, a human message and optional details."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}")
        if len(message) > MAX_MESSAGE:  # the backstop: messages should echo() what they repeat
            message = message[:MAX_MESSAGE] + "…"
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = {k: _capped(v) for k, v in (details or {}).items()}
        self.retry_after = _whole_seconds(retry_after)
        retry_after = self.retry_after
        if retry_after is not None:
            self.details.setdefault("retryAfter", retry_after)

    @property
    def kind(self) -> ErrorKind:
        return ERRORS[self.code]


# The longest Retry-After any error carries (seconds): a day window's reset is at most 86,400 s away.
MAX_RETRY_AFTER = 86400


def _whole_seconds(value: float | None) -> int | None:
    """``Retry-After`` as whole seconds in ``[0, MAX_RETRY_AFTER]``; None for None or a non-finite value."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return int(min(max(value, 0), MAX_RETRY_AFTER))


def invalid_parameter(field: str, message: str) -> PlutosError:
    """A 400 ``invalid_parameters`` naming the offending field in ``details.field``."""
    return PlutosError("invalid_parameters", message, {"field": field})
