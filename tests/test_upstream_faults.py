"""Whatever an upstream answers, the caller gets the right envelope, the bill stays true and every
stored record stays readable (issue 15, items 1-4 and 14).

The upstream is the fault injector (tests/fault_upstream.py, model ``script``): each test scripts the
answer to its own unique input. Every case goes through the real REST bridge (either transport) or
the gRPC server, and checks the stored record and ledger row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from plutos.v1 import processing_pb2, processing_pb2_grpc

from gateway.app import RunningPlatform, start_platform
from server.config import _parse_model
from server.keys import CreatedKey
from server.options import PROMPT_OVERHEAD_TOKENS
from server.store.models import Batch, ProcessRecord
from tests.conftest import new_key, processing_stub, rich_status
from tests.conftest import test_settings as make_settings
from tests.fault_upstream import MOCK_TEXT, Fault, FaultUpstream
from tests.upstream_support import record_and_ledger, unique

CONTEXT = 2048
MAX_RETRY_AFTER = 30


def spec(model_id: str, base_url: str, **extra: Any) -> Any:
    return _parse_model(
        {
            "id": model_id,
            "backend": "openai-compatible",
            "base_url": base_url,
            "upstream_model": "script",
            "max_tokens": CONTEXT,
            "pricing": {"input_tokens": 0.01, "output_tokens": 0.03},
            "max_retries": 0,
            "max_retry_after": MAX_RETRY_AFTER,
            "timeout": {"connect": 2, "read": 10, "total": 30},
            **extra,
        }
    )


@pytest.fixture(scope="module")
async def up(
    platform: RunningPlatform,  # the session platform resets and migrates a shared PostgreSQL first
    faults: FaultUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningPlatform]:
    base = make_settings(tmp_path_factory.mktemp("faults-store"))
    models = [
        spec("script", faults.base_url),
        spec("script-whole", faults.base_url, supports_streaming=False),
    ]
    running = await start_platform(dataclasses.replace(base, models=models))
    yield running
    await running.stop(grace=1)


@pytest.fixture(scope="module")
async def key(up: RunningPlatform) -> CreatedKey:
    return await new_key(up, name="fault-tests")  # enterprise: these tests are not about limits


@pytest.fixture(scope="module")
async def client(up: RunningPlatform, key: CreatedKey) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{up.http_port}/v1", headers={"Authorization": f"Bearer {key.secret}"}, timeout=60
    ) as c:
        yield c


@pytest.fixture(scope="module")
async def stub(up: RunningPlatform) -> AsyncIterator[processing_pb2_grpc.ProcessingServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{up.grpc_port}")
    yield processing_stub(channel)
    await channel.close(None)


def envelope(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, error
    return error


def retry_info(err: grpc.aio.AioRpcError) -> int | None:
    """The seconds of the error's ``RetryInfo`` detail, None without one."""
    status = rich_status(err)  # also checks it agrees with the call's code and message
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return int(info.retry_delay.seconds)
    return None


def sse(body: str) -> list[tuple[str, str]]:
    events = []
    for block in body.split("\n\n"):
        lines = block.splitlines()
        name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        if data:
            events.append((name, data))
    return events


# -- 1. Retry-After: parsed as RFC 9110 says, capped by max_retry_after -----------------------------

INVALID_RETRY_AFTER = ["inf", "-inf", "nan", "-5", "1e9", "1.5", "0x10", "abc", "", "Thu, 32 Foo 2024 99:00:00 GMT"]
HUGE_RETRY_AFTER = ["Fri, 31 Dec 9999 23:59:59 GMT", "99999999999999999999", "3600"]


@pytest.mark.parametrize("value", INVALID_RETRY_AFTER)
async def test_an_invalid_retry_after_is_ignored(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, value: str
) -> None:
    text = faults.script(unique(), Fault(status=429, headers={"retry-after": value}))
    r = await client.post("/process", json={"input": text, "model": "script"})
    error = envelope(r, 503, "service_unavailable")
    assert "retry-after" not in r.headers and "retryAfter" not in error["details"]
    record, ledger = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", "service_unavailable")
    assert ledger is not None and ledger.prompt_tokens == 0  # nothing was accepted upstream


@pytest.mark.parametrize("value", HUGE_RETRY_AFTER)
async def test_a_long_retry_after_is_capped(faults: FaultUpstream, client: httpx.AsyncClient, value: str) -> None:
    text = faults.script(unique(), Fault(status=429, headers={"retry-after": value}))
    r = await client.post("/process", json={"input": text, "model": "script"})
    error = envelope(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == str(MAX_RETRY_AFTER)
    assert error["details"]["retryAfter"] == MAX_RETRY_AFTER


async def test_retry_after_over_grpc(faults: FaultUpstream, key: CreatedKey, stub: Any) -> None:
    md = (("authorization", f"Bearer {key.secret}"),)
    for value, expected in (("inf", None), ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER)):
        text = faults.script(unique(), Fault(status=429, headers={"retry-after": value}))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Process(processing_pb2.ProcessRequest(input=text, model="script"), metadata=md)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert retry_info(info.value) == expected


async def test_a_stream_with_an_invalid_retry_after_fails_and_is_stored_as_failed(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient
) -> None:
    text = faults.script(unique(), Fault(status=429, headers={"retry-after": "inf"}))
    r = await client.post("/stream", json={"input": text, "model": "script"})
    envelope(r, 503, "service_unavailable")
    assert "retry-after" not in r.headers
    record, _ = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", "service_unavailable")


async def test_a_batch_item_failure_stays_that_item(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient
) -> None:
    good = [faults.script(unique(f"good {i}"), Fault()) for i in range(2)]
    bad = faults.script(unique("bad"), Fault(status=429, headers={"retry-after": "inf"}))
    r = await client.post("/batch", json={"inputs": [good[0], bad, good[1]], "model": "script"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res.get("error", {}).get("code") for res in results] == [None, "service_unavailable", None]
    assert results[0]["output"] == "".join(MOCK_TEXT)
    for text in good:
        record, ledger = await record_and_ledger(up, text)
        assert record.status == "completed" and ledger is not None and ledger.completion_tokens > 0
    record, _ = await record_and_ledger(up, bad)
    async with up.runtime.sessions() as session:
        assert await session.get(Batch, record.batch_id) is not None


# -- 2. usage no request could use is never billed as reported -------------------------------------


def bound(text: str, system: str = "") -> int:
    return min(len(text.encode()) + len(system.encode()) + PROMPT_OVERHEAD_TOKENS, CONTEXT)


ABSURD_USAGE = [
    {"prompt_tokens": 3_000_000_000, "completion_tokens": 3},
    {"prompt_tokens": 675_947_905, "completion_tokens": 3},
    {"prompt_tokens": 5, "completion_tokens": 10**30},
    {"prompt_tokens": 2**63, "completion_tokens": 2**64},
]


@pytest.mark.parametrize("usage", ABSURD_USAGE)
@pytest.mark.parametrize("model", ["script", "script-whole"])
async def test_impossible_usage_is_clamped_to_the_request_bound(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, usage: dict[str, int], model: str
) -> None:
    text = faults.script(unique("8 chars?"), Fault(usage=usage))
    r = await client.post("/process", json={"input": text, "model": model, "options": {"maxTokens": 10}})
    assert r.status_code == 200, r.text
    got = r.json()["usage"]
    assert got["promptTokens"] == min(usage["prompt_tokens"], bound(text))
    assert got["completionTokens"] == min(usage["completion_tokens"], 10)
    record, ledger = await record_and_ledger(up, text)
    assert ledger is not None
    assert (record.prompt_tokens, record.completion_tokens) == (got["promptTokens"], got["completionTokens"])
    assert (ledger.prompt_tokens, ledger.completion_tokens) == (got["promptTokens"], got["completionTokens"])
    again = await client.get(f"/process/{r.json()['id']}")
    assert again.status_code == 200 and again.json()["usage"] == got


@pytest.mark.parametrize(
    "usage",
    [{"prompt_tokens": -1, "completion_tokens": "12"}, {"prompt_tokens": 1.5}, {"prompt_tokens": True}, "lots", [1, 2]],
)
async def test_usage_that_is_not_a_count_is_not_used(
    faults: FaultUpstream, client: httpx.AsyncClient, usage: Any
) -> None:
    text = faults.script(unique(), Fault(usage=usage))
    r = await client.post("/process", json={"input": text, "model": "script", "options": {"maxTokens": 10}})
    assert r.status_code == 200, r.text
    got = r.json()["usage"]
    assert 0 < got["promptTokens"] <= bound(text) and got["completionTokens"] == len(MOCK_TEXT)


async def test_absurd_usage_in_a_stream_and_a_batch(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient
) -> None:
    usage = {"prompt_tokens": 3_000_000_000, "completion_tokens": 3_000_000_000}
    text = faults.script(unique(), Fault(usage=usage))
    r = await client.post("/stream", json={"input": text, "model": "script", "options": {"maxTokens": 10}})
    events = sse(r.text)
    assert events[-1][0] == "complete", r.text
    record, ledger = await record_and_ledger(up, text)
    assert (record.prompt_tokens, record.completion_tokens) == (bound(text), 10)
    assert ledger is not None and ledger.prompt_tokens == bound(text)
    texts = [faults.script(unique(f"b{i}"), Fault(usage=usage)) for i in range(2)]
    r = await client.post("/batch", json={"inputs": texts, "model": "script", "options": {"maxTokens": 10}})
    assert r.status_code == 200, r.text
    assert r.json()["totalUsage"]["totalTokens"] == sum(bound(t) + 10 for t in texts)


async def test_the_quota_holds_whatever_the_upstream_reports(up: RunningPlatform, faults: FaultUpstream) -> None:
    # A free key (1,000,000 tokens a month): an upstream claiming 3e9 tokens must not lock it out.
    own = await new_key(up, plan="free", name="quota-fault")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{up.http_port}/v1", headers={"Authorization": f"Bearer {own.secret}"}, timeout=60
    ) as c:
        for _ in range(3):
            text = faults.script(unique(), Fault(usage={"prompt_tokens": 3_000_000_000, "completion_tokens": 9}))
            r = await c.post("/process", json={"input": text, "model": "script", "options": {"maxTokens": 10}})
            assert r.status_code == 200, r.text
        usage = (await c.get("/usage")).json()["usage"]
        assert usage["totalTokens"] < 1000 and float(usage["totalCost"]) < 1


async def test_a_stored_record_beyond_int32_is_still_readable(
    up: RunningPlatform, key: CreatedKey, client: httpx.AsyncClient
) -> None:
    # A record written before usage was bounded (the 3,000,000,000 prompt tokens).
    text = unique()
    r = await client.post("/process", json={"input": text, "model": "script"})
    assert r.status_code == 200
    record_id = r.json()["id"]
    # SQLite stores any integer; PostgreSQL's int4 column stops at 2**31 - 1 (the total still overflows).
    huge = 3_000_000_000 if up.runtime.settings.database_url.startswith("sqlite") else 2**31 - 1
    async with up.runtime.sessions.begin() as session:
        record = await session.get(ProcessRecord, record_id)
        assert record is not None
        record.prompt_tokens = huge
        record.completion_tokens = 5
        record.processing_time_ms = huge
    got = await client.get(f"/process/{record_id}")
    assert got.status_code == 200, got.text
    assert got.json()["usage"] == {"promptTokens": 2**31 - 1, "completionTokens": 5, "totalTokens": 2**31 - 1}


# -- 3. a stream's status and headers wait for its first message (or its error) ----------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(status=429, headers={"retry-after": "7"}), 503, "service_unavailable"),
        (Fault(status=500), 502, "upstream_error"),
        (Fault(status=401), 502, "upstream_error"),
    ],
)
async def test_an_upstream_error_before_the_first_chunk_is_a_plain_error_response(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, fault: Fault, status: int, code: str
) -> None:
    text = faults.script(unique(), fault)
    r = await client.post("/stream", json={"input": text, "model": "script"})
    assert r.headers["content-type"].startswith("application/json"), r.text
    envelope(r, status, code)
    if fault.status == 429:
        assert r.headers["retry-after"] == "7"
    record, _ = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", code)
    assert r.headers["x-process-id"] == record.id  # the failed call's record can be looked up


async def test_a_grpc_stream_failing_before_its_first_message_has_its_status(
    faults: FaultUpstream, key: CreatedKey, stub: Any
) -> None:
    text = faults.script(unique(), Fault(status=429, headers={"retry-after": "7"}))
    call = stub.Stream(
        processing_pb2.StreamRequest(input=text, model="script"), metadata=(("authorization", f"Bearer {key.secret}"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert retry_info(info.value) == 7


async def test_keepalive_comments_during_silence_after_the_first_chunk(
    up: RunningPlatform, faults: FaultUpstream, key: CreatedKey
) -> None:
    from bridge.app import create_app

    # A second bridge on the same service with a tiny keep-alive interval; the upstream pauses 0.3 s
    # between its chunks.
    app = create_app(up.channel, keepalive_seconds=0.05)
    headers = {"Authorization": f"Bearer {key.secret}"}
    text = faults.script(unique(), Fault(pause=0.3, pieces=["a", "b"]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bridge/v1", headers=headers, timeout=60
    ) as c:
        r = await c.post("/stream", json={"input": text, "model": "script"})
    assert b": keep-alive\n\n" in r.content
    assert r.content.rstrip().split(b"\n\n")[-1].startswith(b"event: complete")


# -- 13. a stream's record id up front ---------------------------------------------------------------


async def test_the_record_id_comes_first(
    faults: FaultUpstream, key: CreatedKey, client: httpx.AsyncClient, stub: Any
) -> None:
    r = await client.post("/stream", json={"input": unique(), "model": "script"})
    assert r.status_code == 200
    complete = [data for name, data in sse(r.text) if name == "complete"]
    assert r.headers["x-process-id"] in complete[0]
    r = await client.post("/process", json={"input": unique(), "model": "script"})
    assert r.headers["x-process-id"] == r.json()["id"]
    call = stub.Stream(
        processing_pb2.StreamRequest(input=unique(), model="script"),
        metadata=(("authorization", f"Bearer {key.secret}"),),
    )
    initial = dict(tuple(await call.initial_metadata()))
    messages = [m async for m in call]
    assert initial["x-process-id"] == messages[-1].complete.id


# -- 4. the answer read by its content type; SSE parsed by the standard's rules ----------------------


@pytest.mark.parametrize("framing", ["lf", "crlf", "cr", "split-data", "fields"])
@pytest.mark.parametrize("byte_chunks", [0, 1, 7])
async def test_every_valid_sse_framing_is_read(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, framing: str, byte_chunks: int
) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 4}
    pieces = ["caf\u00e9", " \U0001f389", " ok"]
    text = faults.script(unique(), Fault(framing=framing, byte_chunks=byte_chunks, usage=usage, pieces=pieces))
    r = await client.post("/process", json={"input": text, "model": "script"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "".join(pieces)
    assert r.json()["usage"]["completionTokens"] == 4


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_a_json_answer_to_a_streaming_request(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, content_type: str
) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 4}
    text = faults.script(unique(), Fault(as_json=True, content_type=content_type, usage=usage))
    r = await client.post("/process", json={"input": text, "model": "script"})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "".join(MOCK_TEXT) and r.json()["usage"]["completionTokens"] == 4
    text = faults.script(unique(), Fault(as_json=True, content_type=content_type, usage=usage))
    r = await client.post("/stream", json={"input": text, "model": "script"})
    events = sse(r.text)
    assert [name for name, _ in events] == ["chunk", "complete"], r.text
    record, _ = await record_and_ledger(up, text)
    assert record.status == "completed" and record.output == "".join(MOCK_TEXT)


# -- 5. NUL in what an upstream answers: dropped where it is produced, so answer == record ------------


@pytest.mark.parametrize("model", ["script", "script-whole"])
async def test_nul_in_upstream_output_is_dropped(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, model: str
) -> None:
    text = faults.script(unique(), Fault(pieces=["a\u0000b", "\u0000", "c"]))
    r = await client.post("/process", json={"input": text, "model": model})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "abc"
    record, ledger = await record_and_ledger(up, text)
    assert record.output == "abc" and record.status == "completed" and ledger is not None
    text = faults.script(unique(), Fault(pieces=["a\u0000b", "c"]))
    r = await client.post("/stream", json={"input": text, "model": "script"})
    assert sse(r.text)[-1][0] == "complete" and "\\u0000" not in r.text
    record, _ = await record_and_ledger(up, text)
    assert record.output == "abc" and record.status == "completed"


@pytest.mark.parametrize("status", [201, 299, 302, 418, 599])
async def test_any_other_upstream_status_is_an_upstream_error(
    up: RunningPlatform, faults: FaultUpstream, client: httpx.AsyncClient, status: int
) -> None:
    text = faults.script(unique(), Fault(status=status))
    r = await client.post("/process", json={"input": text, "model": "script"})
    envelope(r, 502, "upstream_error")
    assert r.json()["error"]["details"]["upstreamStatus"] == status
    record, _ = await record_and_ledger(up, text)
    assert (record.status, record.error_code) == ("failed", "upstream_error")
