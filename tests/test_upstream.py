"""Upstream providers: the ``openai-compatible`` backend, end to end.

The real upstream is llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``)
running the same SmolLM2 GGUF in a subprocess; a test platform routes ``gpt-4`` there. Failures a real
server cannot be made to produce on demand come from a fault injector (tests/fault_upstream.py).
Every test goes through the real REST bridge or gRPC server and checks the stored record and the
ledger: an error gives the right envelope, and only what was produced is billed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2, processing_pb2_grpc

from gateway.app import RunningPlatform, start_platform
from server.backends.local import find_smollm2_gguf
from server.backends.openai_compat import estimate_prompt_tokens
from server.catalogue import Catalogue
from server.keys import CreatedKey
from server.observability.logs import ACCESS_LOGGER, JsonFormatter
from tests.conftest import MODEL, free_port, new_key, processing_stub
from tests.conftest import test_settings as make_settings
from tests.fault_upstream import MOCK_TEXT, FaultUpstream
from tests.limits_support import in_flight, no_slots_held

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionFunctionToolParam
from tests.upstream_support import KEY_ENV, KEY_VALUE, record_and_ledger, unique, upstream_spec

# -- the real upstream: llama-cpp-python's server -------------------------------------------------


@dataclasses.dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_llama_server(log: Path) -> LlamaServer:
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(find_smollm2_gguf()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                # By default it aborts a running request when another arrives; a gateway queues them.
                "--interrupt_requests",
                "False",
                "--n_threads",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = LlamaServer(process, port, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited:\n{server.output()}")
        try:
            if httpx.get(f"{server.base_url}/models", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"llama_cpp.server did not start in time:\n{server.output()}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = start_llama_server(tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def victim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A second llama.cpp server, for the test that kills it."""
    server = start_llama_server(tmp_path_factory.mktemp("victim") / "server.log")
    yield server
    server.stop()


# -- the platform under test ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def up(
    platform: RunningPlatform,  # the session platform resets and migrates a shared PostgreSQL first
    llama_server: LlamaServer,
    victim_server: LlamaServer,
    faults: FaultUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningPlatform]:
    base = make_settings(tmp_path_factory.mktemp("upstream-store"))
    local = base.model(MODEL)
    assert local is not None
    mock = faults.base_url
    models = [
        local,
        upstream_spec("gpt-4", llama_server.base_url, "gpt-4"),
        upstream_spec("victim", victim_server.base_url, "victim"),
        upstream_spec("gpt-4-whole", llama_server.base_url, "gpt-4", supports_streaming=False),
        upstream_spec("mock-ok", mock, "ok"),
        upstream_spec("mock-echo", mock, "echo"),
        upstream_spec("mock-echo-whole", mock, "echo", supports_streaming=False),
        upstream_spec("mock-500", mock, "fail-500"),
        upstream_spec("mock-429", mock, "rate-429", max_retries=2),
        upstream_spec("mock-429-once", mock, "rate-429-once"),
        upstream_spec("mock-503-once", mock, "unavailable-503-once"),
        upstream_spec("mock-bad-json", mock, "bad-json"),
        upstream_spec("mock-bad-json-whole", mock, "bad-json", supports_streaming=False),
        upstream_spec("mock-die", mock, "die-after-3"),
        upstream_spec("mock-error-event", mock, "error-event"),
        upstream_spec("mock-cut-short", mock, "cut-short"),
        upstream_spec("mock-slow", mock, "slow"),
        upstream_spec("mock-slow-read", mock, "slow", timeout={"read": 1}),
        upstream_spec("mock-stall", mock, "stall-after-1", timeout={"read": 1}),
        upstream_spec("mock-drip", mock, "drip"),
        upstream_spec("mock-tool-call", mock, "tool-call"),
        upstream_spec("mock-tool-call-whole", mock, "tool-call", supports_streaming=False),
        upstream_spec("mock-fallback", mock, "fail-500", fallbacks=["mock-429", "mock-ok"], max_retries=0),
        upstream_spec("unreachable", f"http://127.0.0.1:{free_port()}/v1", "x", max_retries=1),
    ]
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, KEY_VALUE)
        running = await start_platform(dataclasses.replace(base, models=models))
    yield running
    await running.stop(grace=1)


@pytest.fixture(scope="module")
async def up_key(up: RunningPlatform) -> CreatedKey:
    return await new_key(up, name="upstream-tests")


@pytest.fixture(scope="module")
async def client(up: RunningPlatform, up_key: CreatedKey) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{up.http_port}/v1",
        headers={"Authorization": f"Bearer {up_key.secret}"},
        timeout=60,
    ) as c:
        yield c


@pytest.fixture(scope="module")
async def processing(up: RunningPlatform) -> AsyncIterator[processing_pb2_grpc.ProcessingServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{up.grpc_port}")
    yield processing_stub(channel)
    await channel.close(None)


class SseReader:
    """Reads an SSE response in steps: ``await reader.events(limit)`` (event, data) pairs at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def events(self, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        event = "message"
        async for line in self._lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
                if limit is not None and len(events) >= limit:
                    break
        return events


async def sse_events(response: httpx.Response, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE response, stopping after ``limit`` events."""
    return await SseReader(response).events(limit)


def assert_envelope(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code
    assert error["requestId"] == r.headers["x-request-id"]
    return error


# -- the catalogue --------------------------------------------------------------------------------


async def test_models_lists_every_backend_with_its_streaming_support(client: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await client.get("/models")).json()["models"]}
    assert {MODEL, "gpt-4", "gpt-4-whole", "mock-ok", "unreachable"} <= set(models)
    assert models[MODEL]["supportsStreaming"] is True
    assert models["gpt-4"]["supportsStreaming"] is True
    assert models["gpt-4-whole"]["supportsStreaming"] is False
    assert models["gpt-4"]["pricing"] == {"inputTokens": 0.01, "outputTokens": 0.03}


async def test_a_model_without_streaming_refuses_stream(client: httpx.AsyncClient) -> None:
    r = await client.post("/stream", json={"input": "Hi", "model": "gpt-4-whole"})
    assert_envelope(r, 400, "invalid_model")


def test_the_key_is_never_written_in_the_catalogue(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="api_key_env"):
        upstream_spec("m", "http://127.0.0.1:9/v1", "m", api_key="sk-in-clear")


def test_a_missing_key_variable_stops_start_up(tmp_path: Path) -> None:
    spec = upstream_spec("m", "http://127.0.0.1:9/v1", "m", api_key_env="PLUTOS_TEST_NO_SUCH_VARIABLE")
    with pytest.raises(ValueError, match="PLUTOS_TEST_NO_SUCH_VARIABLE"):
        Catalogue(dataclasses.replace(make_settings(tmp_path), models=[spec]))


def test_fallbacks_must_name_other_models(tmp_path: Path) -> None:
    spec = upstream_spec("m", "http://127.0.0.1:9/v1", "m", api_key_env=None, fallbacks=["nope"])
    with pytest.raises(ValueError, match="fallback"):
        Catalogue(dataclasses.replace(make_settings(tmp_path), models=[spec]))


# -- through the real llama.cpp server ------------------------------------------------------------


async def test_process_through_llama_cpp_server(client: httpx.AsyncClient, up: RunningPlatform) -> None:
    text = unique("What is the capital of France?")
    r = await client.post("/process", json={"input": text, "model": "gpt-4", "options": {"maxTokens": 8}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "gpt-4"
    assert body["output"].strip()
    usage = body["usage"]
    assert 0 < usage["completionTokens"] <= 8
    # llama-cpp-python's server sends no usage in streams: the prompt is the documented estimate.
    assert usage["promptTokens"] == estimate_prompt_tokens([{"role": "user", "content": text}])
    record, ledger = await record_and_ledger(up, text)
    assert record.status == "completed" and record.output == body["output"]
    assert ledger is not None
    assert (ledger.prompt_tokens, ledger.completion_tokens) == (usage["promptTokens"], usage["completionTokens"])
    expected = Decimal(usage["promptTokens"]) * Decimal("0.01") + Decimal(usage["completionTokens"]) * Decimal("0.03")
    assert ledger.cost == expected / 1000


async def test_max_tokens_and_stop_reach_the_real_server(client: httpx.AsyncClient) -> None:
    long = {
        "input": unique("Write a long story about dragons."),
        "model": "gpt-4",
        "options": {"maxTokens": 3, "temperature": 0},
    }
    r = await client.post("/process", json=long)
    assert r.json()["usage"]["completionTokens"] == 3
    # A stop sequence taken from the model's own deterministic answer must cut it there.
    story: dict[str, Any] = {
        "input": "Tell me a story about a cat.",
        "model": "gpt-4",
        "options": {"temperature": 0, "maxTokens": 30},
    }
    full = (await client.post("/process", json=story)).json()["output"]
    words = full.split()
    assert len(words) >= 4
    stop = words[len(words) // 2]
    stopped = (await client.post("/process", json={**story, "options": {**story["options"], "stop": [stop]}})).json()
    assert stop not in stopped["output"]
    assert full.startswith(stopped["output"])
    assert len(stopped["output"]) < len(full)


async def test_non_streaming_upstream_gives_the_servers_exact_usage(
    client: httpx.AsyncClient, llama_server: LlamaServer
) -> None:
    text = unique("Name a color.")
    r = await client.post(
        "/process",
        json={"input": text, "model": "gpt-4-whole", "options": {"maxTokens": 6, "systemPrompt": "Be brief."}},
    )
    assert r.status_code == 200, r.text
    async with httpx.AsyncClient(timeout=60) as direct:
        answer = (
            await direct.post(
                f"{llama_server.base_url}/chat/completions",
                json={
                    "model": "gpt-4",
                    "max_tokens": 1,
                    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
                },
            )
        ).json()
    assert r.json()["usage"]["promptTokens"] == answer["usage"]["prompt_tokens"]


async def test_stream_through_llama_cpp_server(client: httpx.AsyncClient, up: RunningPlatform) -> None:
    text = unique("Tell me about the sea.")
    async with client.stream(
        "POST", "/stream", json={"input": text, "model": "gpt-4", "options": {"maxTokens": 10}}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = await sse_events(r)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "complete" and set(kinds[:-1]) == {"chunk"}
    partial = [d["output"] for e, d in events if e == "chunk"]
    final = events[-1][1]
    assert final["output"] == "".join(partial)
    assert final["usage"]["completionTokens"] == len(partial)  # one token per upstream chunk
    _, ledger = await record_and_ledger(up, text)
    assert ledger is not None and ledger.completion_tokens == len(partial)


async def test_batch_through_llama_cpp_server(client: httpx.AsyncClient) -> None:
    inputs = [unique("Say hi."), unique("Say bye.")]
    r = await client.post("/batch", json={"inputs": inputs, "model": "gpt-4", "options": {"maxTokens": 4}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["input"] for x in body["results"]] == inputs
    assert all(x["output"] and "error" not in x for x in body["results"])
    total = body["totalUsage"]
    assert total["completionTokens"] == sum(x["usage"]["completionTokens"] for x in body["results"])
    assert total["promptTokens"] == sum(x["usage"]["promptTokens"] for x in body["results"])


async def test_usage_counts_calls_on_every_backend(up: RunningPlatform) -> None:
    key = await new_key(up, name="usage-mixed")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{up.http_port}/v1", headers={"Authorization": f"Bearer {key.secret}"}, timeout=60
    ) as c:
        results = [
            (await c.post("/process", json={"input": unique("Hi"), "model": m, "options": {"maxTokens": 3}})).json()
            for m in ("gpt-4", "mock-ok", MODEL)
        ]
        usage = (await c.get("/usage")).json()["usage"]
    assert usage["totalRequests"] == 3
    assert usage["requestsByModel"] == {"gpt-4": 1, "mock-ok": 1, MODEL: 1}
    assert usage["totalTokens"] == sum(x["usage"]["totalTokens"] for x in results)


# -- options, keys, usage (fault injector in echo mode) ------------------------------------------


@pytest.mark.parametrize("model", ["mock-echo", "mock-echo-whole"])
async def test_every_option_is_mapped(client: httpx.AsyncClient, model: str) -> None:
    options = {
        "temperature": 0.3,
        "maxTokens": 42,
        "topP": 0.9,
        "frequencyPenalty": 0.5,
        "presencePenalty": -0.25,
        "systemPrompt": "You are terse.",
        "stop": ["END", "\n\n"],
    }
    text = unique("echo me")
    r = await client.post(
        "/process", json={"input": text, "model": model, "options": options}, headers={"X-Request-Id": "trace-echo-1"}
    )
    assert r.status_code == 200, r.text
    seen = json.loads(r.json()["output"])
    sent = seen["body"]
    assert sent["model"] == "echo"
    assert sent["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 42
    assert sent["top_p"] == 0.9
    assert sent["frequency_penalty"] == 0.5
    assert sent["presence_penalty"] == -0.25
    assert sent["stop"] == ["END", "\n\n"]
    if model == "mock-echo":
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    else:
        assert sent["stream"] is False and "stream_options" not in sent
    assert seen["authorization"] == f"Bearer {KEY_VALUE}"
    assert seen["x-client-request-id"] == "trace-echo-1"
    # The upstream's usage, when it sends one, is what is billed.
    assert r.json()["usage"] == {"promptTokens": 11, "completionTokens": 7, "totalTokens": 18}


@pytest.mark.parametrize("path", ["/process", "/stream"])
async def test_the_request_log_line_carries_the_upstreams_time(client: httpx.AsyncClient, path: str) -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.setFormatter(JsonFormatter())
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    request_id = f"upstream-ms-{uuid.uuid4().hex}"
    try:
        r = await client.post(
            path, json={"input": unique("time me"), "model": "mock-echo"}, headers={"X-Request-Id": request_id}
        )
        assert r.status_code == 200, r.text
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    mine = [json.loads(line) for line in lines if request_id in line]
    assert len(mine) == 1, lines
    assert mine[0]["upstream_ms"] > 0


async def test_the_upstream_key_never_reaches_callers(client: httpx.AsyncClient) -> None:
    r = await client.post("/process", json={"input": unique("x"), "model": "mock-500"})
    assert KEY_VALUE not in r.text


# -- faults ---------------------------------------------------------------------------------------


async def test_upstream_500_is_502_with_the_upstreams_request_id(
    client: httpx.AsyncClient, up: RunningPlatform, faults: FaultUpstream, up_key: CreatedKey
) -> None:
    text = unique("fail please")
    r = await client.post("/process", json={"input": text, "model": "mock-500"})
    error = assert_envelope(r, 502, "upstream_error")
    assert error["details"] == {"model": "mock-500", "upstreamStatus": 500, "upstreamRequestId": "mock-fail-500-1"}
    assert "secret-ish" not in r.text  # the upstream's own message is logged, not passed on
    assert len(faults.calls_for(text)) == 1  # a 500 is not retried
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", "upstream_error")
    assert ledger is not None and (ledger.prompt_tokens, ledger.completion_tokens) == (0, 0)
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_upstream_429_is_retried_then_503_with_retry_after(
    client: httpx.AsyncClient, up: RunningPlatform, faults: FaultUpstream, up_key: CreatedKey
) -> None:
    text = unique("rate me")
    r = await client.post("/process", json={"input": text, "model": "mock-429"})
    error = assert_envelope(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == "1"
    assert error["details"]["upstreamStatus"] == 429 and error["details"]["retryAfter"] == 1
    calls = faults.calls_for(text)
    assert len(calls) == 3  # the first try and max_retries = 2
    assert all(b.at - a.at >= 0.9 for a, b in itertools.pairwise(calls))  # Retry-After: 1 honoured
    _, ledger = await record_and_ledger(up, text)
    assert ledger is not None and ledger.prompt_tokens + ledger.completion_tokens == 0
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


@pytest.mark.parametrize("model", ["mock-429-once", "mock-503-once"])
async def test_a_passing_upstream_failure_is_retried_unseen(
    client: httpx.AsyncClient, faults: FaultUpstream, model: str
) -> None:
    text = unique("retry me")
    r = await client.post("/process", json={"input": text, "model": model})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "".join(MOCK_TEXT)
    assert len(faults.calls_for(text)) == 2


@pytest.mark.parametrize("model", ["mock-bad-json", "mock-bad-json-whole"])
async def test_bad_json_from_upstream_is_502(client: httpx.AsyncClient, model: str) -> None:
    r = await client.post("/process", json={"input": unique("garble"), "model": model})
    error = assert_envelope(r, 502, "upstream_error")
    assert error["details"]["upstreamRequestId"].startswith("mock-bad-json-")


@pytest.mark.parametrize("model", ["mock-error-event", "mock-cut-short"])
async def test_a_stream_that_fails_or_stops_early_is_502_and_bills_the_piece_received(
    client: httpx.AsyncClient, up: RunningPlatform, model: str, up_key: CreatedKey
) -> None:
    text = unique("half an answer")
    r = await client.post("/process", json={"input": text, "model": model})
    assert_envelope(r, 502, "upstream_error")
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.output) == ("failed", "half")
    assert ledger is not None and ledger.completion_tokens == 1
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_a_stream_sends_the_pieces_before_a_failure_in_the_same_read(
    client: httpx.AsyncClient, up: RunningPlatform, up_key: CreatedKey
) -> None:
    """The mock sends a piece and an error event back to back (usually one network read): the
    caller gets the piece it is billed for, then the error event, on both streaming surfaces."""
    text = unique("half then error")
    async with client.stream("POST", "/stream", json={"input": text, "model": "mock-error-event"}) as r:
        assert r.status_code == 200
        events = await sse_events(r)
    assert [e for e, _ in events] == ["chunk", "error"]
    assert events[0][1]["output"] == "half"
    assert events[1][1]["error"]["code"] == "upstream_error"
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.output) == ("failed", "half")
    assert ledger is not None and ledger.completion_tokens == 1
    chat = {"model": "mock-error-event", "stream": True, "messages": [{"role": "user", "content": unique("chat")}]}
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{up.http_port}/openai/v1", headers={"Authorization": f"Bearer {up_key.secret}"}
        ) as openai_client,
        openai_client.stream("POST", "/chat/completions", json=chat) as r,
    ):
        assert r.status_code == 200
        body = (await r.aread()).decode()
    datas = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert "half" in "".join(json.dumps(d) for d in datas if "choices" in d)
    assert "error" in datas[-1]
    await no_slots_held(up, up_key.account_id)


async def test_connection_dropped_mid_answer_bills_what_was_produced(
    client: httpx.AsyncClient, up: RunningPlatform, up_key: CreatedKey
) -> None:
    text = unique("drop me")
    r = await client.post("/process", json={"input": text, "model": "mock-die"})
    assert_envelope(r, 502, "upstream_error")
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", "upstream_error")
    assert record.output == "one two three"
    assert ledger is not None
    assert ledger.completion_tokens == 3
    assert ledger.prompt_tokens == estimate_prompt_tokens([{"role": "user", "content": text}])
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_upstream_process_killed_mid_stream(
    client: httpx.AsyncClient, up: RunningPlatform, victim_server: LlamaServer, up_key: CreatedKey
) -> None:
    text = unique("Write a very long story about a dragon and a knight.")
    body = {"input": text, "model": "victim", "options": {"maxTokens": 500}}
    async with client.stream("POST", "/stream", json=body) as r:
        assert r.status_code == 200
        reader = SseReader(r)
        events = await reader.events(limit=3)
        victim_server.process.send_signal(signal.SIGKILL)
        events += await reader.events()
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "upstream_error"
    partial = [d["output"] for e, d in events if e == "chunk"]
    assert len(partial) >= 3
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", "upstream_error")
    assert record.output == "".join(partial)
    assert ledger is not None and ledger.completion_tokens == len(partial)
    # Tokens produced before the crash are billed, at the catalogue's prices.
    assert ledger.cost > 0
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_slower_than_the_grpc_deadline_is_deadline_exceeded(
    processing: processing_pb2_grpc.ProcessingServiceAsyncStub,
    up_key: CreatedKey,
    up: RunningPlatform,
    faults: FaultUpstream,
) -> None:
    text = unique("too slow")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await processing.Process(
            processing_pb2.ProcessRequest(input=text, model="mock-slow"),
            metadata=(("authorization", f"Bearer {up_key.secret}"),),
            timeout=1.5,
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The upstream request was closed with the caller's deadline, not left to run for 30 s.
    assert await faults.wait_for_outcome(text, "disconnected") is not None
    record, ledger = await record_and_ledger(up, text)
    assert record.status in ("failed", "cancelled")
    assert ledger is not None and ledger.completion_tokens == 0
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_a_stream_slower_than_the_grpc_deadline_is_deadline_exceeded(
    processing: processing_pb2_grpc.ProcessingServiceAsyncStub,
    up_key: CreatedKey,
    up: RunningPlatform,
    faults: FaultUpstream,
) -> None:
    text = unique("too slow stream")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in processing.Stream(
            processing_pb2.StreamRequest(input=text, model="mock-slow"),
            metadata=(("authorization", f"Bearer {up_key.secret}"),),
            timeout=1.5,
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await faults.wait_for_outcome(text, "disconnected") is not None
    record, ledger = await record_and_ledger(up, text)
    assert record.status in ("failed", "cancelled")
    assert ledger is not None and ledger.completion_tokens == 0
    await no_slots_held(up, up_key.account_id)


async def test_slower_than_the_read_timeout_is_504(
    client: httpx.AsyncClient, faults: FaultUpstream, up: RunningPlatform, up_key: CreatedKey
) -> None:
    text = unique("slow read")
    r = await client.post("/process", json={"input": text, "model": "mock-slow-read"})
    assert_envelope(r, 504, "timeout")
    assert await faults.wait_for_outcome(text, "disconnected") is not None
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_silence_mid_stream_ends_with_a_timeout_event(
    client: httpx.AsyncClient, up: RunningPlatform, up_key: CreatedKey
) -> None:
    text = unique("stall")
    async with client.stream("POST", "/stream", json={"input": text, "model": "mock-stall"}) as r:
        events = await sse_events(r)
    assert [e for e, _ in events] == ["chunk", "error"]
    assert events[-1][1]["error"]["code"] == "timeout"
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.error_code, record.output) == ("failed", "timeout", "first")
    assert ledger is not None and ledger.completion_tokens == 1
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_unreachable_upstream_is_503(client: httpx.AsyncClient, up: RunningPlatform, up_key: CreatedKey) -> None:
    text = unique("anyone there")
    r = await client.post("/process", json={"input": text, "model": "unreachable"})
    error = assert_envelope(r, 503, "service_unavailable")
    assert error["details"] == {"model": "unreachable"}
    _, ledger = await record_and_ledger(up, text)
    assert ledger is not None and ledger.prompt_tokens + ledger.completion_tokens == 0
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_fallbacks_are_tried_in_order(client: httpx.AsyncClient, faults: FaultUpstream) -> None:
    text = unique("fall back")
    r = await client.post("/process", json={"input": text, "model": "mock-fallback"})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "mock-fallback"
    assert r.json()["output"] == "".join(MOCK_TEXT)
    assert [c.model for c in faults.calls_for(text)] == ["fail-500", "rate-429", "rate-429", "rate-429", "ok"]


# -- cancellation reaches the upstream ------------------------------------------------------------


async def test_rest_stream_disconnect_closes_the_upstream_request(
    client: httpx.AsyncClient, up: RunningPlatform, faults: FaultUpstream, up_key: CreatedKey
) -> None:
    text = unique("drip stream")
    async with client.stream("POST", "/stream", json={"input": text, "model": "mock-drip"}) as r:
        events = await sse_events(r, limit=2)
        assert await in_flight(up, up_key.account_id) == 1  # the open stream holds a slot
    assert [e for e, _ in events] == ["chunk", "chunk"]
    assert await faults.wait_for_outcome(text, "disconnected") is not None
    record, ledger = await record_and_ledger(up, text)
    assert record.status == "cancelled"
    assert ledger is not None and 2 <= ledger.completion_tokens < 200
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_first_chunk_arrives_while_the_upstream_still_holds_the_rest(
    client: httpx.AsyncClient, faults: FaultUpstream
) -> None:
    """The upstream sends one piece every 50 ms for 10 s: the client's first frame must come while
    the upstream is still sending (a bridge or backend that buffered the stream fails this)."""
    text = unique("first chunk early")
    async with client.stream("POST", "/stream", json={"input": text, "model": "mock-drip"}) as r:
        events = await sse_events(r, limit=1)
        [call] = faults.calls_for(text)
        assert call.outcome == "open"  # the upstream has not finished sending
    assert [e for e, _ in events] == ["chunk"]


async def test_rest_process_disconnect_closes_the_upstream_request(
    client: httpx.AsyncClient, up: RunningPlatform, faults: FaultUpstream, up_key: CreatedKey
) -> None:
    text = unique("drip process")
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/process", json={"input": text, "model": "mock-drip"}, timeout=httpx.Timeout(60, read=0.5))
    assert await faults.wait_for_outcome(text, "disconnected") is not None
    record, ledger = await record_and_ledger(up, text)
    assert record.status == "cancelled"
    assert ledger is not None and 0 < ledger.completion_tokens < 200
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_grpc_cancel_closes_the_upstream_request(
    processing: processing_pb2_grpc.ProcessingServiceAsyncStub,
    up_key: CreatedKey,
    faults: FaultUpstream,
    up: RunningPlatform,
) -> None:
    md = (("authorization", f"Bearer {up_key.secret}"),)
    text = unique("drip grpc stream")
    call = processing.Stream(processing_pb2.StreamRequest(input=text, model="mock-drip"), metadata=md)
    await call.read()
    call.cancel()
    assert await faults.wait_for_outcome(text, "disconnected") is not None

    text = unique("drip grpc process")
    unary = processing.Process(processing_pb2.ProcessRequest(input=text, model="mock-drip"), metadata=md)
    assert await faults.wait_for_outcome(text, "open") is not None
    unary.cancel()
    assert await faults.wait_for_outcome(text, "disconnected") is not None
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


async def test_rest_stream_disconnect_reaches_the_llama_cpp_server(
    client: httpx.AsyncClient, llama_server: LlamaServer, up: RunningPlatform, up_key: CreatedKey
) -> None:
    before = llama_server.output().count("Disconnected from client")
    body = {"input": unique("Write a long poem about rivers."), "model": "gpt-4", "options": {"maxTokens": 300}}
    async with client.stream("POST", "/stream", json=body) as r:
        await sse_events(r, limit=2)
    for _ in range(100):
        if llama_server.output().count("Disconnected from client") > before:
            break
        await asyncio.sleep(0.1)
    assert llama_server.output().count("Disconnected from client") > before
    await no_slots_held(up, up_key.account_id)  # the concurrency slot is released


# -- the OpenAI-compatible API (/openai/v1) through an upstream -------------------------------------


async def test_openai_sdk_chat_and_stream_through_llama_cpp_server(up: RunningPlatform, up_key: CreatedKey) -> None:
    import openai

    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{up.http_port}/openai/v1", api_key=up_key.secret, max_retries=0, timeout=60
    )
    question = unique("What is the capital of France?")
    chat = await client.chat.completions.create(
        model="gpt-4-whole",  # one JSON answer upstream: the server's exact usage
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": question},
        ],
        max_tokens=8,
        temperature=0,
    )
    record, ledger = await record_and_ledger(up, question)
    assert record.kind == "chat" and record.status == "completed"
    assert chat.choices[0].message.content == record.output
    assert chat.usage is not None and ledger is not None
    assert ledger.prompt_tokens == chat.usage.prompt_tokens and ledger.completion_tokens == chat.usage.completion_tokens
    stream = await client.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "Count to five."}], max_tokens=8, stream=True
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    await client.close()


async def test_openai_npm_package_and_langchain_through_llama_cpp_server(
    up: RunningPlatform, up_key: CreatedKey
) -> None:
    from tests.openai_clients_support import langchain_checks, node_sdk_results

    await node_sdk_results(up, up_key, "gpt-4")
    await langchain_checks(up, up_key, "gpt-4")


WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_openai_tools_pass_through_and_tool_calls_come_back(up: RunningPlatform, up_key: CreatedKey) -> None:
    import openai

    from tests.fault_upstream import TOOL_CALL

    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{up.http_port}/openai/v1", api_key=up_key.secret, max_retries=0, timeout=60
    )
    # The OpenAI fields reach the upstream as they are (the echo model answers with the body it got).
    echoed = await client.chat.completions.create(
        model="mock-echo-whole",
        messages=[{"role": "user", "content": unique("What is the weather?")}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        user="end-user-1",
        seed=7,
        response_format={"type": "json_object"},
    )
    body = json.loads(echoed.choices[0].message.content or "")["body"]
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == "auto"
    assert body["user"] == "end-user-1" and body["seed"] == 7
    assert body["response_format"] == {"type": "json_object"}
    # The model's tool calls come back, from a whole answer and from a stream.
    for model in ("mock-tool-call-whole", "mock-tool-call"):
        chat = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": unique("Weather in Paris?")}],
            tools=[WEATHER_TOOL],
        )
        choice = chat.choices[0]
        assert choice.finish_reason == "tool_calls", model
        calls = choice.message.tool_calls or []
        assert [c.model_dump() for c in calls] == [TOOL_CALL], model
    stream = await client.chat.completions.create(
        model="mock-tool-call",
        messages=[{"role": "user", "content": unique("Weather in Paris?")}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = [c async for c in stream]
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(last) == 1 and last[0].choices[0].finish_reason == "tool_calls"
    streamed = last[0].choices[0].delta.tool_calls or []
    assert [c.index for c in streamed] == [0]
    assert streamed[0].function is not None and json.loads(streamed[0].function.arguments or "") == {"city": "Paris"}
    # The tool's answer goes back with the call it answers.
    follow_up = await client.chat.completions.create(
        model="mock-echo-whole",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_1", "content": unique("18 degrees")},
        ],
        tools=[WEATHER_TOOL],
    )
    sent = json.loads(follow_up.choices[0].message.content or "")["body"]["messages"]
    assert sent[1]["tool_calls"] == [TOOL_CALL] and sent[2]["tool_call_id"] == "call_1"
    await client.close()
