"""The REST client against an in-process httpx.MockTransport: requests sent and results parsed."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from plutos_ai import (
    AuthenticationError,
    BatchItemError,
    InvalidModelError,
    NotFoundError,
    PlutosAI,
    PlutosError,
    ProcessResult,
    Usage,
)
from plutos_testing import API_KEY, BASE_URL, PROCESS_JSON, Recorder, error_response, make_client

# -- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "url"),
    [
        ("production", "https://api.plutos-ai.com/v1"),
        ("staging", "https://staging-api.plutos-ai.com/v1"),
        ("development", "http://localhost:3000/v1"),
    ],
)
def test_environment_base_urls(environment: str, url: str) -> None:
    assert PlutosAI(api_key="k", environment=environment).base_url == url  # type: ignore[arg-type]


def test_default_environment_is_production() -> None:
    assert PlutosAI(api_key="k").base_url == "https://api.plutos-ai.com/v1"


def test_base_url_overrides_environment_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUTOS_BASE_URL", "http://from-env:1/v1")
    client = PlutosAI(api_key="k", environment="staging", base_url="http://explicit:2/v1/")
    assert client.base_url == "http://explicit:2/v1"


def test_env_var_base_url_is_used_without_explicit_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUTOS_BASE_URL", "http://from-env:1/v1")
    assert PlutosAI(api_key="k", environment="staging").base_url == "http://from-env:1/v1"


def test_unknown_environment_is_rejected() -> None:
    with pytest.raises(ValueError, match="environment"):
        PlutosAI(api_key="k", environment="prod")  # type: ignore[arg-type]


def test_api_key_falls_back_to_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUTOS_API_KEY", "sk-env")
    assert PlutosAI().api_key == "sk-env"


def test_missing_api_key_is_a_clear_error() -> None:
    with pytest.raises(PlutosError, match="PLUTOS_API_KEY"):
        PlutosAI()


# -- requests and results ------------------------------------------------------------------------------


def test_process_data_sends_the_reference_request_and_parses_the_result() -> None:
    rec = Recorder()
    client = make_client(lambda r: httpx.Response(200, json=PROCESS_JSON), rec)
    result = client.process_data(
        input="What is the capital of France?",
        model="gpt-4",
        options={"temperature": 0.7, "max_tokens": 100, "systemPrompt": "You are a helpful assistant."},
    )
    request = rec.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/process"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert rec.json() == {
        "input": "What is the capital of France?",
        "model": "gpt-4",
        "options": {"temperature": 0.7, "maxTokens": 100, "systemPrompt": "You are a helpful assistant."},
    }
    assert result == ProcessResult(
        id="proc_1234567890abcdef",
        output="The capital of France is Paris.",
        model="gpt-4",
        usage=Usage(prompt_tokens=15, completion_tokens=8, total_tokens=23),
        created_at=dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc),
        processing_time=1250,
    )
    assert result.usage.total_tokens == 23


def test_process_data_without_options_sends_no_options() -> None:
    rec = Recorder()
    make_client(lambda r: httpx.Response(200, json=PROCESS_JSON), rec).process_data("hi", "m")
    assert rec.json() == {"input": "hi", "model": "m"}


def test_timestamps_with_nanoseconds_parse() -> None:
    body = {**PROCESS_JSON, "createdAt": "2024-01-01T12:00:00.123456789Z"}
    result = make_client(lambda r: httpx.Response(200, json=body)).process_data("hi", "m")
    assert result.created_at == dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


def test_get_process() -> None:
    rec = Recorder()
    body = {
        "id": "proc_1",
        "input": "hi",
        "output": "hello",
        "model": "m",
        "options": {"temperature": 0.7, "maxTokens": 1000, "topP": 1.0, "stop": []},
        "usage": {"promptTokens": 1, "completionTokens": 2, "totalTokens": 3},
        "createdAt": "2024-01-01T12:00:00Z",
        "processingTime": 5,
        "status": "completed",
    }
    record = make_client(lambda r: httpx.Response(200, json=body), rec).get_process("proc_1")
    assert rec.requests[0].method == "GET"
    assert str(rec.requests[0].url) == f"{BASE_URL}/process/proc_1"
    assert record.status == "completed"
    assert record.input == "hi"
    assert record.options.max_tokens == 1000
    assert record.options.temperature == 0.7
    assert record.usage.total_tokens == 3


def test_ids_are_escaped_in_paths() -> None:
    rec = Recorder()
    client = make_client(lambda r: error_response(404, "not_found"), rec)
    with pytest.raises(NotFoundError):
        client.get_process("../models")
    assert rec.requests[0].url.raw_path == b"/v1/process/..%2Fmodels"


def test_batch_parses_items_in_order_with_item_errors() -> None:
    rec = Recorder()
    body = {
        "id": "batch_1",
        "results": [
            {
                "input": "a",
                "output": "A",
                "usage": {"promptTokens": 1, "completionTokens": 1, "totalTokens": 2},
            },
            {
                "input": "b",
                "output": "",
                "usage": {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0},
                "error": {"code": "input_too_long", "message": "too long"},
            },
        ],
        "totalUsage": {"promptTokens": 1, "completionTokens": 1, "totalTokens": 2},
        "createdAt": "2024-01-01T12:00:00Z",
        "processingTime": 9,
    }
    result = make_client(lambda r: httpx.Response(200, json=body), rec).batch(
        inputs=["a", "b"], model="m", options={"max_tokens": 5}
    )
    assert rec.json() == {"inputs": ["a", "b"], "model": "m", "options": {"maxTokens": 5}}
    assert [item.input for item in result.results] == ["a", "b"]
    assert result.results[0].ok and result.results[0].output == "A"
    assert result.results[1].error == BatchItemError(code="input_too_long", message="too long")
    assert result.total_usage.total_tokens == 2


def test_batch_rejects_a_single_string() -> None:
    with pytest.raises(TypeError):
        make_client(lambda r: httpx.Response(200)).batch(inputs="abc", model="m")  # type: ignore[arg-type]


def test_list_models() -> None:
    body = {
        "models": [
            {
                "id": "gpt-4",
                "name": "GPT-4",
                "description": "Most capable",
                "maxTokens": 8192,
                "supportsStreaming": True,
                "pricing": {"inputTokens": 0.03, "outputTokens": 0.06},
            }
        ]
    }
    (model,) = make_client(lambda r: httpx.Response(200, json=body)).list_models()
    assert (model.id, model.max_tokens, model.supports_streaming) == ("gpt-4", 8192, True)
    assert model.pricing.output_tokens == 0.06


def test_get_usage_sends_dates_as_query_parameters() -> None:
    rec = Recorder()
    body = {
        "period": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-31T23:59:59Z"},
        "usage": {"totalRequests": 3, "totalTokens": "40", "totalCost": 0.5, "requestsByModel": {"gpt-4": 3}},
        "limits": {"requestsPerMinute": 60, "requestsPerHour": 1000, "requestsPerDay": 10000},
    }
    client = make_client(lambda r: httpx.Response(200, json=body), rec)
    report = client.get_usage(start_date=dt.date(2024, 1, 1), end_date="2024-01-31")
    assert rec.requests[0].url.params == httpx.QueryParams(
        {"start_date": "2024-01-01", "end_date": "2024-01-31"}
    )
    assert report.usage.total_tokens == 40
    assert report.usage.requests_by_model == {"gpt-4": 3}
    assert report.limits.requests_per_minute == 60
    assert report.period.start == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

    client.get_usage()
    assert rec.requests[1].url.query == b""


def test_webhooks() -> None:
    rec = Recorder()
    url = "https://example.com/hook"
    hook = {
        "id": "wh_1",
        "url": url,
        "events": ["processing.completed"],
        "hasSecret": True,
        "createdAt": "2024-01-01T12:00:00Z",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=hook)
        if request.method == "GET":
            return httpx.Response(200, json={"webhooks": [hook]})
        return httpx.Response(200, json={"id": "wh_1", "deleted": True})

    client = make_client(handler, rec)
    created = client.create_webhook(url=url, events=["processing.completed"], secret="s3cret")
    assert rec.json(0) == {"url": url, "events": ["processing.completed"], "secret": "s3cret"}
    assert created.has_secret and created.id == "wh_1" and created.secret is None
    assert client.list_webhooks() == [created]
    deletion = client.delete_webhook("wh_1")
    assert rec.requests[2].method == "DELETE"
    assert str(rec.requests[2].url) == f"{BASE_URL}/webhooks/wh_1"
    assert deletion.deleted
    hook["secret"] = "whsec_c2VjcmV0"  # generated by the server when the request has none
    generated = client.create_webhook(url=url, events=["processing.completed"])
    assert generated.secret == "whsec_c2VjcmV0" and "whsec_" not in repr(generated)


def test_create_webhook_without_secret_omits_it() -> None:
    rec = Recorder()
    make_client(lambda r: httpx.Response(200, json={}), rec).create_webhook("https://x", ["usage.threshold"])
    assert rec.json() == {"url": "https://x", "events": ["usage.threshold"]}


def test_api_errors_raise_their_class() -> None:
    client = make_client(lambda r: error_response(404, "invalid_model", "Model 'nope' not found"))
    with pytest.raises(InvalidModelError) as info:
        client.process_data("hi", "nope")
    assert info.value.status_code == 404
    assert info.value.request_id == "req_1"
    assert "not found" in info.value.message


def test_client_context_manager_closes_its_own_pool() -> None:
    with PlutosAI(api_key="k") as client:
        http = client._http
    assert http.is_closed


def test_passed_in_http_client_is_left_open() -> None:
    http = httpx.Client()
    with PlutosAI(api_key="k", http_client=http):
        pass
    assert not http.is_closed
    http.close()


def test_authentication_error() -> None:
    client = make_client(lambda r: error_response(401, "invalid_api_key", "Invalid API key"))
    with pytest.raises(AuthenticationError):
        client.list_models()


def test_results_carry_the_request_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=PROCESS_JSON, headers={"X-Request-Id": "req_abc"})

    result = make_client(handler).process_data(input="x", model="m")
    assert result.request_id == "req_abc"
    assert result == ProcessResult.from_json(PROCESS_JSON)  # not part of equality


async def test_async_results_carry_the_request_id() -> None:
    from plutos_testing import make_async_client

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=PROCESS_JSON, headers={"X-Request-Id": "req_def"})

    async with make_async_client(handler) as client:
        result = await client.process_data(input="x", model="m")
    assert result.request_id == "req_def"


def test_with_options_gives_per_request_settings() -> None:
    recorder = Recorder()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=PROCESS_JSON)

    client = make_client(handler, recorder)
    derived = client.with_options(timeout=5, max_retries=0, extra_headers={"X-Trace": "t1"})
    derived.process_data(input="x", model="m")
    client.process_data(input="x", model="m")
    first, second = recorder.requests
    assert first.headers["x-trace"] == "t1" and "x-trace" not in second.headers
    assert first.extensions["timeout"]["read"] == 5
    assert derived.max_retries == 0 and client.max_retries != 0
    derived.close()  # leaves the shared connections open
    client.process_data(input="x", model="m")


def test_with_raw_response_gives_headers_and_the_parsed_result() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=PROCESS_JSON, headers={"X-Request-Id": "req_raw", "X-RateLimit-Remaining": "41"}
        )

    client = make_client(handler)
    raw = client.with_raw_response.process_data(input="x", model="m")
    assert raw.status_code == 200 and raw.request_id == "req_raw"
    assert raw.headers["x-ratelimit-remaining"] == "41"
    assert raw.data == ProcessResult.from_json(PROCESS_JSON)
    with pytest.raises(AttributeError):
        client.with_raw_response.stream  # noqa: B018


async def test_async_with_raw_response() -> None:
    from plutos_testing import make_async_client

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"models": []}, headers={"X-Request-Id": "req_araw"})

    async with make_async_client(handler) as client:
        raw = await client.with_raw_response.list_models()
    assert raw.request_id == "req_araw" and raw.data == []
