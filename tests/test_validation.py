"""Bad input: the reference's envelope with the right status and code — never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import MODEL


def assert_envelope(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["requestId"] == r.headers["x-request-id"]
    if field is not None:
        assert error["details"]["field"] == field
    return error


async def test_malformed_json_is_invalid_parameters(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", content=b'{"input": "x", ', headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "invalid_parameters")


async def test_body_that_is_not_an_object(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json=["input"])
    assert_envelope(r, 400, "invalid_parameters")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": MODEL}, "input"),
        ({"input": "", "model": MODEL}, "input"),
        ({"input": "hi"}, "model"),
        ({"input": 42, "model": MODEL}, "input"),
        ({"input": "hi", "model": ["x"]}, "model"),
        ({"input": "hi", "model": MODEL, "options": {"temperature": "hot"}}, "options.temperature"),
        ({"input": "hi", "model": MODEL, "options": {"maxTokens": 1.5}}, "options.maxTokens"),
        ({"input": "hi", "model": MODEL, "options": "fast"}, "options"),
        ({"input": "hi", "model": MODEL, "options": {"bogus": 1}}, "options.bogus"),
        ({"input": "hi", "model": MODEL, "extra": True}, "extra"),
    ],
)
async def test_missing_or_mistyped_fields(http: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    r = await http.post("/process", json=body)
    assert_envelope(r, 400, "invalid_parameters", field)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"temperature": -0.1}, "options.temperature"),
        ({"temperature": 2.5}, "options.temperature"),
        ({"topP": 0}, "options.topP"),
        ({"topP": 1.5}, "options.topP"),
        ({"maxTokens": 0}, "options.maxTokens"),
        ({"maxTokens": 8193}, "options.maxTokens"),
        ({"frequencyPenalty": 3}, "options.frequencyPenalty"),
        ({"presencePenalty": -3}, "options.presencePenalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "options.stop"),
    ],
)
async def test_out_of_range_options(http: httpx.AsyncClient, options: dict[str, Any], field: str) -> None:
    r = await http.post("/process", json={"input": "hi", "model": MODEL, "options": options})
    assert_envelope(r, 400, "invalid_parameters", field)


async def test_boundary_options_are_accepted(http: httpx.AsyncClient) -> None:
    options = {"temperature": 2, "topP": 1, "maxTokens": 1, "frequencyPenalty": -2, "presencePenalty": 2}
    r = await http.post("/process", json={"input": "hi", "model": MODEL, "options": options})
    assert r.status_code == 200, r.text


async def test_unknown_model(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json={"input": "hi", "model": "gpt-17"})
    error = assert_envelope(r, 400, "invalid_model")
    assert error["details"]["model"] == "gpt-17"


async def test_input_longer_than_context(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json={"input": "word " * 9000, "model": MODEL})
    assert_envelope(r, 400, "input_too_long")


async def test_huge_input_is_rejected_without_tokenizing(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json={"input": "x" * 3_000_000, "model": MODEL})
    assert_envelope(r, 400, "input_too_long")


async def test_body_over_the_size_limit(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json={"input": "x" * 5_000_000, "model": MODEL})
    assert_envelope(r, 400, "input_too_long")


async def test_wrong_method_is_405_envelope(http: httpx.AsyncClient) -> None:
    r = await http.delete("/models")
    assert_envelope(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


async def test_unknown_path_is_404_envelope(http: httpx.AsyncClient) -> None:
    assert_envelope(await http.get("/nothing/here"), 404, "not_found")
    assert_envelope(await http.get("/"), 404, "not_found")


async def test_unknown_query_parameter(http: httpx.AsyncClient) -> None:
    assert_envelope(await http.get("/models?verbose=1"), 400, "invalid_parameters", "verbose")


async def test_a_wrong_list_item_is_named_by_its_index(http: httpx.AsyncClient) -> None:
    r = await http.post("/batch", json={"inputs": ["a", 1], "model": MODEL})
    error = assert_envelope(r, 400, "invalid_parameters", "inputs[1]")
    assert error["message"] == "Invalid value for 'inputs[1]': expected a string."


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": "x"}, "max_tokens"),  # was "maxTokens": the reference's spelling, not OpenAI's
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "name": 1}]}, "messages[1].name"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "tool_calls": "x"}]},
            "messages[1].tool_calls",
        ),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"messages": [{"role": "tool", "content": "hi", "tool_call_id": "a\u0000"}]}, "messages[0].tool_call_id"),
    ],
)
async def test_openai_surface_params_are_openais_names(
    base_url: str, http: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    """/openai/v1 names the offending field as OpenAI's API (and its SDKs) write it: snake_case
    proto names with list indices, whether the bridge (a value of the wrong type) or the server (a
    NUL in text) refuses it."""
    sent = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
    r = await http.post(base_url.removesuffix("/v1") + "/openai/v1/chat/completions", json=sent)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_parameters", param)
