"""The response cache (options.cache): hit, miss, refresh, bypass, isolation, expiry, billing.

Against the session platform (the in-process cache, or Redis when the test run sets redis_url) and
a platform on Redis; the clock of each cache is injected, so expiry is tested without waiting."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2
from sqlalchemy import select

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from server.store.models import LedgerEntry, ProcessRecord
from tests.conftest import MODEL, new_key, processing_stub
from tests.limits_support import platform_with
from tests.redis_support import RedisServer

SHORT = {"maxTokens": 8, "temperature": 0}


@pytest.fixture(scope="module", params=["memory", "redis"])
async def cached(
    request: pytest.FixtureRequest, platform: RunningPlatform, redis_server: RedisServer
) -> AsyncIterator[RunningPlatform]:
    if request.param == "memory" and not platform.runtime.settings.redis_url:
        yield platform
        return
    async with platform_with(platform, redis_url=redis_server.url) as running:
        yield running


@pytest.fixture(scope="module")
async def account(platform: RunningPlatform) -> CreatedKey:
    return await new_key(platform, name="cache-tests")


def client(running: RunningPlatform, key: CreatedKey) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{running.http_port}/v1",
        headers={"Authorization": f"Bearer {key.secret}"},
        timeout=120,
    )


def body(text: str, mode: str | None) -> dict[str, object]:
    options: dict[str, object] = dict(SHORT)
    if mode is not None:
        options["cache"] = mode
    return {"input": text, "model": MODEL, "options": options}


async def ledger_for(running: RunningPlatform, record_id: str) -> LedgerEntry:
    async with running.runtime.sessions() as session:
        return (await session.execute(select(LedgerEntry).where(LedgerEntry.record_id == record_id))).scalar_one()


async def test_use_misses_then_hits_with_a_fresh_record(cached: RunningPlatform, account: CreatedKey) -> None:
    text = f"Name a colour. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as c:
        miss = await c.post("/process", json=body(text, "use"))
        hit = await c.post("/process", json=body(text, "use"))
        record = (await c.get(f"/process/{hit.json()['id']}")).json()
        missed = (await c.get(f"/process/{miss.json()['id']}")).json()
        listed = {r["id"]: r for r in (await c.get("/process", params={"limit": 10})).json()["data"]}
        usage = (await c.get("/usage")).json()["usage"]
    assert miss.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT"
    assert hit.json()["output"] == miss.json()["output"]
    assert hit.json()["usage"] == miss.json()["usage"]
    assert hit.json()["id"] != miss.json()["id"]
    assert record["cached"] is True and record["status"] == "completed"
    assert missed["cached"] is False
    assert listed[hit.json()["id"]]["cached"] is True and listed[miss.json()["id"]]["cached"] is False
    entry = await ledger_for(cached, hit.json()["id"])
    assert (entry.prompt_tokens, entry.completion_tokens, entry.cost_units, entry.cached) == (0, 0, 0, 1)
    assert entry.counts_as_request == 1
    assert usage["cachedRequests"] >= 1


async def test_a_hit_names_its_record_like_any_call(cached: RunningPlatform, account: CreatedKey) -> None:
    """A hit stores a record, so it sends its id as a normal call does: ``X-Process-Id`` on
    /v1/process and /v1/stream (REST), ``x-process-id`` metadata over gRPC (trailing for Process,
    initial for Stream). The first try of a new user: the hit's record could not be found."""
    text = f"Name a shape. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as c:
        miss = await c.post("/process", json=body(text, "use"))
        hit = await c.post("/process", json=body(text, "use"))
        streamed = await c.post("/stream", json=body(text, "use"))
    assert hit.headers["x-cache"] == "HIT" and streamed.headers["x-cache"] == "HIT"
    assert miss.headers["x-process-id"] == miss.json()["id"]
    assert hit.headers["x-process-id"] == hit.json()["id"] != miss.json()["id"]
    assert streamed.headers["x-process-id"] in streamed.text.split("event: complete", 1)[1]
    request = processing_pb2.ProcessRequest(
        input=text,
        model=MODEL,
        options=processing_pb2.ProcessOptions(max_tokens=8, temperature=0, cache="use"),
    )
    metadata = (("authorization", f"Bearer {account.secret}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cached.grpc_port}") as channel:
        stub = processing_stub(channel)
        call = stub.Process(request, metadata=metadata)
        reply = await call
        trailing = await call.trailing_metadata()
        stream = stub.Stream(
            processing_pb2.StreamRequest(input=text, model=MODEL, options=request.options), metadata=metadata
        )
        messages = [m async for m in stream]
        initial = await stream.initial_metadata()
    assert (trailing["x-cache"], trailing["x-process-id"]) == ("HIT", reply.id)
    assert (initial["x-cache"], initial["x-process-id"]) == ("HIT", messages[-1].complete.id)


async def test_refresh_runs_and_stores_bypass_neither(cached: RunningPlatform, account: CreatedKey) -> None:
    text = f"Say hi. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as c:
        bypass = await c.post("/process", json=body(text, None))
        after_bypass = await c.post("/process", json=body(text, "use"))
        refresh = await c.post("/process", json=body(text, "refresh"))
        after_refresh = await c.post("/process", json=body(text, "use"))
    assert "x-cache" not in bypass.headers
    assert after_bypass.headers["x-cache"] == "MISS"  # bypass stored nothing
    assert refresh.headers["x-cache"] == "MISS"  # refresh never reads
    assert after_refresh.headers["x-cache"] == "HIT"
    assert after_refresh.json()["output"] == refresh.json()["output"]


async def test_entries_are_never_shared_across_accounts(
    cached: RunningPlatform, platform: RunningPlatform, account: CreatedKey
) -> None:
    other = await new_key(platform, name="cache-other")
    text = f"Count to two. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as mine, client(cached, other) as theirs:
        await mine.post("/process", json=body(text, "use"))
        r = await theirs.post("/process", json=body(text, "use"))
    assert r.headers["x-cache"] == "MISS"


async def test_other_options_are_other_entries(cached: RunningPlatform, account: CreatedKey) -> None:
    text = f"Pick a fruit. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as c:
        await c.post("/process", json=body(text, "use"))
        longer = {**body(text, "use"), "options": {**SHORT, "maxTokens": 9, "cache": "use"}}
        r = await c.post("/process", json=longer)
    assert r.headers["x-cache"] == "MISS"


async def test_entries_expire_after_the_ttl(cached: RunningPlatform, account: CreatedKey) -> None:
    cache = cached.runtime.response_cache
    now = [1_000_000_000.0]
    real = cache.clock
    cache.clock = lambda: now[0]
    try:
        text = f"Name a planet. [{uuid.uuid4().hex[:6]}]"
        async with client(cached, account) as c:
            await c.post("/process", json=body(text, "use"))
            now[0] += cache.ttl - 1
            assert (await c.post("/process", json=body(text, "use"))).headers["x-cache"] == "HIT"
            now[0] += 2
            assert (await c.post("/process", json=body(text, "use"))).headers["x-cache"] == "MISS"
    finally:
        cache.clock = real


async def test_a_streamed_hit_is_sent_as_chunks(cached: RunningPlatform, account: CreatedKey) -> None:
    text = f"Tell a tiny story. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as c:
        first = await c.post("/stream", json=body(text, "use"))
        again = await c.post("/stream", json=body(text, "use"))
    assert first.headers["x-cache"] == "MISS" and again.headers["x-cache"] == "HIT"
    chunks = [line for line in again.text.splitlines() if line == "event: chunk"]
    assert len(chunks) == first.text.count("event: chunk") >= 1
    assert "event: complete" in again.text


async def test_an_unknown_mode_is_400(cached: RunningPlatform, account: CreatedKey) -> None:
    async with client(cached, account) as c:
        r = await c.post("/process", json=body("Hi", "sometimes"))
    assert r.status_code == 400
    assert r.json()["error"]["details"] == {"field": "options.cache"}


async def test_a_plan_may_bill_hits(platform: RunningPlatform) -> None:
    plans = dict(platform.runtime.settings.plans)
    import dataclasses

    billed_plan = dataclasses.replace(plans["enterprise"], name="billed-hits", bill_cache_hits=True)
    async with platform_with(platform, billed_plan) as running:
        key = await new_key(running, plan="billed-hits")
        text = f"Name a tree. [{uuid.uuid4().hex[:6]}]"
        async with client(running, key) as c:
            await c.post("/process", json=body(text, "use"))
            hit = await c.post("/process", json=body(text, "use"))
        entry = await ledger_for(running, hit.json()["id"])
    assert hit.headers["x-cache"] == "HIT"
    assert entry.prompt_tokens + entry.completion_tokens == hit.json()["usage"]["totalTokens"] > 0
    assert entry.cached == 1


async def test_records_of_hits_are_stored_with_their_input(cached: RunningPlatform, account: CreatedKey) -> None:
    text = f"Name a river. [{uuid.uuid4().hex[:6]}]"
    async with client(cached, account) as c:
        await c.post("/process", json=body(text, "use"))
        await c.post("/process", json=body(text, "use"))
    async with cached.runtime.sessions() as session:
        rows = (await session.execute(select(ProcessRecord.cached).where(ProcessRecord.input == text))).scalars().all()
    assert sorted(rows) == [False, True]


async def test_a_keys_cache_default_applies_when_the_request_does_not_say(
    cached: RunningPlatform, platform: RunningPlatform
) -> None:
    """``cacheDefault`` on a key (set on create, changed with PATCH /v1/keys/{id}) is
    ``options.cache`` for its calls that do not set it; a call's own ``options.cache`` wins."""
    from server.keys import DEFAULT_SCOPES

    owner = await new_key(platform, name="cache-default-owner", scopes=[*DEFAULT_SCOPES, "keys"])
    async with client(cached, owner) as c:
        made = await c.post("/keys", json={"name": "cached", "cacheDefault": "use"})
        assert made.status_code == 200, made.text
        assert made.json()["key"]["cacheDefault"] == "use"
        bad = await c.post("/keys", json={"cacheDefault": "always"})
        assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "cacheDefault"
        key_id, secret = made.json()["key"]["id"], made.json()["secret"]
    text = f"Name a fruit. [{uuid.uuid4().hex[:6]}]"
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{cached.http_port}/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=120
    ) as mine:
        first = await mine.post("/process", json=body(text, None))
        second = await mine.post("/process", json=body(text, None))
        bypassed = await mine.post("/process", json=body(text, "bypass"))
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert "x-cache" not in bypassed.headers
        assert (await mine.get(f"/process/{second.json()['id']}")).json()["cached"] is True
        async with client(cached, owner) as c:
            patched = await c.patch(f"/keys/{key_id}", json={"updateMask": "cacheDefault"})
            assert patched.status_code == 200, patched.text
            assert "cacheDefault" not in patched.json()["key"]
        # The change reaches the key's calls (every replica forgets the cached key on PATCH).
        after = await mine.post("/process", json=body(text, None))
        assert "x-cache" not in after.headers
        async with client(cached, owner) as c:
            patched = await c.patch(f"/keys/{key_id}", json={"cacheDefault": "refresh"})
            assert patched.json()["key"]["cacheDefault"] == "refresh"
        assert (await mine.post("/process", json=body(text, None))).headers["x-cache"] == "MISS"


def test_every_parameter_that_changes_the_output_is_in_the_key() -> None:
    """Two requests share an entry only if the model would get the same thing: each sampling
    option, stop, seed, JSON output, each message field (history, name, tool calls) and each field
    an upstream gets as it is (tools, tool_choice, response_format, ...) makes another key; the
    deadline and request id do not."""
    from dataclasses import replace

    from server.backends.base import GenerationParams
    from server.response_cache import cache_key

    hi = {"role": "user", "content": "Hi"}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    base = GenerationParams(messages=(hi,), upstream_extra=(("tools", [tool]),))
    variants = [
        replace(base, temperature=0.1),
        replace(base, max_tokens=7),
        replace(base, top_p=0.5),
        replace(base, frequency_penalty=0.5),
        replace(base, presence_penalty=0.5),
        replace(base, stop=("x",)),
        replace(base, seed=1),
        replace(base, json_output=True),
        replace(base, messages=({"role": "system", "content": "Be brief."}, hi)),
        replace(base, messages=({**hi, "name": "bob"},)),
        replace(base, messages=({"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}, hi)),
        replace(base, upstream_extra=()),
        replace(base, upstream_extra=(("tools", [{**tool, "function": {"name": "g"}}]),)),
        replace(base, upstream_extra=(("tools", [tool]), ("tool_choice", "required"))),
        replace(base, upstream_extra=(("tools", [tool]), ("parallel_tool_calls", False))),
        replace(base, upstream_extra=(("tools", [tool]), ("response_format", {"type": "json_schema"}))),
    ]
    keys = {cache_key("acct", MODEL, "Hi", p) for p in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    same = replace(base, deadline=123.0, request_id="req_x")
    assert cache_key("acct", MODEL, "Hi", same) == cache_key("acct", MODEL, "Hi", base)
    assert cache_key("acct", MODEL, "Hi", GenerationParams()) != cache_key("acct", MODEL, "Hi", base)


async def test_openai_chat_uses_the_keys_cache_default(
    cached: RunningPlatform, platform: RunningPlatform, account: CreatedKey
) -> None:
    """/openai/v1 has no ``options.cache``: a key's ``cacheDefault`` turns the cache on for it. A
    hit answers as /v1/process's does (X-Cache: HIT, a fresh id, a record stored ``cached``, zero
    tokens billed), streamed or not; another history or response format is another entry."""
    key = await new_key(platform, name="openai-cache", cache_default="use")
    text = f"Name a colour. [{uuid.uuid4().hex[:6]}]"
    chat: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 8,
        "temperature": 0,
    }
    openai_base = f"http://127.0.0.1:{cached.http_port}/openai/v1"
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with httpx.AsyncClient(base_url=openai_base, headers=headers, timeout=120) as oai, client(cached, key) as c:
        miss = await oai.post("/chat/completions", json=chat)
        hit = await oai.post("/chat/completions", json=chat)
        streamed = await oai.post("/chat/completions", json={**chat, "stream": True})
        history = {**chat, "messages": [{"role": "system", "content": "Be brief."}, *chat["messages"]]}
        other_history = await oai.post("/chat/completions", json=history)
        json_format = await oai.post("/chat/completions", json={**chat, "response_format": {"type": "json_object"}})
        hit_id = "proc_" + hit.json()["id"].removeprefix("chatcmpl-")
        record = (await c.get(f"/process/{hit_id}")).json()
        async with httpx.AsyncClient(
            base_url=openai_base, headers={"Authorization": f"Bearer {account.secret}"}, timeout=120
        ) as no_default:
            uncached = await no_default.post("/chat/completions", json=chat)
    assert miss.status_code == hit.status_code == 200, (miss.text, hit.text)
    assert (miss.headers["x-cache"], hit.headers["x-cache"], streamed.headers["x-cache"]) == ("MISS", "HIT", "HIT")
    assert hit.json()["choices"] == miss.json()["choices"] and hit.json()["usage"] == miss.json()["usage"]
    assert hit.json()["id"] != miss.json()["id"] and hit.headers["x-process-id"] == hit_id
    assert record["cached"] is True and record["status"] == "completed"
    entry = await ledger_for(cached, hit_id)
    assert (entry.prompt_tokens, entry.completion_tokens, entry.cost_units, entry.cached) == (0, 0, 0, 1)
    content = miss.json()["choices"][0]["message"]["content"]
    assert streamed.text.endswith("data: [DONE]\n\n") and '"finish_reason": "' in streamed.text
    pieces = [
        d["choices"][0]["delta"].get("content") or ""
        for line in streamed.text.splitlines()
        if line.startswith("data: {") and (d := json.loads(line[6:]))["choices"]
    ]
    assert "".join(pieces) == content
    assert (other_history.headers["x-cache"], json_format.headers["x-cache"]) == ("MISS", "MISS")
    assert "x-cache" not in uncached.headers  # a key without cacheDefault: the cache is not used
