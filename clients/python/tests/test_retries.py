"""Retries: 429/502/503/504 and connection errors, honouring Retry-After; never other 4xx or quota."""

from __future__ import annotations

import httpx
import pytest

from plutos_ai import (
    APIConnectionError,
    AuthenticationError,
    InsufficientQuotaError,
    InternalServerError,
    InvalidParametersError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from plutos_ai._retry import RetryPolicy, parse_retry_after
from plutos_testing import PROCESS_JSON, Recorder, error_response, make_async_client, make_client, sequence


def ok() -> httpx.Response:
    return httpx.Response(200, json=PROCESS_JSON)


def test_retry_after_header_is_honoured() -> None:
    rec = Recorder()
    client = make_client(
        sequence(
            error_response(429, "rate_limit_exceeded", headers={"Retry-After": "3"}, retryAfter=60), ok()
        ),
        rec,
    )
    assert client.process_data("hi", "m").output == PROCESS_JSON["output"]
    assert len(rec.requests) == 2
    assert rec.sleeps == [3.0]


def test_details_retry_after_is_used_without_the_header() -> None:
    rec = Recorder()
    client = make_client(sequence(error_response(429, "rate_limit_exceeded", retryAfter=2), ok()), rec)
    client.process_data("hi", "m")
    assert rec.sleeps == [2.0]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_with_backoff(status: int) -> None:
    rec = Recorder()
    client = make_client(sequence(error_response(status, "x"), error_response(status, "x"), ok()), rec)
    client.process_data("hi", "m")
    assert len(rec.requests) == 3
    # Equal jitter: attempt n waits in [d/2, d] with d = 0.5 * 2**n.
    assert 0.25 <= rec.sleeps[0] <= 0.5
    assert 0.5 <= rec.sleeps[1] <= 1.0


def test_gives_up_after_max_retries() -> None:
    rec = Recorder()
    client = make_client(lambda r: error_response(503, "service_unavailable"), rec, max_retries=3)
    with pytest.raises(ServiceUnavailableError):
        client.process_data("hi", "m")
    assert len(rec.requests) == 4
    assert len(rec.sleeps) == 3


def test_max_retries_zero_disables_retries() -> None:
    rec = Recorder()
    client = make_client(
        lambda r: error_response(429, "rate_limit_exceeded", retryAfter=1), rec, max_retries=0
    )
    with pytest.raises(RateLimitError) as info:
        client.process_data("hi", "m")
    assert info.value.retry_after == 1
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_parameters", InvalidParametersError),
        (401, "invalid_api_key", AuthenticationError),
        (403, "permission_denied", PermissionDeniedError),
        (404, "not_found", NotFoundError),
        (429, "insufficient_quota", InsufficientQuotaError),
        (500, "internal_error", InternalServerError),
    ],
)
def test_errors_that_are_never_retried(status: int, code: str, cls: type[Exception]) -> None:
    rec = Recorder()
    client = make_client(lambda r: error_response(status, code), rec)
    with pytest.raises(cls):
        client.process_data("hi", "m")
    assert len(rec.requests) == 1
    assert rec.sleeps == []


def test_a_retry_after_too_long_to_wait_is_raised_at_once() -> None:
    rec = Recorder()
    client = make_client(
        lambda r: error_response(429, "rate_limit_exceeded", headers={"Retry-After": "3600"}), rec
    )
    with pytest.raises(RateLimitError) as info:
        client.process_data("hi", "m")
    assert info.value.retry_after == 3600
    assert len(rec.requests) == 1


def test_connection_errors_are_retried_then_raised() -> None:
    rec = Recorder()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(refuse, rec, max_retries=2)
    with pytest.raises(APIConnectionError) as info:
        client.list_models()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(rec.requests) == 3


def test_connection_error_then_success() -> None:
    rec = Recorder()
    calls = iter([None, ok()])

    def flaky(request: httpx.Request) -> httpx.Response:
        response = next(calls)
        if response is None:
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    assert make_client(flaky, rec).process_data("hi", "m").id == PROCESS_JSON["id"]
    assert len(rec.sleeps) == 1


async def test_async_client_honours_retry_after() -> None:
    rec = Recorder()
    client = make_async_client(
        sequence(error_response(503, "service_unavailable", headers={"Retry-After": "1.5"}), ok()), rec
    )
    result = await client.process_data("hi", "m")
    assert result.output == PROCESS_JSON["output"]
    assert rec.sleeps == [1.5]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("0.5", 0.5), (7, 7.0), ("", None), (None, None), ("soon", None), ("-3", 0.0)],
)
def test_parse_retry_after(value: object, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    seconds = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")
    assert seconds == 0.0  # in the past


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_retries=10)
    assert all(policy.backoff(n) <= policy.max_delay for n in range(10))
