"""Every error the SDK raises.

PlutosError                      base of everything below; also raised for client misconfiguration
 ├── APIConnectionError          the request never got an answer (DNS, refused, reset, stream cut)
 │    └── APITimeoutError        ... because the client-side timeout / gRPC deadline expired
 ├── APIError                    the gateway answered with an error envelope
 │    │                          attrs: status_code, code, message, details, request_id,
 │    │                          retry_after, grpc_status
 │    ├── AuthenticationError        invalid_api_key        401  UNAUTHENTICATED
 │    ├── PermissionDeniedError      permission_denied      403  PERMISSION_DENIED
 │    │    └── AccountSuspendedError account_suspended   403  PERMISSION_DENIED
 │    ├── NotFoundError              not_found              404  NOT_FOUND
 │    ├── ConflictError              conflict               409  ABORTED (e.g. rotating a revoked key)
 │    ├── IdempotencyInProgressError idempotency_in_progress 409 ABORTED (retried after retry_after)
 │    ├── IdempotencyKeyReusedError  idempotency_key_reused 422  FAILED_PRECONDITION
 │    ├── InvalidParametersError     invalid_parameters     400  INVALID_ARGUMENT
 │    ├── InvalidModelError          invalid_model          400/404
 │    ├── InputTooLongError          input_too_long         400  INVALID_ARGUMENT
 │    ├── RateLimitError             rate_limit_exceeded    429  RESOURCE_EXHAUSTED
 │    ├── InsufficientQuotaError     insufficient_quota     429  RESOURCE_EXHAUSTED
 │    ├── InternalServerError        internal_error         500  INTERNAL
 │    ├── UpstreamError              upstream_error         502  UNKNOWN
 │    ├── ServiceUnavailableError    service_unavailable    503  UNAVAILABLE
 │    ├── GatewayTimeoutError        timeout                504  DEADLINE_EXCEEDED
 │    └── (other codes, e.g. not_implemented 501: APIError itself, or the class of their status)
 └── WebhookVerificationError    a webhook delivery failed signature / timestamp verification

An error is classified by its `code` first (the reference's code strings, the same as the gRPC
`google.rpc.ErrorInfo.reason`); a code this SDK does not know falls back to the HTTP status (or, over
gRPC, the status code). The table `ERROR_CODES` below is that mapping, used by the REST and gRPC
clients alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AccountSuspendedError",
    "AuthenticationError",
    "ConflictError",
    "GatewayTimeoutError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReusedError",
    "InputTooLongError",
    "InsufficientQuotaError",
    "InternalServerError",
    "InvalidModelError",
    "InvalidParametersError",
    "NotFoundError",
    "PermissionDeniedError",
    "PlutosError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UpstreamError",
    "WebhookVerificationError",
]


class PlutosError(Exception):
    """Base class of every exception raised by plutos_ai."""


class APIConnectionError(PlutosError):
    """The request did not get a response: network failure, refused connection or a stream cut short."""


class APITimeoutError(APIConnectionError):
    """The client-side timeout (REST) or deadline (gRPC) expired before the gateway answered."""


class WebhookVerificationError(PlutosError):
    """A webhook delivery's signature, id or timestamp did not verify."""


class APIError(PlutosError):
    """The gateway returned an error response.

    Attributes:
        status_code: the HTTP status (for gRPC errors, the HTTP status the gateway's REST bridge
            would have used).
        code: the error code string, e.g. ``"rate_limit_exceeded"`` (``None`` if the body had none).
        message: the human-readable message.
        details: the envelope's ``details`` object (``{}`` when absent).
        request_id: the gateway's request id, for support (``None`` when unknown).
        grpc_status: the gRPC status name (e.g. ``"NOT_FOUND"``) when raised by the gRPC client.
        retry_after: seconds the gateway asked the client to wait before retrying (``Retry-After``
            header, ``details.retryAfter`` or gRPC ``RetryInfo``), if it said.
    """

    #: The code this class stands for, its default HTTP status and gRPC status.
    error_code: ClassVar[str | None] = None
    http_status: ClassVar[int | None] = None
    grpc_status_name: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        grpc_status: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code if status_code is not None else self.http_status
        self.code = code if code is not None else self.error_code
        self.details: dict[str, Any] = dict(details or {})
        self.request_id = request_id
        self.grpc_status = grpc_status
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [p for p in (str(self.status_code) if self.status_code else None, self.code) if p]
        text = f"[{' '.join(parts)}] {self.message}" if parts else self.message
        if self.request_id:
            text += f" (request id: {self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(APIError):
    """The API key is missing, invalid or expired (``invalid_api_key``)."""

    error_code = "invalid_api_key"
    http_status = 401
    grpc_status_name = "UNAUTHENTICATED"


class PermissionDeniedError(APIError):
    """The API key lacks the permission for this call (``permission_denied``)."""

    error_code = "permission_denied"
    http_status = 403
    grpc_status_name = "PERMISSION_DENIED"


class AccountSuspendedError(PermissionDeniedError):
    """The key's account is suspended by the operator (``account_suspended``)."""

    error_code = "account_suspended"
    http_status = 403
    grpc_status_name = "PERMISSION_DENIED"


class ConflictError(APIError):
    """The resource's state forbids the call, e.g. rotating a key that is not active (``conflict``)."""

    error_code = "conflict"
    http_status = 409
    grpc_status_name = "ABORTED"


class NotFoundError(APIError):
    """The resource does not exist or belongs to another account (``not_found``)."""

    error_code = "not_found"
    http_status = 404
    grpc_status_name = "NOT_FOUND"


class InvalidParametersError(APIError):
    """The request's parameters are invalid (``invalid_parameters``)."""

    error_code = "invalid_parameters"
    http_status = 400
    grpc_status_name = "INVALID_ARGUMENT"


class InvalidModelError(APIError):
    """The model is unknown or not available to this key (``invalid_model``; HTTP 400 or 404)."""

    error_code = "invalid_model"
    http_status = 400
    grpc_status_name = "INVALID_ARGUMENT"


class InputTooLongError(APIError):
    """The input exceeds the model's maximum length (``input_too_long``)."""

    error_code = "input_too_long"
    http_status = 400
    grpc_status_name = "INVALID_ARGUMENT"


class RateLimitError(APIError):
    """Too many requests (``rate_limit_exceeded``); ``retry_after`` says how many seconds to wait."""

    error_code = "rate_limit_exceeded"
    http_status = 429
    grpc_status_name = "RESOURCE_EXHAUSTED"


class InsufficientQuotaError(APIError):
    """The account's quota is used up (``insufficient_quota``); retrying soon will not help."""

    error_code = "insufficient_quota"
    http_status = 429
    grpc_status_name = "RESOURCE_EXHAUSTED"


class InternalServerError(APIError):
    """The gateway failed unexpectedly (``internal_error``)."""

    error_code = "internal_error"
    http_status = 500
    grpc_status_name = "INTERNAL"


class UpstreamError(APIError):
    """The model backend behind the gateway failed (``upstream_error``)."""

    error_code = "upstream_error"
    http_status = 502
    grpc_status_name = "UNKNOWN"


class ServiceUnavailableError(APIError):
    """The gateway is temporarily unavailable (``service_unavailable``)."""

    error_code = "service_unavailable"
    http_status = 503
    grpc_status_name = "UNAVAILABLE"


class GatewayTimeoutError(APIError):
    """The gateway gave up waiting for the model (``timeout``)."""

    error_code = "timeout"
    http_status = 504
    grpc_status_name = "DEADLINE_EXCEEDED"


class IdempotencyInProgressError(APIError):
    """The first request with this idempotency key is still running (``idempotency_in_progress``);
    retried after ``retry_after`` seconds, when its answer is replayed."""

    error_code = "idempotency_in_progress"
    http_status = 409
    grpc_status_name = "ABORTED"


class IdempotencyKeyReusedError(APIError):
    """The idempotency key was already used with a different request (``idempotency_key_reused``)."""

    error_code = "idempotency_key_reused"
    http_status = 422
    grpc_status_name = "FAILED_PRECONDITION"


# code string -> class. One entry per code of the API reference.
ERROR_CODES: dict[str, type[APIError]] = {
    cls.error_code: cls
    for cls in (
        AuthenticationError,
        PermissionDeniedError,
        AccountSuspendedError,
        NotFoundError,
        ConflictError,
        InvalidParametersError,
        InvalidModelError,
        InputTooLongError,
        RateLimitError,
        InsufficientQuotaError,
        InternalServerError,
        UpstreamError,
        ServiceUnavailableError,
        GatewayTimeoutError,
        IdempotencyInProgressError,
        IdempotencyKeyReusedError,
    )
    if cls.error_code is not None
}

# Fallbacks for codes this SDK does not know.
_BY_HTTP_STATUS: dict[int, type[APIError]] = {
    400: InvalidParametersError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidParametersError,
    429: RateLimitError,
    500: InternalServerError,
    502: UpstreamError,
    503: ServiceUnavailableError,
    504: GatewayTimeoutError,
}

# gRPC status name -> (class, HTTP status), per the gRPC -> HTTP table the gateway's bridge uses.
_BY_GRPC_STATUS: dict[str, tuple[type[APIError], int]] = {
    "INVALID_ARGUMENT": (InvalidParametersError, 400),
    "FAILED_PRECONDITION": (InvalidParametersError, 400),
    "OUT_OF_RANGE": (InvalidParametersError, 400),
    "UNAUTHENTICATED": (AuthenticationError, 401),
    "PERMISSION_DENIED": (PermissionDeniedError, 403),
    "NOT_FOUND": (NotFoundError, 404),
    "ABORTED": (ConflictError, 409),
    "RESOURCE_EXHAUSTED": (RateLimitError, 429),
    "INTERNAL": (InternalServerError, 500),
    "UNKNOWN": (InternalServerError, 500),
    "DATA_LOSS": (InternalServerError, 500),
    "UNAVAILABLE": (ServiceUnavailableError, 503),
    "DEADLINE_EXCEEDED": (GatewayTimeoutError, 504),
    "UNIMPLEMENTED": (APIError, 501),
}


def error_class_for(code: str | None, status_code: int | None) -> type[APIError]:
    """The exception class for an error code, falling back to the HTTP status."""
    if code and code in ERROR_CODES:
        return ERROR_CODES[code]
    if status_code is not None:
        if status_code in _BY_HTTP_STATUS:
            return _BY_HTTP_STATUS[status_code]
        if 400 <= status_code < 500:
            return InvalidParametersError if status_code == 400 else APIError
        if status_code >= 500:
            return InternalServerError if status_code == 500 else APIError
    return APIError


def make_api_error(
    message: str,
    *,
    status_code: int | None,
    code: str | None,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Build the APIError subclass for an HTTP error: by code, else by HTTP status."""
    return error_class_for(code, status_code)(
        message,
        status_code=status_code,
        code=code,
        details=details,
        request_id=request_id,
        retry_after=retry_after,
        grpc_status=None,
    )


def error_for_grpc_status(
    grpc_status: str,
    message: str,
    *,
    reason: str | None,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Build the APIError for a gRPC status: by ErrorInfo.reason, else by the status code."""
    cls: type[APIError]
    http: int | None
    if reason and reason in ERROR_CODES:
        cls = ERROR_CODES[reason]
        # invalid_model is 400 or 404 over REST: keep the one the status says.
        http = 404 if cls is InvalidModelError and grpc_status == "NOT_FOUND" else cls.http_status
    else:
        cls, http = _BY_GRPC_STATUS.get(grpc_status, (APIError, None))
    return cls(
        message,
        status_code=http,
        code=reason or None,
        details=details,
        request_id=request_id,
        retry_after=retry_after,
        grpc_status=grpc_status,
    )
