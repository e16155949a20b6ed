"""Monthly token quotas: reserve the worst case before the model runs, settle with real usage after.

A platform with small-quota plans shares the session's store; every test uses fresh accounts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2

from gateway.app import RunningPlatform
from server.keys import create_key
from tests.conftest import MODEL, processing_stub
from tests.limits_support import (
    CHEAP,
    CHEAP_RESERVATION,
    bearer,
    error_info,
    fresh_minute,
    http_client,
    ledger_tokens,
    md,
    plan,
    platform_with,
    wait_until,
)

PLANS = (
    plan("quota-5000", monthly_tokens=5000),
    plan("quota-edge", monthly_tokens=1500),
    plan("quota-200", monthly_tokens=200),
)


@pytest.fixture(scope="module")
async def quota_platform(platform: RunningPlatform) -> AsyncIterator[RunningPlatform]:
    async with platform_with(platform, *PLANS) as running:
        yield running


@pytest.fixture(scope="module")
async def client(quota_platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(quota_platform) as c:
        yield c


async def settled(running: RunningPlatform, account_id: str) -> tuple[int, int]:
    """Wait until no reservation is outstanding and the ledger agrees with the counter."""

    async def check() -> bool:
        counted = await running.runtime.limiter.tokens(account_id)
        return counted is not None and counted[1] == 0 and counted[0] == await ledger_tokens(running, account_id)

    await wait_until(check, "the quota counter to settle")
    counted = await running.runtime.limiter.tokens(account_id)
    assert counted is not None
    return counted


async def test_usage_is_settled_with_the_real_token_count(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await create_key(quota_platform.runtime.sessions, plan="quota-5000")
    r = await client.post("/process", json=CHEAP, headers=bearer(key.secret))
    assert r.status_code == 200
    used, reserved = await settled(quota_platform, key.account_id)
    assert (used, reserved) == (r.json()["usage"]["totalTokens"], 0)
    assert used < CHEAP_RESERVATION  # the reservation was an upper bound, released on settling


async def use_up(client: httpx.AsyncClient, secret: str) -> tuple[int, httpx.Response]:
    """Cheap calls until the quota refuses one: (tokens the admitted calls used, the refusal)."""
    used = 0
    for _ in range(100):
        r = await client.post("/process", json=CHEAP, headers=bearer(secret))
        if r.status_code != 200:
            return used, r
        used += r.json()["usage"]["totalTokens"]
    pytest.fail("the quota never ran out")


async def test_calls_are_admitted_until_the_quota_is_used_up(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await create_key(quota_platform.runtime.sessions, plan="quota-200")
    used, refused = await use_up(client, key.secret)
    # The last admitted call may finish its answer: past the quota by less than one reservation.
    assert 200 <= used < 200 + CHEAP_RESERVATION
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and "used up" in error["message"]
    assert error["details"] == {"quota": 200, "used": used, "requested": CHEAP_RESERVATION}
    assert "Retry-After" not in refused.headers  # retrying soon will not help; SDKs do not retry it
    assert "X-RateLimit-Limit" in refused.headers
    assert await settled(quota_platform, key.account_id) == (used, 0)


async def test_grpc_insufficient_quota_has_no_retry_info(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await create_key(quota_platform.runtime.sessions, plan="quota-200")
    await use_up(client, key.secret)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{quota_platform.grpc_port}") as channel:
        stub = processing_stub(channel)
        request = processing_pb2.ProcessRequest(
            input="Hi", model=MODEL, options=processing_pb2.ProcessOptions(max_tokens=4)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Process(request, metadata=md(key.secret))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value) == ("insufficient_quota", None)


async def test_a_batch_reserves_the_sum_of_its_items(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await create_key(quota_platform.runtime.sessions, plan="quota-5000")
    small = {"inputs": ["Hi"] * 3, "model": MODEL, "options": {"maxTokens": 2}}
    r = await client.post("/batch", json=small, headers=bearer(key.secret))
    assert r.status_code == 200
    used, _ = await settled(quota_platform, key.account_id)
    assert used == r.json()["totalUsage"]["totalTokens"]
    other = await create_key(quota_platform.runtime.sessions, plan="quota-200")
    await use_up(client, other.secret)
    batch = {"inputs": ["Hi"] * 5, "model": MODEL, "options": {"maxTokens": 1000}}
    r = await client.post("/batch", json=batch, headers=bearer(other.secret))
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    assert r.json()["error"]["details"]["requested"] == 5 * (1000 + CHEAP_RESERVATION - 4)


async def test_concurrent_requests_at_the_edge_overshoot_by_less_than_one_reservation(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    """Waves of concurrent calls (REST process and stream, gRPC process) until the quota refuses
    them all: however many run at once, usage passes the quota by less than one call's reservation."""
    key = await create_key(quota_platform.runtime.sessions, plan="quota-edge")
    h = bearer(key.secret)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{quota_platform.grpc_port}")
    stub = processing_stub(channel)
    grpc_request = processing_pb2.ProcessRequest(
        input="Hi", model=MODEL, options=processing_pb2.ProcessOptions(max_tokens=4)
    )

    async def one(i: int) -> str:
        if i % 3 == 0:
            try:
                await stub.Process(grpc_request, metadata=md(key.secret))
                return "ok"
            except grpc.aio.AioRpcError as err:
                return error_info(err)[0]
        if i % 3 == 1:
            async with client.stream("POST", "/stream", json=CHEAP, headers=h) as r:
                await r.aread()
                return "ok" if r.status_code == 200 else r.json()["error"]["code"]
        r = await client.post("/process", json=CHEAP, headers=h)
        return "ok" if r.status_code == 200 else r.json()["error"]["code"]

    try:
        outcomes: list[str] = []
        for _ in range(40):
            wave = await asyncio.gather(*(one(i) for i in range(24)))
            outcomes += wave
            assert set(wave) <= {"ok", "insufficient_quota"}, wave
            used = await ledger_tokens(quota_platform, key.account_id)
            assert used < 1500 + CHEAP_RESERVATION
            if "ok" not in wave:
                break
        else:
            pytest.fail("the quota never ran out")
    finally:
        await channel.close(None)
    used, reserved = await settled(quota_platform, key.account_id)
    assert reserved == 0
    assert 1500 <= used < 1500 + CHEAP_RESERVATION, used
    assert outcomes.count("insufficient_quota") >= 24


async def test_a_stream_cut_off_mid_way_is_billed_exactly(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    key = await create_key(quota_platform.runtime.sessions, plan="quota-5000")
    body = {"input": "Write a long story about the sea.", "model": MODEL, "options": {"maxTokens": 300}}
    async with client.stream("POST", "/stream", json=body, headers=bearer(key.secret)) as r:
        assert r.status_code == 200
        seen = 0
        async for chunk in r.aiter_raw():
            seen += chunk.count(b"event: chunk")
            if seen >= 3:
                break
    used, _ = await settled(quota_platform, key.account_id)
    assert 0 < used < 300 + CHEAP_RESERVATION


async def test_monthly_usage_survives_a_restart(platform: RunningPlatform) -> None:
    """The counter is seeded from the usage ledger, so a fresh process knows what was used."""
    async with platform_with(platform, *PLANS) as first:
        key = await create_key(first.runtime.sessions, plan="quota-200")
        async with http_client(first) as c:
            codes = []
            for _ in range(10):
                r = await c.post("/process", json=CHEAP, headers=bearer(key.secret))
                codes.append(r.status_code)
                if r.status_code == 429:
                    break
        assert codes[-1] == 429 and 200 in codes
        used_before, _ = await settled(first, key.account_id)
    async with platform_with(platform, *PLANS) as second:
        assert await second.runtime.limiter.tokens(key.account_id) is None  # nothing in memory yet
        async with http_client(second) as c:
            r = await c.post("/process", json=CHEAP, headers=bearer(key.secret))
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        assert r.json()["error"]["details"]["used"] == used_before
        assert await second.runtime.limiter.tokens(key.account_id) == (used_before, 0)


async def test_the_quota_check_runs_after_rate_limits(
    quota_platform: RunningPlatform, client: httpx.AsyncClient
) -> None:
    """A refused reservation still counted as a request; an exhausted account can read its usage."""
    key = await create_key(quota_platform.runtime.sessions, plan="quota-200")
    await fresh_minute(quota_platform)
    remaining = []
    for _ in range(20):
        r = await client.post("/process", json=CHEAP, headers=bearer(key.secret))
        remaining.append(int(r.headers["X-RateLimit-Remaining"]))
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "insufficient_quota"
            break
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == len(remaining)
    r = await client.get("/usage", headers=bearer(key.secret))
    assert r.status_code == 200 and r.json()["usage"]["totalTokens"] > 0


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": "Say hi."},
        {"role": "user", "content": ""},
        {"content": "no role"},
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "user", "content": "x", "name": "bob"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1"}]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "user"},
    ],
)
def test_a_chat_reservation_reads_each_message_as_json_format_prints_it(message: dict[str, object]) -> None:
    """The quick form of a plain message is the same dict, in the same order, as MessageToDict's."""
    from google.protobuf import json_format
    from plutos.v1 import openai_pb2

    from server.limiter.policy import _as_sent

    proto = json_format.ParseDict(message, openai_pb2.ChatMessage())
    quick, reference = _as_sent(proto), json_format.MessageToDict(proto, preserving_proto_field_name=True)
    assert quick == reference and list(quick) == list(reference)
