"""Many streams at once (the small version of bench/concurrent_streams.py): every stream gets every
chunk, and after the clients leave — or all disconnect at once mid-stream — the concurrency slots
and the upstream connections are given back.

The upstream is a mock OpenAI-compatible server in this module (a raw asyncio protocol: the real
upstreams cannot be made to stream on a schedule for hundreds of callers at once); it numbers its
chunks and counts its open connections. The gateway is a real platform with the mock in its
catalogue; the clients are real HTTP connections through the REST bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.app import RunningPlatform, start_platform
from server.backends.base import GenerationState
from server.backends.http_client import IDLE_CONNECTIONS
from server.backends.upstream_errors import UpstreamErrors
from server.backends.upstream_sse import SseReader
from server.config import _parse_model
from server.keys import CreatedKey
from tests.conftest import new_key
from tests.conftest import test_settings as make_settings
from tests.limits_support import in_flight, wait_until

STREAMS = 200
CHUNKS = 8
INTERVAL = 0.05  # seconds between two chunks
SLOW_START = 999  # max_tokens asking the mock to wait a second before its first chunk
MODEL = "mock-streams"
ROOT = Path(__file__).resolve().parent.parent


class ScheduledUpstream(asyncio.Protocol):
    """Answers every POST with an SSE stream of ``max_tokens`` chunks ``|<seq>|``, one every
    INTERVAL seconds; keep-alive; counts live connections in ``open``."""

    open: ClassVar[set[ScheduledUpstream]] = set()

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: Any = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        ScheduledUpstream.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        ScheduledUpstream.open.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in self.buffer[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = json.loads(self.buffer[end + 4 : end + 4 + length])
        self.buffer = self.buffer[end + 4 + length :]
        self.task = asyncio.ensure_future(self._answer(int(body.get("max_tokens") or 1)))

    async def _answer(self, chunks: int) -> None:
        write = self.transport.write
        write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

        def event(obj: dict[str, Any]) -> None:
            data = b"data: " + json.dumps(obj).encode() + b"\n\n"
            write(b"%x\r\n%s\r\n" % (len(data), data))

        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": "mock"}
        if chunks == SLOW_START:  # the first chunk (and so the gateway's response) comes late
            await asyncio.sleep(1.0)
        for seq in range(chunks):
            await asyncio.sleep(INTERVAL)
            event({**base, "choices": [{"index": 0, "delta": {"content": f"|{seq}|"}, "finish_reason": None}]})
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        event(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks},
            }
        )
        write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")


@pytest.fixture(scope="module")
async def mock_port() -> AsyncIterator[int]:
    server = await asyncio.get_running_loop().create_server(ScheduledUpstream, "127.0.0.1", 0, backlog=1024)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture(scope="module")
async def many(
    platform: RunningPlatform,  # the session platform resets and migrates a shared PostgreSQL first
    mock_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningPlatform]:
    base = make_settings(tmp_path_factory.mktemp("streams-store"))
    spec = _parse_model(
        {
            "id": MODEL,
            "backend": "openai-compatible",
            "base_url": f"http://127.0.0.1:{mock_port}/v1",
            "max_tokens": 4096,
            "max_connections": STREAMS + 50,
            "pricing": {"input_tokens": 0.01, "output_tokens": 0.03},
        }
    )
    # The plan's concurrency limit is how many streams one key may hold open at once.
    plans = {**base.plans, "enterprise": dataclasses.replace(base.plans["enterprise"], concurrent_requests=STREAMS)}
    # Keep-alive comments between the chunks (every 50 ms): the timer that writes them is exercised too.
    running = await start_platform(dataclasses.replace(base, models=[spec], plans=plans, sse_keepalive_seconds=0.02))
    yield running
    await running.stop(grace=1)


@pytest.fixture(scope="module")
async def many_key(many: RunningPlatform) -> CreatedKey:
    return await new_key(many, name="many-streams")


@pytest.fixture
async def clients(many: RunningPlatform, many_key: CreatedKey) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{many.http_port}",
        headers={"Authorization": f"Bearer {many_key.secret}"},
        limits=httpx.Limits(max_connections=STREAMS, max_keepalive_connections=0),
        timeout=60,
    ) as client:
        yield client


async def one_stream(client: httpx.AsyncClient) -> tuple[list[int], str]:
    """The chunk numbers a /v1/stream call delivered, and its last event's name."""
    seqs: list[int] = []
    last = ""
    body = {"input": "Tell me a story.", "model": MODEL, "options": {"maxTokens": CHUNKS}}
    async with client.stream("POST", "/v1/stream", json=body) as r:
        assert r.status_code == 200, await r.aread()
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = last = line[7:]
            elif line.startswith("data: ") and event == "chunk":
                seqs.append(int(json.loads(line[6:])["output"].strip("|")))
    return seqs, last


async def upstream_connections_closed() -> bool:
    return not ScheduledUpstream.open


async def test_every_stream_gets_every_chunk_in_order(
    clients: httpx.AsyncClient, many: RunningPlatform, many_key: CreatedKey
) -> None:
    idle = many.runtime.idle_release
    idle_periods = idle.idle_periods
    results = await asyncio.gather(*(one_stream(clients) for _ in range(STREAMS)))
    assert all(seqs == list(range(CHUNKS)) for seqs, _ in results), [s for s, _ in results if s != list(range(CHUNKS))]
    assert {last for _, last in results} == {"complete"}

    async def released() -> bool:
        return await in_flight(many, many_key.account_id) == 0

    await wait_until(released, "every concurrency slot to be released")

    async def pool_trimmed() -> bool:  # the pool keeps some connections for reuse, not all of them
        return len(ScheduledUpstream.open) <= IDLE_CONNECTIONS

    await wait_until(pool_trimmed, "the upstream connections beyond the idle pool to close")

    async def idle_noticed() -> bool:  # the gateway then gives freed memory back (server/memory_release.py)
        return idle.in_flight == 0 and idle.idle_periods > idle_periods

    await wait_until(idle_noticed, "the gateway to notice it is idle")


async def test_a_mass_disconnect_gives_back_every_slot_and_upstream_connection(
    clients: httpx.AsyncClient, many: RunningPlatform, many_key: CreatedKey
) -> None:
    started = asyncio.Event()
    first_chunks = 0
    gauge_before = slots_gauge()

    async def leave_after_the_first_chunk() -> None:
        nonlocal first_chunks
        body = {"input": "Tell me a story.", "model": MODEL, "options": {"maxTokens": 1000}}
        async with clients.stream("POST", "/v1/stream", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line == "event: chunk":
                    first_chunks += 1
                    if first_chunks == STREAMS:
                        started.set()
                    await started.wait()  # everyone leaves at once, mid-stream
                    return

    await asyncio.gather(*(leave_after_the_first_chunk() for _ in range(STREAMS)))
    assert first_chunks == STREAMS

    async def released() -> bool:
        return await in_flight(many, many_key.account_id) == 0

    await wait_until(released, "every concurrency slot to be released")
    await wait_until(upstream_connections_closed, "every upstream connection to be closed")

    async def gauge_back() -> bool:
        return slots_gauge() == gauge_before

    await wait_until(gauge_back, "plutos_concurrency_slots_in_flight to come back")


def slots_gauge() -> float | None:
    return REGISTRY.get_sample_value("plutos_concurrency_slots_in_flight")


async def test_a_client_gone_before_the_first_chunk_gives_its_slot_back(
    clients: httpx.AsyncClient, many: RunningPlatform, many_key: CreatedKey
) -> None:
    body = {"input": "Tell me a story.", "model": MODEL, "options": {"maxTokens": SLOW_START}}
    waiting = asyncio.ensure_future(clients.post("/v1/stream", json=body))

    async def held() -> bool:
        return await in_flight(many, many_key.account_id) == 1

    await wait_until(held, "the stream to take its slot")
    waiting.cancel()  # the connection closes before the response has begun
    with contextlib.suppress(asyncio.CancelledError):
        await waiting

    async def released() -> bool:
        return await in_flight(many, many_key.account_id) == 0

    await wait_until(released, "the slot to be released", within=15)


async def test_keepalive_comments_come_between_chunks_and_the_stream_still_completes(
    clients: httpx.AsyncClient,
) -> None:
    body = {"input": "Tell me a story.", "model": MODEL, "options": {"maxTokens": 4}}
    r = await clients.post("/v1/stream", json=body)
    events = r.content.split(b"\n\n")
    assert b": keep-alive" in events
    assert [e for e in events if e.startswith(b"event: ")][-1].startswith(b"event: complete")


def test_serve_raises_the_soft_open_files_limit_to_the_hard_one() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    low = min(256, hard)
    script = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from gateway.resources import raise_open_files_limit, MAX_OPEN_FILES\n"
        "print(raise_open_files_limit())\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print(raise_open_files_limit())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ}
    ).stdout.split("\n")
    expected = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    if low < expected:
        assert out[0] == f"({low}, {expected})"
    assert int(out[1]) == expected
    assert out[2] == "None"  # already raised: nothing to do, nothing logged


def test_a_long_streams_text_is_kept_in_few_objects() -> None:
    """Each piece is a str of its own as it arrives; a long stream's earlier ones are joined, so
    what an open stream holds grows by its text, not by an object per piece."""
    state = GenerationState()
    reader = SseReader(UpstreamErrors(MODEL, "http://mock", 30), state, None, float("inf"))
    sent = [f"|{i}|" for i in range(1000)]
    received = []
    for piece in sent:
        event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        received += reader.feed(b"data: " + json.dumps(event).encode() + b"\n\n")
    assert received == sent
    assert state.text == "".join(sent)
    assert len(state.text_parts) < 100
