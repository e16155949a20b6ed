"""POST /v1/stream (SSE) and the Stream RPC: real token streaming, errors, cancellation."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2
from sqlalchemy import select

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from server.limiter.policy import account_subject
from server.store.models import LedgerEntry, ProcessRecord, utcnow
from tests.conftest import MODEL, GrpcClients
from tests.sse import frames

STORY = {"input": "Write a short story about a robot.", "model": MODEL, "options": {"maxTokens": 40}}


async def wait_for_record(platform: RunningPlatform, record_id: str, timeout: float = 30) -> ProcessRecord:
    deadline = time.monotonic() + timeout
    while True:
        async with platform.runtime.sessions() as session:
            record = await session.get(ProcessRecord, record_id)
        if record is not None:
            return record
        assert time.monotonic() < deadline, f"record {record_id} never written"
        await asyncio.sleep(0.05)


async def test_sse_framing_is_byte_exact(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/stream", json=STORY, headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-request-id"].startswith("req_")
        # Keep-alive comments may appear on a slow machine; they are checked in their own test.
        got = [f async for f in frames(r) if f.comment is None]
    chunks, final = got[:-1], got[-1]
    assert chunks, "no chunk before the final event"
    for frame in chunks:
        assert re.fullmatch(rb'event: chunk\ndata: \{"chunk": "partial", "output": ".*"\}\n\n', frame.raw, re.S), (
            frame.raw
        )
    assert final.event == "complete"
    assert final.raw.startswith(b'event: complete\ndata: {"chunk": "final", "output": ')
    body = final.json()
    assert body["output"] == "".join(f.json()["output"] for f in chunks)
    usage = body["usage"]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]
    assert 0 < usage["completionTokens"] <= 40


async def test_first_chunk_arrives_before_generation_ends(
    http: httpx.AsyncClient, platform: RunningPlatform, key: CreatedKey
) -> None:
    """A bridge that buffered the stream would send its first frame only after the call ended; here
    the call must still hold its concurrency slot (the model still generating) when it arrives."""
    body = {
        "input": "Tell me a long story about the sea.",
        "model": MODEL,
        "options": {"maxTokens": 120, "temperature": 0},
    }
    subject = account_subject(key.account_id)
    async with http.stream("POST", "/stream", json=body) as r:
        it = frames(r)
        first = await it.__anext__()
        assert first.event == "chunk"
        assert await platform.runtime.limiter.in_flight(subject) >= 1  # still generating
        rest = [f async for f in it]
    final = rest[-1].json()
    assert final["usage"]["completionTokens"] > 10
    assert len(rest) > 5


async def test_stream_is_stored_and_retrievable(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/stream", json=STORY) as r:
        final = [f async for f in frames(r)][-1].json()
    got = (await http.get(f"/process/{final['id']}")).json()
    assert got["output"] == final["output"]
    assert got["usage"] == final["usage"]
    assert got["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"input": "hi", "model": "nope"}, 400, "invalid_model"),
        ({"input": "", "model": MODEL}, 400, "invalid_parameters"),
        ({"input": "hi", "model": MODEL, "options": {"temperature": 9}}, 400, "invalid_parameters"),
    ],
)
async def test_errors_before_the_first_byte_are_json(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    r = await http.post("/stream", json=body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == code


async def test_bad_key_on_stream_is_401_json(anon: httpx.AsyncClient) -> None:
    r = await anon.post("/stream", json=STORY, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"


async def test_client_disconnect_stops_generation_and_bills_what_was_made(
    http: httpx.AsyncClient, platform: RunningPlatform, key: CreatedKey
) -> None:
    body = {"input": "Write a very long essay about history.", "model": MODEL, "options": {"maxTokens": 2000}}
    request_id = "req_disconnect_test_1"
    started = utcnow()
    async with http.stream("POST", "/stream", json=body, headers={"X-Request-Id": request_id}) as r:
        it = frames(r)
        for _ in range(3):
            assert (await it.__anext__()).event == "chunk"
    # The connection is closed. The record appears as cancelled with far fewer tokens than asked.
    async with platform.runtime.sessions() as session:
        deadline = time.monotonic() + 30
        while True:
            rows = (
                (
                    await session.execute(
                        # This key's stream from this test: other tests cancel streams in the same store.
                        select(ProcessRecord)
                        .where(
                            ProcessRecord.account_id == key.account_id,
                            ProcessRecord.kind == "stream",
                            ProcessRecord.status == "cancelled",
                            ProcessRecord.created_at >= started,
                            ProcessRecord.input == body["input"],
                        )
                        .order_by(ProcessRecord.created_at)
                    )
                )
                .scalars()
                .all()
            )
            if rows or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert rows, "cancelled stream was not recorded"
    record = rows[-1]
    assert 3 <= record.completion_tokens < 200
    async with platform.runtime.sessions() as session:
        ledger = (await session.execute(select(LedgerEntry).where(LedgerEntry.record_id == record.id))).scalar_one()
    assert ledger.completion_tokens == record.completion_tokens
    got = (await http.get(f"/process/{record.id}")).json()
    assert got["status"] == "cancelled"
    # The model is free again promptly: a short request completes.
    r = await http.post("/process", json={"input": "Hi", "model": MODEL, "options": {"maxTokens": 2}})
    assert r.status_code == 200


# Keep-alive comments during silence after the first chunk: tests/test_upstream_faults.py (a paced upstream).


async def test_grpc_stream_yields_chunks_then_complete(
    grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]
) -> None:
    request = processing_pb2.StreamRequest(
        input="Say hello.", model=MODEL, options=processing_pb2.ProcessOptions(max_tokens=20)
    )
    kinds = []
    last = None
    async for message in grpc_clients.processing.Stream(request, metadata=auth_md):
        kinds.append(message.WhichOneof("event"))
        last = message
    assert kinds[-1] == "complete" and set(kinds[:-1]) == {"chunk"}
    assert last is not None and last.complete.usage.completion_tokens > 0


async def test_grpc_cancel_stops_generation(
    grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...], platform: RunningPlatform
) -> None:
    request = processing_pb2.StreamRequest(
        input="Write a very long essay about oceans.",
        model=MODEL,
        options=processing_pb2.ProcessOptions(max_tokens=2000),
    )
    call = grpc_clients.processing.Stream(request, metadata=(*auth_md, ("x-request-id", "grpc-cancel-1")))
    seen = 0
    async for _ in call:
        seen += 1
        if seen == 3:
            call.cancel()
            break
    assert call.cancelled()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with platform.runtime.sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(ProcessRecord).where(
                            ProcessRecord.input == request.input, ProcessRecord.status == "cancelled"
                        )
                    )
                )
                .scalars()
                .all()
            )
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows and rows[0].completion_tokens < 200


async def test_grpc_deadline_is_respected(grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]) -> None:
    request = processing_pb2.StreamRequest(
        input="Write a very long essay about mountains.",
        model=MODEL,
        # Greedy decoding: the answer is the same every run and runs to max_tokens (with sampling,
        # an early end-of-text could finish the stream inside the deadline, as it once did in CI).
        options=processing_pb2.ProcessOptions(max_tokens=2000, temperature=0),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in grpc_clients.processing.Stream(request, metadata=auth_md, timeout=0.5):
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_reference_frame_format_matches_json_dumps() -> None:
    # The reference shows `data: {"chunk": "partial", "output": "Hello"}`: ", " and ": " separators.
    assert json.dumps({"chunk": "partial", "output": "Hello"}) == '{"chunk": "partial", "output": "Hello"}'
