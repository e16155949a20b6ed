"""POST /v1/process and GET /v1/process/{id} over REST, against the real model and store."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import select

from gateway.app import RunningPlatform
from server.store.models import LedgerEntry, ProcessRecord
from tests.conftest import MODEL, new_key

REFERENCE_BODY = {
    "input": "What is the capital of France?",
    "model": MODEL,
    "options": {"temperature": 0.7, "maxTokens": 100, "systemPrompt": "You are a helpful assistant."},
}


async def test_process_returns_the_reference_shape(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json=REFERENCE_BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["id", "output", "model", "usage", "createdAt", "processingTime"]
    assert re.fullmatch(r"proc_[0-9a-f]{16}", body["id"])
    assert body["model"] == MODEL
    assert isinstance(body["output"], str) and body["output"].strip()
    usage = body["usage"]
    assert all(isinstance(usage[k], int) for k in ("promptTokens", "completionTokens", "totalTokens"))
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]
    assert 0 < usage["completionTokens"] <= 100
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["createdAt"])
    assert isinstance(body["processingTime"], int)
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"].startswith("req_")


async def test_get_process_returns_the_stored_record(http: httpx.AsyncClient) -> None:
    created = (await http.post("/process", json=REFERENCE_BODY)).json()
    r = await http.get(f"/process/{created['id']}")
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == created["id"]
    assert got["input"] == REFERENCE_BODY["input"]
    assert got["output"] == created["output"]
    assert got["usage"] == created["usage"]
    assert got["createdAt"] == created["createdAt"]
    assert got["status"] == "completed"
    assert got["options"]["maxTokens"] == 100
    assert got["options"]["systemPrompt"] == "You are a helpful assistant."
    assert got["options"]["topP"] == 1.0  # the reference's default, filled in


async def test_another_accounts_record_is_not_found(
    http: httpx.AsyncClient, platform: RunningPlatform, base_url: str
) -> None:
    created = (await http.post("/process", json={"input": "Hi", "model": MODEL, "options": {"maxTokens": 4}})).json()
    other = await new_key(platform, plan="free")
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {other.secret}"}) as client:
        r = await client.get(f"/process/{created['id']}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_unknown_process_id_is_404(http: httpx.AsyncClient) -> None:
    r = await http.get("/process/proc_0000000000000000")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_usage_counts_are_the_models_real_token_counts(
    http: httpx.AsyncClient, platform: RunningPlatform
) -> None:
    r = await http.post("/process", json={"input": "Count to three.", "model": MODEL, "options": {"maxTokens": 8}})
    body = r.json()
    backend = platform.runtime.catalogue.backends[MODEL]
    from server.backends.base import GenerationParams

    prepared = await backend.prepare("Count to three.", GenerationParams(max_tokens=8))
    assert body["usage"]["promptTokens"] == prepared.prompt_tokens
    assert body["usage"]["completionTokens"] <= 8


async def test_process_writes_record_and_ledger_entry(http: httpx.AsyncClient, platform: RunningPlatform) -> None:
    body = (await http.post("/process", json={"input": "Hello", "model": MODEL, "options": {"maxTokens": 5}})).json()
    async with platform.runtime.sessions() as session:
        record = await session.get(ProcessRecord, body["id"])
        ledger = (await session.execute(select(LedgerEntry).where(LedgerEntry.record_id == body["id"]))).scalar_one()
    assert record is not None and record.output == body["output"]
    assert ledger.prompt_tokens == body["usage"]["promptTokens"]
    assert ledger.completion_tokens == body["usage"]["completionTokens"]


async def test_stop_sequence_ends_output_before_it(http: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {
        "input": "List the numbers 1 to 10 separated by commas.",
        "model": MODEL,
        "options": {"temperature": 0, "maxTokens": 60},
    }
    full = (await http.post("/process", json=body)).json()["output"]
    assert "," in full
    stopped = (await http.post("/process", json={**body, "options": {**body["options"], "stop": [","]}})).json()
    assert "," not in stopped["output"]
    assert full.startswith(stopped["output"])


async def test_temperature_zero_is_deterministic(http: httpx.AsyncClient) -> None:
    body = {"input": "Name a color.", "model": MODEL, "options": {"temperature": 0, "maxTokens": 12}}
    first = (await http.post("/process", json=body)).json()["output"]
    second = (await http.post("/process", json=body)).json()["output"]
    assert first == second


async def test_max_tokens_caps_completion(http: httpx.AsyncClient) -> None:
    body = {"input": "Write a long story about dragons.", "model": MODEL, "options": {"maxTokens": 3}}
    usage = (await http.post("/process", json=body)).json()["usage"]
    assert usage["completionTokens"] == 3


async def test_request_id_is_echoed(http: httpx.AsyncClient) -> None:
    r = await http.get("/models", headers={"X-Request-Id": "my-trace-42"})
    assert r.headers["x-request-id"] == "my-trace-42"
