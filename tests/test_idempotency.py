"""Idempotency keys (server/idempotency): Stripe's semantics, on both stores, across two replicas.

Each store runs two replicas (platforms on the session's database; for Redis, also on one throw-away
redis-server). The model is the fault injector's OpenAI-compatible mock (tests/fault_upstream.py),
so every model run is counted where it happens: at the upstream.
"""

from __future__ import annotations

import asyncio
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
from tests.conftest import new_key, processing_stub
from tests.fault_upstream import FaultUpstream
from tests.limits_support import platform_with
from tests.redis_support import RedisServer
from tests.upstream_support import KEY_ENV, KEY_VALUE, upstream_spec

STORES = ["database", "redis"]
ANSWER_HEADERS = ("x-process-id", "x-cache")  # describe the answer: a replay sends them again


def answer_headers(response: httpx.Response | Any) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in ANSWER_HEADERS}


def overrides(faults: FaultUpstream, store: str, redis_server: RedisServer) -> dict[str, Any]:
    mock = faults.base_url
    return {
        "models": [
            upstream_spec("idem-ok", mock, "ok"),
            upstream_spec("idem-500", mock, "fail-500", max_retries=0),
            upstream_spec("idem-slow", mock, "sleep-1"),
        ],
        "redis_url": redis_server.url if store == "redis" else "",
    }


class Replicas:
    def __init__(self, store: str, settings: dict[str, Any], a: RunningPlatform, b: RunningPlatform) -> None:
        self.store = store
        self.settings = settings
        self.a = a
        self.b = b


@pytest.fixture(scope="module", params=STORES)
async def replicas(
    request: pytest.FixtureRequest, platform: RunningPlatform, faults: FaultUpstream, redis_server: RedisServer
) -> AsyncIterator[Replicas]:
    settings = overrides(faults, request.param, redis_server)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, KEY_VALUE)
        async with platform_with(platform, **settings) as a, platform_with(platform, **settings) as b:
            yield Replicas(request.param, settings, a, b)


@pytest.fixture(scope="module")
async def account(platform: RunningPlatform) -> CreatedKey:
    return await new_key(platform, name="idempotency-tests")


def client(running: RunningPlatform, key: CreatedKey) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{running.http_port}/v1",
        headers={"Authorization": f"Bearer {key.secret}"},
        timeout=60,
        limits=httpx.Limits(keepalive_expiry=1.0),
    )


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


async def billed(running: RunningPlatform, text: str) -> tuple[int, int]:
    """(records, ledger entries) stored for the calls sent with ``text``."""
    async with running.runtime.sessions() as session:
        ids = (await session.execute(select(ProcessRecord.id).where(ProcessRecord.input == text))).scalars().all()
        entries = (
            (await session.execute(select(LedgerEntry.id).where(LedgerEntry.record_id.in_(ids)))).scalars().all()
            if ids
            else []
        )
    return len(ids), len(entries)


async def test_a_repeat_replays_the_answer_without_running_or_billing_again(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    text, key = unique("repeat"), uuid.uuid4().hex
    sent = {"input": text, "model": "idem-ok", "options": {"cache": "use"}}
    async with client(replicas.a, account) as a, client(replicas.b, account) as b:
        first = await a.post("/process", json=sent, headers={"Idempotency-Key": key})
        again = await b.post("/process", json={"model": "idem-ok", **sent}, headers={"Idempotency-Key": key})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # the record's id included
    # ... and the first answer's headers: X-Process-Id names the one record, X-Cache as it was.
    assert answer_headers(again) == answer_headers(first) == {"x-process-id": first.json()["id"], "x-cache": "MISS"}
    assert len(faults.calls_for(text)) == 1
    assert await billed(replicas.a, text) == (1, 1)


async def test_50_concurrent_requests_with_one_key_run_the_model_once(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    text, key = unique("fifty"), uuid.uuid4().hex
    body = {"input": text, "model": "idem-slow"}
    async with client(replicas.a, account) as a, client(replicas.b, account) as b:
        answers = await asyncio.gather(
            *(c.post("/process", json=body, headers={"Idempotency-Key": key}) for c in [a, b] * 25)
        )
        final = await a.post("/process", json=body, headers={"Idempotency-Key": key})
        while final.status_code == 409:  # the first call may still be finishing
            await asyncio.sleep(0.2)
            final = await a.post("/process", json=body, headers={"Idempotency-Key": key})
    assert {r.status_code for r in answers} <= {200, 409}
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_in_progress"
            assert r.headers["retry-after"] == "1"
        else:
            assert r.json() == final.json()
    assert final.status_code == 200
    assert len(faults.calls_for(text)) == 1
    assert await billed(replicas.a, text) == (1, 1)


async def test_the_key_with_another_request_is_422(replicas: Replicas, account: CreatedKey) -> None:
    key = uuid.uuid4().hex
    async with client(replicas.a, account) as a, client(replicas.b, account) as b:
        first = await a.post(
            "/process", json={"input": unique("one"), "model": "idem-ok"}, headers={"Idempotency-Key": key}
        )
        other = await b.post(
            "/process", json={"input": unique("two"), "model": "idem-ok"}, headers={"Idempotency-Key": key}
        )
    assert first.status_code == 200
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_a_4xx_answer_is_replayed(replicas: Replicas, faults: FaultUpstream, account: CreatedKey) -> None:
    text, key = unique("bad temperature"), uuid.uuid4().hex
    body = {"input": text, "model": "idem-ok", "options": {"temperature": 5}}
    async with client(replicas.a, account) as a:
        first = await a.post("/process", json=body, headers={"Idempotency-Key": key})
        again = await a.post("/process", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 400
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["error"] == {**first.json()["error"], "requestId": again.json()["error"]["requestId"]}


async def test_a_retry_after_a_5xx_runs_again(replicas: Replicas, faults: FaultUpstream, account: CreatedKey) -> None:
    text, key = unique("fails"), uuid.uuid4().hex
    async with client(replicas.a, account) as a, client(replicas.b, account) as b:
        first = await a.post("/process", json={"input": text, "model": "idem-500"}, headers={"Idempotency-Key": key})
        retry = await b.post("/process", json={"input": text, "model": "idem-500"}, headers={"Idempotency-Key": key})
    assert first.status_code == retry.status_code == 502
    assert "idempotent-replayed" not in retry.headers
    assert len(faults.calls_for(text)) == 2


async def test_a_stream_is_replayed_as_the_same_events(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    text, key = unique("stream"), uuid.uuid4().hex
    body = {"input": text, "model": "idem-ok"}
    async with client(replicas.a, account) as a, client(replicas.b, account) as b:
        first = await a.post("/stream", json=body, headers={"Idempotency-Key": key})
        again = await b.post("/stream", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert "event: complete" in first.text
    assert again.text == first.text
    assert answer_headers(again) == answer_headers(first)
    assert first.headers["x-process-id"] in first.text.split("event: complete", 1)[1]
    assert len(faults.calls_for(text)) == 1
    assert await billed(replicas.a, text) == (1, 1)


async def test_grpc_idempotency_key_metadata(replicas: Replicas, faults: FaultUpstream, account: CreatedKey) -> None:
    text, key = unique("grpc"), uuid.uuid4().hex
    metadata = (("authorization", f"Bearer {account.secret}"), ("idempotency-key", key))
    request = processing_pb2.ProcessRequest(input=text, model="idem-ok")
    replies = []
    for running in (replicas.a, replicas.b):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
            call = processing_stub(channel).Process(request, metadata=metadata)
            trailing = await call.trailing_metadata()
            replies.append((await call, trailing.get("idempotent-replayed"), trailing.get("x-process-id")))
    assert replies[0][0] == replies[1][0]
    assert replies[0][1] is None
    assert replies[1][1] == "true"
    assert replies[0][2] == replies[1][2] == replies[0][0].id  # the replay names the first call's record
    assert len(faults.calls_for(text)) == 1


@pytest.mark.parametrize("bad", ["x" * 256, "café", ""])
async def test_a_malformed_key_is_400(replicas: Replicas, account: CreatedKey, bad: str) -> None:
    async with client(replicas.a, account) as a:
        r = await a.post(
            "/process",
            json={"input": unique("bad key"), "model": "idem-ok"},
            headers=[(b"Idempotency-Key", bad.encode("utf-8"))],
        )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_parameters"
    assert r.json()["error"]["details"] == {"field": "Idempotency-Key"}


async def test_keys_belong_to_one_account(
    replicas: Replicas, platform: RunningPlatform, faults: FaultUpstream, account: CreatedKey
) -> None:
    other = await new_key(platform, name="idempotency-other")
    text, key = unique("per account"), uuid.uuid4().hex
    body = {"input": text, "model": "idem-ok"}
    async with client(replicas.a, account) as a, client(replicas.a, other) as o:
        mine = await a.post("/process", json=body, headers={"Idempotency-Key": key})
        theirs = await o.post("/process", json=body, headers={"Idempotency-Key": key})
    assert mine.status_code == theirs.status_code == 200
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert len(faults.calls_for(text)) == 2


async def test_a_replay_survives_a_restart(
    replicas: Replicas, platform: RunningPlatform, faults: FaultUpstream, account: CreatedKey
) -> None:
    text, key = unique("restart"), uuid.uuid4().hex
    body = {"input": text, "model": "idem-ok"}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, KEY_VALUE)
        async with platform_with(platform, **replicas.settings) as before, client(before, account) as c:
            first = await c.post("/process", json=body, headers={"Idempotency-Key": key})
        async with platform_with(platform, **replicas.settings) as after, client(after, account) as c:
            again = await c.post("/process", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(faults.calls_for(text)) == 1


async def test_without_a_key_every_call_runs(replicas: Replicas, faults: FaultUpstream, account: CreatedKey) -> None:
    text = unique("no key")
    async with client(replicas.a, account) as a:
        for _ in range(2):
            assert (await a.post("/process", json={"input": text, "model": "idem-ok"})).status_code == 200
    assert len(faults.calls_for(text)) == 2


async def test_the_python_sdks_retries_of_a_slow_call_bill_once(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    """The issue's case: a client timeout shorter than the model makes the SDK retry (twice, by
    default). Its idempotency key makes the retries wait for, then replay, the first attempt."""
    from plutos_ai import PlutosAI

    text = unique("impatient sdk")
    sdk = PlutosAI(api_key=account.secret, base_url=f"http://127.0.0.1:{replicas.a.http_port}/v1", timeout=0.3)
    try:
        result = await asyncio.to_thread(sdk.process_data, input=text, model="idem-slow")
    finally:
        sdk.close()
    assert result.output == "Hello from the mock"
    assert len(faults.calls_for(text)) == 1
    assert await billed(replicas.a, text) == (1, 1)


async def test_answers_expire_and_are_pruned(platform: RunningPlatform) -> None:
    """The database store with an injected clock: a finished answer replays until its retention
    ends, then the key runs again; prune() deletes what has expired."""
    from server.idempotency.store import CLAIMED, REPLAY, DatabaseIdempotencyStore, Outcome

    now = [2_000_000_000.0]
    store = DatabaseIdempotencyStore(
        platform.runtime.writer, platform.runtime.sessions, ttl=60, lease=5, clock=lambda: now[0]
    )
    account, key = f"acct_prune_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert (await store.claim(account, key, "fp", "owner-1")).status == CLAIMED
    await store.complete(account, key, "owner-1", Outcome([b"answer"]))
    now[0] += 59
    replay = await store.claim(account, key, "fp", "owner-2")
    assert replay.status == REPLAY and replay.outcome is not None and replay.outcome.messages == [b"answer"]
    now[0] += 2
    assert await store.prune() >= 1
    assert (await store.claim(account, key, "fp", "owner-3")).status == CLAIMED


async def test_a_claim_whose_holder_died_is_taken_over_after_the_lease(platform: RunningPlatform) -> None:
    from server.idempotency.store import CLAIMED, IN_PROGRESS, DatabaseIdempotencyStore

    now = [2_000_000_000.0]
    store = DatabaseIdempotencyStore(
        platform.runtime.writer, platform.runtime.sessions, ttl=60, lease=5, clock=lambda: now[0]
    )
    account, key = f"acct_lease_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert (await store.claim(account, key, "fp", "dead-replica")).status == CLAIMED
    assert (await store.claim(account, key, "fp", "other")).status == IN_PROGRESS
    now[0] += 6
    assert (await store.claim(account, key, "fp", "other")).status == CLAIMED


def _record(who: CreatedKey, **values: Any) -> ProcessRecord:
    from server.store.models import new_row, utcnow

    return new_row(
        ProcessRecord,
        **{
            "id": f"proc_{uuid.uuid4().hex[:16]}",
            "account_id": who.account_id,
            "key_id": who.id,
            "kind": "process",
            "model": "idem-ok",
            "input": "held",
            "options": {},
            "output": "answer",
            "prompt_tokens": 1,
            "completion_tokens": 2,
            "status": "completed",
            "created_at": utcnow().replace(microsecond=0),
            "processing_time_ms": 3,
            **values,
        },
    )


async def test_the_answer_commits_in_one_transaction_with_the_calls_record(
    platform: RunningPlatform, account: CreatedKey
) -> None:
    """The database store holds the rows a keyed call writes and commits them with its answer:
    nothing of the call is stored before the answer is, and a record the store refuses (kept in
    its salvaged form) releases the key instead of keeping an answer that was not stored."""
    from server.idempotency.store import CLAIMED, REPLAY, DatabaseIdempotencyStore, Outcome

    writer = platform.runtime.writer
    store = DatabaseIdempotencyStore(writer, platform.runtime.sessions, ttl=60, lease=5)
    for refused in (False, True):
        key = uuid.uuid4().hex
        record = _record(account, input=None) if refused else _record(account)  # input is NOT NULL
        assert (await store.claim(account.account_id, key, "fp", "owner-1")).status == CLAIMED
        with store.holding() as rows:
            assert await writer.write(record) == ()
        assert rows == [record]
        async with platform.runtime.sessions() as session:
            assert await session.get(ProcessRecord, record.id) is None  # held, not written
        stored = await store.complete(account.account_id, key, "owner-1", Outcome([b"answer"]), rows)
        async with platform.runtime.sessions() as session:
            row = await session.get(ProcessRecord, record.id)
        again = await store.claim(account.account_id, key, "fp", "owner-2")
        if refused:
            assert stored == (record,) and row is not None and row.status == "failed"
            assert again.status == CLAIMED  # released: a retry runs
        else:
            assert stored == () and row is not None and row.status == "completed"
            assert again.status == REPLAY and again.outcome is not None and again.outcome.messages == [b"answer"]


# -- the OpenAI-compatible API (/openai/v1), with the official openai SDK --------------------------
# The openai SDK sends no Idempotency-Key of its own (its client sets no idempotency header), so a
# key is the caller's: ``extra_headers``, which the SDK repeats on each of its retries.


def openai_sdk(running: RunningPlatform, key: CreatedKey, **options: Any) -> Any:
    from openai import AsyncOpenAI

    options.setdefault("max_retries", 0)
    return AsyncOpenAI(base_url=f"http://127.0.0.1:{running.http_port}/openai/v1", api_key=key.secret, **options)


async def test_openai_calls_with_a_key_replay_in_openais_shape(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    chat_text, completion_text = unique("openai chat"), unique("openai completion")
    chat_key, completion_key = uuid.uuid4().hex, uuid.uuid4().hex
    chat_headers: list[dict[str, str | None]] = []
    async with openai_sdk(replicas.a, account) as a, openai_sdk(replicas.b, account) as b:
        answers = []
        for sdk in (a, b):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="idem-ok",
                messages=[{"role": "user", "content": chat_text}],
                extra_headers={"Idempotency-Key": chat_key},
            )
            answers.append((raw.headers.get("idempotent-replayed"), raw.parse()))
            chat_headers.append(answer_headers(raw))
        completions = []
        for sdk in (a, b):
            raw = await sdk.completions.with_raw_response.create(
                model="idem-ok", prompt=completion_text, extra_headers={"Idempotency-Key": completion_key}
            )
            completions.append((raw.headers.get("idempotent-replayed"), raw.parse()))
    (first_flag, first), (again_flag, again) = answers
    assert first_flag is None and again_flag == "true"
    assert again.model_dump() == first.model_dump()  # the same chatcmpl- id, content and usage
    assert first.id.startswith("chatcmpl-") and first.choices[0].message.content == "Hello from the mock"
    assert chat_headers[0]["x-process-id"] and chat_headers[1] == chat_headers[0]
    assert len(faults.calls_for(chat_text)) == 1
    assert [flag for flag, _ in completions] == [None, "true"]
    assert completions[1][1].model_dump() == completions[0][1].model_dump()
    assert completions[0][1].id.startswith("cmpl-")
    assert len(faults.calls_for(completion_text)) == 1


async def test_an_openai_stream_with_a_key_is_replayed_as_the_same_chunks(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    text, key = unique("openai stream"), uuid.uuid4().hex
    runs = []
    stream_headers: list[dict[str, str | None]] = []
    async with openai_sdk(replicas.a, account) as a, openai_sdk(replicas.b, account) as b:
        for sdk in (a, b):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="idem-ok",
                messages=[{"role": "user", "content": text}],
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"Idempotency-Key": key},
            )
            chunks = [chunk.model_dump() async for chunk in raw.parse()]
            runs.append((raw.headers.get("idempotent-replayed"), chunks))
            stream_headers.append(answer_headers(raw))
    (first_flag, first), (again_flag, again) = runs
    assert first_flag is None and again_flag == "true"
    assert again == first and len(first) > 1
    assert stream_headers[0]["x-process-id"] and stream_headers[1] == stream_headers[0]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in first if c["choices"])
    assert len(faults.calls_for(text)) == 1


async def test_openai_surface_answers_422_and_409_in_openais_error_shape(
    replicas: Replicas, account: CreatedKey
) -> None:
    import openai

    key = uuid.uuid4().hex
    async with openai_sdk(replicas.a, account) as a, openai_sdk(replicas.b, account) as b:

        async def slow(sdk: Any) -> Any:
            try:
                return await sdk.chat.completions.create(
                    model="idem-slow",
                    messages=[BUSY],
                    extra_headers={"Idempotency-Key": key},
                )
            except openai.APIStatusError as err:
                return err

        outcomes = await asyncio.gather(slow(a), slow(b))
        reused = None
        try:
            await a.chat.completions.create(
                model="idem-slow",
                messages=[{"role": "user", "content": "another request"}],
                extra_headers={"Idempotency-Key": key},
            )
        except openai.UnprocessableEntityError as err:
            reused = err
        bad = None
        try:
            await a.chat.completions.create(
                model="idem-ok", messages=[BUSY], extra_headers={"Idempotency-Key": "x" * 256}
            )
        except openai.BadRequestError as err:
            bad = err
    conflicts = [o for o in outcomes if isinstance(o, openai.ConflictError)]
    assert len(conflicts) == 1 and sum(1 for o in outcomes if not isinstance(o, Exception)) == 1
    conflict = conflicts[0]
    assert conflict.status_code == 409 and conflict.code == "idempotency_in_progress"
    assert conflict.type == "invalid_request_error" and conflict.response.headers["retry-after"] == "1"
    assert isinstance(conflict.body, dict) and set(conflict.body) >= {"message", "type", "param", "code"}
    assert reused is not None and reused.status_code == 422 and reused.code == "idempotency_key_reused"
    assert reused.type == "invalid_request_error"
    assert bad is not None and bad.code == "invalid_parameters" and bad.param == "Idempotency-Key"


BUSY = {"role": "user", "content": "openai busy [shared by the 409 test's two calls]"}


async def test_the_openai_sdks_retries_with_a_key_bill_once(
    replicas: Replicas, faults: FaultUpstream, account: CreatedKey
) -> None:
    """A client timeout shorter than the model: the SDK retries with the same ``extra_headers``,
    so each retry waits (409 ``Retry-After``, which the SDK honours) for the first attempt's
    answer, then replays it."""
    text, key = unique("impatient openai sdk"), uuid.uuid4().hex
    async with openai_sdk(replicas.a, account, timeout=0.3, max_retries=6) as sdk:
        reply = await sdk.chat.completions.create(
            model="idem-slow", messages=[{"role": "user", "content": text}], extra_headers={"Idempotency-Key": key}
        )
    assert reply.choices[0].message.content == "Hello from the mock"
    assert len(faults.calls_for(text)) == 1
    assert await billed(replicas.a, text) == (1, 1)
