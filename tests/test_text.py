"""Text every store keeps: U+0000 (NUL) is refused up front, on every endpoint and field, with
``400 invalid_parameters`` naming the field — the same on SQLite and PostgreSQL, REST and gRPC
(issue 15, item 5). Nothing runs and nothing is billed for a refused call."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2

from tests.conftest import MODEL, GrpcClients

NUL = "\u0000"


def refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_parameters" and error["details"]["field"] == field, error
    assert "NUL" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/process", {"input": f"a{NUL}b", "model": MODEL}, "input"),
        ("/process", {"input": "ab", "model": f"m{NUL}"}, "model"),
        ("/process", {"input": "ab", "model": MODEL, "options": {"systemPrompt": NUL}}, "options.systemPrompt"),
        ("/process", {"input": "ab", "model": MODEL, "options": {"stop": ["x", f"{NUL}"]}}, "options.stop[1]"),
        ("/stream", {"input": f"a{NUL}b", "model": MODEL}, "input"),
        ("/batch", {"inputs": ["fine", f"a{NUL}b", "fine"], "model": MODEL}, "inputs[1]"),
        ("/webhooks", {"url": f"https://example.com/{NUL}", "events": ["processing.completed"]}, "url"),
        ("/webhooks", {"url": "https://example.com/h", "events": [f"processing.completed{NUL}"]}, "events[0]"),
        ("/webhooks", {"url": "https://example.com/h", "events": ["processing.completed"], "secret": NUL}, "secret"),
    ],
)
async def test_nul_in_a_body_is_refused(http: httpx.AsyncClient, path: str, body: dict[str, Any], field: str) -> None:
    refused(await http.post(path, json=body), field)


async def test_nul_in_a_path_or_query_is_refused(http: httpx.AsyncClient) -> None:
    refused(await http.get("/process/proc_%00"), "id")
    refused(await http.get("/usage", params={"start_date": f"2026-01-01{NUL}"}), "startDate")


async def test_a_refused_batch_runs_nothing(http: httpx.AsyncClient) -> None:
    marker = "nul-batch-marker-7f3a"
    before = (await http.get("/usage")).json()["usage"]["totalRequests"]
    refused(await http.post("/batch", json={"inputs": [marker, f"{NUL}"], "model": MODEL}), "inputs[1]")
    after = (await http.get("/usage")).json()["usage"]["totalRequests"]
    assert after == before  # nothing billed


async def test_nul_over_grpc(grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]) -> None:
    request = processing_pb2.ProcessRequest(input=f"a{NUL}b", model=MODEL)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_clients.processing.Process(request, metadata=auth_md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input" in (info.value.details() or "")


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        # param was messages[0].content.stringValue: the JSON types' inner fields leaked
        ("/chat/completions", {"messages": [{"role": "user", "content": f"a{NUL}"}]}, "messages[0].content"),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": NUL}]}]},
            "messages[0].content[1].text",
        ),
        ("/chat/completions", {"messages": HI, "stop": ["x", NUL]}, "stop[1]"),
        (
            "/chat/completions",
            {"messages": HI, "tools": [{"type": "function", "function": {"name": NUL}}]},
            "tools[0].function.name",
        ),
        (
            "/chat/completions",
            {"messages": HI, "tool_choice": {"type": "function", "function": {"name": NUL}}},
            "tool_choice.function.name",
        ),
        ("/completions", {"prompt": [f"a{NUL}"]}, "prompt[0]"),
    ],
)
async def test_nul_in_openai_json_values_names_the_openai_field(
    base_url: str, http: httpx.AsyncClient, path: str, body: dict[str, Any], param: str
) -> None:
    """Inside a field that takes any JSON (content, stop, tools, tool_choice, prompt) the NUL's
    ``param`` is the path in the JSON the caller sent, as OpenAI's API names it."""
    r = await http.post(base_url.removesuffix("/v1") + "/openai/v1" + path, json={"model": MODEL, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_parameters", param)
    assert "NUL" in error["message"]


async def test_other_control_characters_are_stored_faithfully(http: httpx.AsyncClient) -> None:
    text = "tab\there \u0001\u001f\u007f \ufffe end"
    r = await http.post("/process", json={"input": text, "model": MODEL, "options": {"maxTokens": 1}})
    assert r.status_code == 200, r.text
    got = await http.get(f"/process/{r.json()['id']}")
    assert got.json()["input"] == text


@pytest.mark.parametrize("max_tokens", [1, 2, 4, 5])
async def test_max_tokens_ending_inside_a_character_never_emits_a_broken_one(
    http: httpx.AsyncClient, max_tokens: int
) -> None:
    """The local model spells 🎉 as three byte tokens (F0 9F | 8E | 89): these limits cut it (issue 15,
    item 14). The cut character is dropped, on /process and in every /stream chunk."""
    body = {
        "input": "Reply with only these emoji: 🎉🎉🎉🎉",
        "model": MODEL,
        "options": {"maxTokens": max_tokens, "temperature": 0},
    }
    r = await http.post("/process", json=body)
    assert r.status_code == 200, r.text
    output = r.json()["output"]
    assert "\ufffd" not in output and output == "🎉" * len(output)
    assert r.json()["usage"]["completionTokens"] == max_tokens
    async with http.stream("POST", "/stream", json=body) as s:
        raw = (await s.aread()).decode("utf-8")
    assert "\ufffd" not in raw and "\\ufffd" not in raw.lower()
