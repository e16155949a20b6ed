"""Errors are classified by the reference's code, falling back to the HTTP status."""

from __future__ import annotations

import httpx
import pytest

import plutos_ai
from plutos_ai import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    GatewayTimeoutError,
    InputTooLongError,
    InsufficientQuotaError,
    InternalServerError,
    InvalidModelError,
    InvalidParametersError,
    NotFoundError,
    PermissionDeniedError,
    PlutosError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    WebhookVerificationError,
    _exceptions,
)
from plutos_ai._base import error_from_envelope, error_from_response

# The reference's codes and their HTTP statuses, written out independently of the SDK's table.
CODES = [
    ("invalid_api_key", 401, AuthenticationError),
    ("permission_denied", 403, PermissionDeniedError),
    ("not_found", 404, NotFoundError),
    ("invalid_parameters", 400, InvalidParametersError),
    ("invalid_model", 400, InvalidModelError),
    ("invalid_model", 404, InvalidModelError),
    ("input_too_long", 400, InputTooLongError),
    ("rate_limit_exceeded", 429, RateLimitError),
    ("insufficient_quota", 429, InsufficientQuotaError),
    ("upstream_error", 502, UpstreamError),
    ("service_unavailable", 503, ServiceUnavailableError),
    ("timeout", 504, GatewayTimeoutError),
    ("internal_error", 500, InternalServerError),
]


@pytest.mark.parametrize(("code", "status", "cls"), CODES)
def test_error_envelope_maps_to_its_class(code: str, status: int, cls: type[APIError]) -> None:
    response = httpx.Response(
        status,
        json={"error": {"code": code, "message": "m", "details": {"a": 1}, "requestId": "req_9"}},
    )
    err = error_from_response(response)
    assert type(err) is cls
    assert (err.status_code, err.code, err.message, err.details, err.request_id) == (
        status,
        code,
        "m",
        {"a": 1},
        "req_9",
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidParametersError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, UpstreamError),
        (503, ServiceUnavailableError),
        (504, GatewayTimeoutError),
        (418, APIError),
        (599, APIError),
    ],
)
def test_unknown_code_maps_by_http_status(status: int, cls: type[APIError]) -> None:
    err = error_from_response(
        httpx.Response(status, json={"error": {"code": "brand_new_code", "message": "m"}})
    )
    assert type(err) is cls
    assert err.code == "brand_new_code"
    assert err.status_code == status


def test_body_without_envelope_still_maps_by_status() -> None:
    err = error_from_response(httpx.Response(503, text="<html>Service Unavailable</html>"))
    assert isinstance(err, ServiceUnavailableError)
    assert "Service Unavailable" in err.message


def test_request_id_falls_back_to_the_header() -> None:
    response = httpx.Response(
        404, json={"error": {"code": "not_found", "message": "m"}}, headers={"X-Request-Id": "req_h"}
    )
    assert error_from_response(response).request_id == "req_h"


def test_rate_limit_retry_after_from_header_or_details() -> None:
    from_header = error_from_response(
        httpx.Response(
            429,
            json={"error": {"code": "rate_limit_exceeded", "message": "m", "details": {"retryAfter": 60}}},
            headers={"Retry-After": "7"},
        )
    )
    from_details = error_from_envelope(
        {"error": {"code": "rate_limit_exceeded", "message": "m", "details": {"retryAfter": 60}}},
        status_code=429,
    )
    assert isinstance(from_header, RateLimitError) and from_header.retry_after == 7
    assert isinstance(from_details, RateLimitError) and from_details.retry_after == 60


def test_error_event_without_status_takes_the_code_default() -> None:
    err = error_from_envelope(
        {"error": {"code": "upstream_error", "message": "backend died"}}, status_code=None
    )
    assert isinstance(err, UpstreamError)
    assert err.status_code == 502


def test_str_shows_status_code_and_request_id() -> None:
    err = AuthenticationError("Invalid API key", status_code=401, code="invalid_api_key", request_id="req_1")
    assert str(err) == "[401 invalid_api_key] Invalid API key (request id: req_1)"


def test_hierarchy() -> None:
    for _, _, cls in CODES:
        assert issubclass(cls, APIError)
        assert issubclass(cls, PlutosError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert not issubclass(APIConnectionError, APIError)
    assert issubclass(WebhookVerificationError, PlutosError)


def test_the_module_comment_shows_every_exception() -> None:
    doc = _exceptions.__doc__ or ""
    for name in _exceptions.__all__:
        assert name in doc, name


def test_every_exception_is_exported_at_top_level() -> None:
    for name in _exceptions.__all__:
        assert getattr(plutos_ai, name) is getattr(_exceptions, name)


@pytest.mark.parametrize(
    ("grpc_status", "reason", "cls", "http"),
    [
        ("UNAUTHENTICATED", "invalid_api_key", AuthenticationError, 401),
        ("INVALID_ARGUMENT", "invalid_model", InvalidModelError, 400),
        ("NOT_FOUND", "invalid_model", InvalidModelError, 404),
        ("RESOURCE_EXHAUSTED", "insufficient_quota", InsufficientQuotaError, 429),
        ("UNAVAILABLE", "upstream_error", UpstreamError, 502),
        ("NOT_FOUND", None, NotFoundError, 404),
        ("INVALID_ARGUMENT", "something_new", InvalidParametersError, 400),
        ("INTERNAL", None, InternalServerError, 500),
        ("UNIMPLEMENTED", "not_implemented", APIError, 501),
        ("ABORTED", None, ConflictError, 409),
        ("CANCELLED", None, APIError, None),
    ],
)
def test_grpc_status_mapping(
    grpc_status: str, reason: str | None, cls: type[APIError], http: int | None
) -> None:
    err = _exceptions.error_for_grpc_status(grpc_status, "m", reason=reason)
    assert type(err) is cls
    assert err.status_code == http
    assert err.grpc_status == grpc_status
