"""POST /v1/batch and the Batch RPC: ordered results, exact sums, per-item failures, bounds."""

from __future__ import annotations

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2
from sqlalchemy import func, select

from gateway.app import RunningPlatform
from server.store.models import Batch, LedgerEntry, ProcessRecord
from tests.conftest import MODEL, GrpcClients

CAPITALS = ["What is the capital of France?", "What is the capital of Germany?", "What is the capital of Italy?"]


async def test_batch_matches_the_reference_shape_in_input_order(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/batch", json={"inputs": CAPITALS, "model": MODEL, "options": {"temperature": 0.3, "maxTokens": 12}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["id", "results", "totalUsage", "createdAt", "processingTime"]
    assert body["id"].startswith("batch_")
    assert [item["input"] for item in body["results"]] == CAPITALS
    for item in body["results"]:
        assert list(item) == ["input", "output", "usage"]
        assert item["output"]
    for field in ("promptTokens", "completionTokens", "totalTokens"):
        assert body["totalUsage"][field] == sum(item["usage"][field] for item in body["results"])


async def test_batch_items_are_stored_and_billed(http: httpx.AsyncClient, platform: RunningPlatform) -> None:
    body = (await http.post("/batch", json={"inputs": ["a", "b"], "model": MODEL, "options": {"maxTokens": 2}})).json()
    async with platform.runtime.sessions() as session:
        batch = await session.get(Batch, body["id"])
        records = (
            (
                await session.execute(
                    select(ProcessRecord)
                    .where(ProcessRecord.batch_id == body["id"])
                    .order_by(ProcessRecord.batch_index)
                )
            )
            .scalars()
            .all()
        )
        ids = [r.id for r in records]
        ledger_tokens = (
            await session.execute(
                select(
                    func.sum(LedgerEntry.prompt_tokens + LedgerEntry.completion_tokens),
                    func.sum(LedgerEntry.counts_as_request),
                ).where(LedgerEntry.record_id.in_(ids))
            )
        ).one()
    assert batch is not None and batch.item_count == 2
    assert [r.input for r in records] == ["a", "b"]
    assert ledger_tokens[0] == body["totalUsage"]["totalTokens"]
    assert ledger_tokens[1] == 1  # the whole batch counts as one request


async def test_one_failing_item_does_not_lose_the_others(http: httpx.AsyncClient) -> None:
    inputs = ["Hello", "word " * 9000, "", "Bye"]
    r = await http.post("/batch", json={"inputs": inputs, "model": MODEL, "options": {"maxTokens": 3}})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["input"] for x in results] == inputs
    assert "error" not in results[0] and results[0]["output"]
    assert results[1]["error"]["code"] == "input_too_long"
    assert results[2]["error"]["code"] == "invalid_parameters"
    assert "error" not in results[3]
    assert results[1]["usage"]["totalTokens"] == 0


@pytest.mark.parametrize("count", [0, 101])
async def test_batch_size_bounds(http: httpx.AsyncClient, count: int) -> None:
    r = await http.post("/batch", json={"inputs": ["x"] * count, "model": MODEL})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_parameters"
    assert r.json()["error"]["details"]["field"] == "inputs"


async def test_batch_of_100(http: httpx.AsyncClient) -> None:
    inputs = [f"Say the number {i}." for i in range(100)]
    r = await http.post("/batch", json={"inputs": inputs, "model": MODEL, "options": {"maxTokens": 1}}, timeout=900)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["input"] for x in results] == inputs
    assert all(x["usage"]["completionTokens"] == 1 for x in results)


async def test_batch_validates_model_and_options(http: httpx.AsyncClient) -> None:
    r = await http.post("/batch", json={"inputs": ["x"], "model": "nope"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_model"
    r = await http.post("/batch", json={"inputs": "x", "model": MODEL})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "inputs"


async def test_grpc_batch_behaves_identically(grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]) -> None:
    reply = await grpc_clients.processing.Batch(
        processing_pb2.BatchRequest(inputs=CAPITALS, model=MODEL, options=processing_pb2.ProcessOptions(max_tokens=5)),
        metadata=auth_md,
    )
    assert [r.input for r in reply.results] == CAPITALS
    assert reply.total_usage.total_tokens == sum(r.usage.total_tokens for r in reply.results)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.processing.Batch(processing_pb2.BatchRequest(model=MODEL), metadata=auth_md)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
