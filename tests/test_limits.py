"""Rate limits and concurrency limits, REST and gRPC, on the in-memory limiter (one process).

Every test uses keys of fresh accounts, so counters start at zero whatever ran before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
import httpx
import pytest
from plutos.v1 import models_pb2, processing_pb2, usage_pb2

from gateway.app import RunningPlatform
from server.backends.base import GenerationState, PreparedPrompt
from server.keys import create_key
from server.limiter import MemoryLimiter, Window
from server.limiter.base import Concurrency
from tests.conftest import MODEL, GrpcClients, new_key, processing_stub
from tests.limits_support import (
    bearer,
    cancel_at_a_stage,
    error_info,
    fresh_minute,
    http_client,
    in_flight,
    md,
    metadata_dict,
    no_slots_held,
    plan,
    platform_with,
    wait_until,
)

SLOW_STREAM = {"input": "Write a long story about the sea.", "model": MODEL, "options": {"maxTokens": 200}}
CHEAP = {"input": "Hi", "model": MODEL, "options": {"maxTokens": 1}}


@pytest.fixture(scope="module")
async def client(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as c:
        yield c


# -- windows: exact counts, headers ---------------------------------------------------------------


async def test_free_key_200_concurrent_requests_exactly_60_succeed(
    platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await new_key(platform, plan="free")
    clock = await fresh_minute(platform)
    started = clock()
    replies = await asyncio.gather(*(client.get("/models", headers=bearer(key.secret)) for _ in range(200)))
    finished = clock()
    ok = [r for r in replies if r.status_code == 200]
    limited = [r for r in replies if r.status_code == 429]
    assert len(ok) == 60 and len(limited) == 140, sorted({r.status_code for r in replies})
    minute_end = (int(started) // 60 + 1) * 60
    # Each admitted request saw its own place in the window: remaining counts down 59 … 0.
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in ok) == list(range(60))
    for r in replies:
        assert r.headers["X-RateLimit-Limit"] == "60"
        assert r.headers["X-RateLimit-Reset"] == str(minute_end)
    for r in limited:
        body = r.json()["error"]
        retry_after = int(r.headers["Retry-After"])
        assert body["code"] == "rate_limit_exceeded"
        assert body["details"]["retryAfter"] == retry_after
        assert body["details"]["window"] == "minute" and body["details"]["limit"] == 60
        unit = "second" if retry_after == 1 else "seconds"
        assert body["message"] == f"Rate limit exceeded. Try again in {retry_after} {unit}."
        assert body["requestId"] == r.headers["X-Request-Id"]
        assert r.headers["X-RateLimit-Remaining"] == "0"
        # The wait is the time left in the minute (rounded up).
        assert 1 <= retry_after <= 60 and minute_end - finished <= retry_after <= minute_end - started + 1


async def test_grpc_200_concurrent_calls_exactly_60_succeed(
    platform: RunningPlatform, grpc_clients: GrpcClients
) -> None:
    key = await new_key(platform, plan="free")
    await fresh_minute(platform)

    async def one() -> tuple[grpc.StatusCode, dict[str, str], grpc.aio.AioRpcError | None]:
        call = grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=md(key.secret))
        try:
            await call
        except grpc.aio.AioRpcError as err:
            return err.code(), metadata_dict(err.trailing_metadata()), err
        return grpc.StatusCode.OK, metadata_dict(await call.trailing_metadata()), None

    results = await asyncio.gather(*(one() for _ in range(200)))
    ok = [m for code, m, _ in results if code == grpc.StatusCode.OK]
    limited = [(m, e) for code, m, e in results if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(ok) == 60 and len(limited) == 140
    assert sorted(int(m["x-ratelimit-remaining"]) for m in ok) == list(range(60))
    for meta, err in limited:
        assert err is not None
        reason, retry = error_info(err)
        assert reason == "rate_limit_exceeded"
        assert retry is not None and retry == int(meta["retry-after"]) >= 1
        assert meta["x-ratelimit-limit"] == "60" and meta["x-ratelimit-remaining"] == "0"


async def test_remaining_counts_down_and_reset_is_the_end_of_the_minute(
    platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await new_key(platform, plan="free")
    clock = await fresh_minute(platform)
    seen = []
    for _ in range(5):
        r = await client.get("/models", headers=bearer(key.secret))
        assert r.status_code == 200
        seen.append(int(r.headers["X-RateLimit-Remaining"]))
        reset = int(r.headers["X-RateLimit-Reset"])
        assert reset % 60 == 0 and clock() < reset <= clock() + 60
    assert seen == [59, 58, 57, 56, 55]


async def test_every_outcome_carries_the_headers(platform: RunningPlatform, client: httpx.AsyncClient) -> None:
    """Errors raised after admission (validation, not found, model errors) are counted and show the figures."""
    key = await new_key(platform, plan="free")
    await fresh_minute(platform)
    h = bearer(key.secret)
    replies = [
        await client.post("/process", json=CHEAP, headers=h),
        await client.post("/process", json={**CHEAP, "options": {"maxTokens": 0}}, headers=h),
        await client.post("/process", json={**CHEAP, "model": "no-such-model"}, headers=h),
        await client.get("/process/proc_missing", headers=h),
        await client.get("/usage", params={"start_date": "yesterday"}, headers=h),
        await client.post("/batch", json={"inputs": [], "model": MODEL}, headers=h),
    ]
    assert [r.status_code for r in replies] == [200, 400, 400, 404, 400, 400]
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in replies] == [59, 58, 57, 56, 55, 54]
    async with client.stream("POST", "/stream", json={**CHEAP, "options": {"maxTokens": 2}}, headers=h) as r:
        assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "53"
        await r.aread()


async def test_keys_of_one_account_share_the_plan_limits(platform: RunningPlatform, client: httpx.AsyncClient) -> None:
    first = await new_key(platform, plan="free")
    second = await create_key(platform.runtime.sessions, plan="free", account_id=first.account_id)
    await fresh_minute(platform)
    for _ in range(10):
        assert (await client.get("/models", headers=bearer(first.secret))).status_code == 200
    r = await client.get("/models", headers=bearer(second.secret))
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "49"


async def test_a_key_can_carry_lower_limits_of_its_own(platform: RunningPlatform, client: httpx.AsyncClient) -> None:
    strict = await new_key(platform, plan="free", limits={"requests_per_minute": 3})
    sibling = await create_key(platform.runtime.sessions, plan="free", account_id=strict.account_id)
    await fresh_minute(platform)
    got = [await client.get("/models", headers=bearer(strict.secret)) for _ in range(4)]
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Limit"] for r in got] == ["3"] * 4
    assert [r.headers["X-RateLimit-Remaining"] for r in got] == ["2", "1", "0", "0"]
    assert got[3].json()["error"]["details"]["limit"] == 3
    # The account's own window counted the three admitted calls only.
    r = await client.get("/models", headers=bearer(sibling.secret))
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "56"


async def test_hourly_limit_refuses_while_headers_describe_the_minute(
    platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await new_key(platform, plan="free", limits={"requests_per_hour": 2})
    clock = await fresh_minute(platform)
    got = [await client.get("/models", headers=bearer(key.secret)) for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    refused = got[2]
    details = refused.json()["error"]["details"]
    assert details["window"] == "hour" and details["limit"] == 2
    hour_end = (int(clock()) // 3600 + 1) * 3600
    assert abs(clock() + details["retryAfter"] - hour_end) <= 5
    assert refused.headers["Retry-After"] == str(details["retryAfter"])
    # Headers: the per-minute window (60), not the hour's.
    assert refused.headers["X-RateLimit-Limit"] == "60" and refused.headers["X-RateLimit-Remaining"] == "58"


async def test_auth_failures_come_before_the_limiter(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/models", headers=bearer("pk_not_a_key"))
    assert r.status_code == 401 and "X-RateLimit-Limit" not in r.headers


async def test_windows_reset_on_the_clock_boundary() -> None:
    """Fixed windows aligned to the clock: a full minute window opens again at the next minute."""
    limiter = MemoryLimiter()
    rules = [Window("{acct_t}", "minute", 60, 2)]
    minute = 1_700_000_040  # a minute boundary (divisible by 60)
    t = minute + 40.0
    assert [(await limiter.acquire(rules, [], now=t)).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.acquire(rules, [], now=t + 19.5)
    assert not refused.allowed and refused.retry_after() == 1 and refused.windows[0].reset == minute + 60
    fresh = await limiter.acquire(rules, [], now=t + 20)
    assert fresh.allowed and fresh.windows[0].remaining == 1 and fresh.windows[0].reset == minute + 120


# -- concurrency ----------------------------------------------------------------------------------


async def open_stream(client: httpx.AsyncClient, secret: str) -> tuple[asyncio.Task[int], None]:
    """Start an SSE stream and leave it open in a task; its status is the task's result. A stream's
    headers go out with its first message, and the local model runs one generation at a time, so
    a test waits for the slots to be held (``hold``) rather than for five sets of headers."""

    async def run() -> int:
        async with client.stream("POST", "/stream", json=SLOW_STREAM, headers=bearer(secret)) as r:
            async for _ in r.aiter_bytes():
                pass
            return r.status_code

    return asyncio.create_task(run()), None


async def hold(platform: RunningPlatform, account_id: str, n: int) -> None:
    async def check() -> bool:
        return await in_flight(platform, account_id) == n

    await wait_until(check, f"{n} slots held by {account_id}")


def model_held_back(platform: RunningPlatform, monkeypatch: pytest.MonkeyPatch, streams: int) -> asyncio.Event:
    """The model's next ``streams`` generations wait for the returned event before they start; later
    ones run at once. Admitted streams then hold their slots until the test sets it, however slow the
    machine: otherwise the one stream the model is running can end (at 200 tokens or its own stop)
    before a loaded machine has sent the rest, and free a slot early. A call the limiter wrongly
    admits meanwhile still runs on the real model and answers 200."""
    backend = platform.runtime.catalogue.backends[MODEL]
    real = backend.stream
    release = asyncio.Event()
    left = streams

    async def stream(prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[str, None]:
        nonlocal left
        if left > 0:
            left -= 1
            await release.wait()
        async with contextlib.aclosing(real(prompt, state)) as pieces:
            async for piece in pieces:
                yield piece

    monkeypatch.setattr(backend, "stream", stream)
    return release


async def close_streams(opened: list[tuple[asyncio.Task[int], None]]) -> None:
    for task, _ in opened:
        task.cancel()  # the client disconnects mid-stream
    for task, _ in opened:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_five_slow_streams_hold_the_free_slots_and_a_sixth_is_refused(
    platform: RunningPlatform, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await new_key(platform, plan="free")
    await fresh_minute(platform)
    release = model_held_back(platform, monkeypatch, 5)
    opened = [await open_stream(client, key.secret) for _ in range(5)]
    try:
        await hold(platform, key.account_id, 5)
        assert not any(task.done() for task, _ in opened)
        sixth = await client.post("/stream", json=SLOW_STREAM, headers=bearer(key.secret))
        assert sixth.status_code == 429
        error = sixth.json()["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert error["details"] == {"retryAfter": 1, "limit": 5, "window": "concurrent"}
        assert sixth.headers["Retry-After"] == "1" and sixth.headers["X-RateLimit-Limit"] == "60"
        process = await client.post("/process", json=CHEAP, headers=bearer(key.secret))
        assert process.status_code == 429
        # Cheap reads are not model calls: they hold no slot.
        assert (await client.get("/models", headers=bearer(key.secret))).status_code == 200
    finally:
        release.set()  # the five go on to the model (one at a time) ...
        await close_streams(opened)  # ... and their clients disconnect
    await no_slots_held(platform, key.account_id)
    release = model_held_back(platform, monkeypatch, 5)
    again = [await open_stream(client, key.secret) for _ in range(5)]
    try:
        await hold(platform, key.account_id, 5)
        assert not any(task.done() for task, _ in again)
    finally:
        release.set()
        await close_streams(again)
    await no_slots_held(platform, key.account_id)


async def test_grpc_streams_are_limited_the_same_way(
    platform: RunningPlatform, grpc_clients: GrpcClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await new_key(platform, plan="free")
    await fresh_minute(platform)
    request = processing_pb2.StreamRequest(
        input="Write a long story about the sea.", model=MODEL, options=processing_pb2.ProcessOptions(max_tokens=200)
    )
    release = model_held_back(platform, monkeypatch, 5)
    calls = [grpc_clients.processing.Stream(request, metadata=md(key.secret)) for _ in range(5)]
    try:
        # A stream's headers come with its first chunk: the slots are what the five hold from the start.
        await hold(platform, key.account_id, 5)
        sixth = grpc_clients.processing.Stream(request, metadata=md(key.secret))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sixth.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(caught.value) == ("rate_limit_exceeded", 1)
        assert "x-ratelimit-limit" in metadata_dict(caught.value.trailing_metadata())
    finally:
        release.set()
        for call in calls:
            call.cancel()
    await no_slots_held(platform, key.account_id)


async def test_slots_are_released_on_every_path(
    platform: RunningPlatform, client: httpx.AsyncClient, grpc_clients: GrpcClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await new_key(platform, plan="pro")  # 300 rpm: room for every path
    h, meta = bearer(key.secret), md(key.secret)

    async def settled() -> None:
        await no_slots_held(platform, key.account_id)

    # success, validation failure, unknown model, input too long, empty batch
    assert (await client.post("/process", json=CHEAP, headers=h)).status_code == 200
    assert (await client.post("/process", json={**CHEAP, "options": {"topP": 0}}, headers=h)).status_code == 400
    assert (await client.post("/stream", json={**CHEAP, "model": "nope"}, headers=h)).status_code == 400
    assert (await client.post("/process", json={**CHEAP, "input": "x" * 200_000}, headers=h)).status_code == 400
    assert (await client.post("/batch", json={"inputs": [], "model": MODEL}, headers=h)).status_code == 400
    await settled()
    # deadline (gRPC)
    long_options = processing_pb2.ProcessOptions(max_tokens=300, temperature=0)  # greedy: runs to max_tokens
    slow = processing_pb2.ProcessRequest(input="Tell a long story.", model=MODEL, options=long_options)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.processing.Process(slow, metadata=meta, timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await settled()
    # client cancel (gRPC unary and stream)
    call = grpc_clients.processing.Process(slow, metadata=meta)
    await hold(platform, key.account_id, 1)  # admitted: the cancel reaches a running call
    call.cancel()
    stream = grpc_clients.processing.Stream(
        processing_pb2.StreamRequest(input=slow.input, model=MODEL, options=long_options), metadata=meta
    )
    await stream.read()
    stream.cancel()
    await settled()
    # a server-side exception inside the model call → 500, slot released
    backend = platform.runtime.catalogue.backends[MODEL]

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("model exploded")

    monkeypatch.setattr(backend, "generate", broken)
    r = await client.post("/process", json=CHEAP, headers=h)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "X-RateLimit-Limit" in r.headers
    monkeypatch.undo()
    await settled()


async def test_a_thousand_cancelled_calls_leak_no_slot(platform: RunningPlatform) -> None:
    """Calls cancelled at every stage (before the server sees them, while waiting for the model,
    mid-stream, by deadline) never leave a slot behind: afterwards five calls run at once and a
    sixth is refused, exactly as on a fresh account."""
    burst = plan("burst", concurrent=5)
    async with platform_with(platform, burst) as running:
        key = await create_key(running.runtime.sessions, plan="burst")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        try:
            stub = processing_stub(channel)
            meta = md(key.secret)
            opts = processing_pb2.ProcessOptions(max_tokens=50)
            stream_req = processing_pb2.StreamRequest(input="Tell a story.", model=MODEL, options=opts)
            unary_req = processing_pb2.ProcessRequest(input="Tell a story.", model=MODEL, options=opts)

            for wave in range(100):
                await asyncio.gather(
                    *(cancel_at_a_stage(stub, meta, stream_req, unary_req, wave * 10 + j) for j in range(10))
                )
            await no_slots_held(running, key.account_id)
            calls = [stub.Stream(stream_req, metadata=meta) for _ in range(5)]
            try:
                await hold(running, key.account_id, 5)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Process(unary_req, metadata=meta)
                assert error_info(caught.value) == ("rate_limit_exceeded", 1)
            finally:
                for call in calls:
                    call.cancel()
            await no_slots_held(running, key.account_id)
        finally:
            await channel.close(None)


async def test_concurrency_counts_exactly_under_a_burst() -> None:
    limiter = MemoryLimiter()
    rules = [Concurrency("{acct_c}", 5)]
    admissions = await asyncio.gather(*(limiter.acquire([], rules) for _ in range(50)))
    held = [a.slot for a in admissions if a.allowed]
    assert len(held) == 5
    for slot in held:
        assert slot is not None
        await limiter.release(slot)
        await limiter.release(slot)  # idempotent
    assert await limiter.in_flight("{acct_c}") == 0


async def test_usage_reports_the_effective_limits(platform: RunningPlatform, grpc_clients: GrpcClients) -> None:
    key = await new_key(platform, plan="free", limits={"requests_per_minute": 10})
    reply = await grpc_clients.usage.GetUsage(usage_pb2.GetUsageRequest(), metadata=md(key.secret))
    assert (reply.limits.requests_per_minute, reply.limits.requests_per_hour) == (10, 1000)
