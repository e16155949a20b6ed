"""The OpenAI-compatible API (/openai/v1) against the official ``openai`` Python package (sync and
async), raw HTTP for the bytes, and gRPC, on the session platform with the local model.

Sync clients run in a worker thread: the platform under test serves on this event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import openai
import pytest
from google.protobuf import struct_pb2
from openai.types.chat import ChatCompletionMessageParam
from plutos.v1 import openai_pb2
from sqlalchemy import select

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from server.store.models import LedgerEntry, ProcessRecord
from tests.conftest import MODEL, new_key, openai_stub
from tests.limits_support import fresh_minute, no_slots_held

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def openai_url(platform: RunningPlatform) -> str:
    return f"http://127.0.0.1:{platform.http_port}/openai/v1"


@pytest.fixture(scope="module")
async def oai(openai_url: str, key: CreatedKey) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=openai_url, api_key=key.secret, max_retries=0, timeout=120)
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def raw(openai_url: str, key: CreatedKey) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=openai_url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=120
    ) as client:
        yield client


async def stored(platform: RunningPlatform, record_id: str) -> ProcessRecord:
    for _ in range(300):
        async with platform.runtime.sessions() as session:
            record = await session.get(ProcessRecord, record_id)
        if record is not None:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"record {record_id} never written")


def record_id(openai_id: str) -> str:
    return "proc_" + openai_id.rsplit("-", 1)[1]


# -- chat completions -----------------------------------------------------------------------------


async def test_sync_sdk_chat_completion_with_headers_is_stored_and_billed(
    openai_url: str, key: CreatedKey, platform: RunningPlatform, http: httpx.AsyncClient
) -> None:
    def call() -> Any:
        with openai.OpenAI(base_url=openai_url, api_key=key.secret, max_retries=0) as client:
            return client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[
                    {"role": "system", "content": "You are a geography teacher."},
                    {"role": "user", "content": "What is the capital of France?"},
                ],
                max_tokens=12,
                temperature=0,
            )

    response = await asyncio.to_thread(call)
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert response.headers[header].isdigit()
    assert response.headers["x-ratelimit-limit-requests"] == response.headers["x-ratelimit-limit"]
    assert response.headers["x-ratelimit-remaining-requests"] == response.headers["x-ratelimit-remaining"]
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert response.headers["x-request-id"].startswith("req_")
    completion = response.parse()
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The same record as /v1/process keeps, visible through the reference's API, and billed.
    got = (await http.get(f"/process/{record_id(completion.id)}")).json()
    assert got["status"] == "completed"
    assert got["output"] == choice.message.content
    assert got["input"] == "What is the capital of France?"
    assert got["usage"]["completionTokens"] == usage.completion_tokens
    async with platform.runtime.sessions() as session:
        ledger = (
            await session.execute(select(LedgerEntry).where(LedgerEntry.record_id == record_id(completion.id)))
        ).scalar_one()
    assert ledger.prompt_tokens == usage.prompt_tokens and ledger.counts_as_request == 1


async def test_chat_runs_the_same_generation_as_process(oai: openai.AsyncOpenAI, http: httpx.AsyncClient) -> None:
    """A system + user chat is the prompt /v1/process builds from systemPrompt + input (the GGUF's
    chat template): same prompt tokens, and greedy decoding gives the same text."""
    system, question = "Answer in one word.", "What colour is the sky?"
    chat = await oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=8,
        temperature=0,
    )
    body = {"input": question, "model": MODEL, "options": {"systemPrompt": system, "maxTokens": 8, "temperature": 0}}
    process = (await http.post("/process", json=body)).json()
    assert chat.usage is not None
    assert chat.usage.prompt_tokens == process["usage"]["promptTokens"]
    assert chat.choices[0].message.content == process["output"]


async def test_multi_turn_chat_goes_through_the_chat_template(
    oai: openai.AsyncOpenAI, platform: RunningPlatform
) -> None:
    from server.backends.local import LocalLlamaBackend

    messages: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada!"},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    chat = await oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
    backend = platform.runtime.catalogue.backends[MODEL]
    assert isinstance(backend, LocalLlamaBackend)
    llm = backend._llm
    rendered = backend._formatter(
        messages=[
            {"role": "system" if m["role"] == "developer" else m["role"], "content": c}
            for m, c in zip(messages, ["Be brief.", "My name is Ada.", "Hello Ada!", "What is my name?"], strict=True)
        ]
    )
    expected = llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)
    assert chat.usage is not None and chat.usage.prompt_tokens == len(expected)
    record = await stored(platform, record_id(chat.id))
    assert record.kind == "chat" and record.input == "What is my name?"
    assert [m["role"] for m in record.options["messages"]] == ["developer", "user", "assistant", "user"]


async def test_async_sdk_stream_with_usage_is_stored(oai: openai.AsyncOpenAI, platform: RunningPlatform) -> None:
    stream = await oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert content and content[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    record = await stored(platform, record_id(chunks[0].id))
    assert record.status == "completed" and record.output == text
    assert record.completion_tokens == usage_chunk.usage.completion_tokens


async def test_sse_bytes_are_data_frames_then_done(raw: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 4, "stream": True}
    async with raw.stream("POST", "/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-ratelimit-limit-requests"].isdigit()
        data = b"".join([chunk async for chunk in r.aiter_raw()])
    frames = [f for f in data.split(b"\n\n") if f and not f.startswith(b":")]
    assert frames[-1] == b"data: [DONE]"
    for frame in frames[:-1]:
        assert frame.startswith(b"data: {") and b"\n" not in frame and b"event:" not in frame
        assert json.loads(frame[6:])["object"] == "chat.completion.chunk"
    assert "usage" not in json.loads(frames[-2][6:])  # not asked for


async def test_json_mode_on_the_local_model_gives_json(oai: openai.AsyncOpenAI) -> None:
    chat = await oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a cat as a JSON object with a name."}],
        response_format={"type": "json_object"},
        max_tokens=48,
        temperature=0,
    )
    text = chat.choices[0].message.content or ""
    assert text.lstrip().startswith("{")
    if chat.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


async def test_seed_makes_sampling_repeatable(oai: openai.AsyncOpenAI) -> None:
    async def sample() -> str:
        chat = await oai.chat.completions.create(model=MODEL, messages=HI, max_tokens=8, temperature=1.2, seed=1234)
        return chat.choices[0].message.content or ""

    assert await sample() == await sample()


# -- legacy completions and models ------------------------------------------------------------------


async def test_completions_unary_and_stream(oai: openai.AsyncOpenAI, platform: RunningPlatform) -> None:
    completion = await oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6)
    assert completion.id.startswith("cmpl-") and completion.object == "text_completion"
    assert completion.choices[0].text and completion.usage is not None
    record = await stored(platform, record_id(completion.id))
    assert record.kind == "completion" and record.input == "Once upon a time"
    stream = await oai.completions.create(
        model=MODEL, prompt=["Once upon a time"], max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


async def test_models_list_and_retrieve(oai: openai.AsyncOpenAI) -> None:
    models = [m async for m in oai.models.list()]
    assert MODEL in [m.id for m in models]
    model = await oai.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model" and model.owned_by == "plutos"
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


# -- errors ---------------------------------------------------------------------------------------


async def test_bad_key_is_authentication_error(openai_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=openai_url, api_key="pk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HI)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key" and caught.value.type == "authentication_error"
    await client.close()


def model_not_found_body(model: str) -> dict[str, Any]:
    """OpenAI's own answer for a model it does not serve."""
    return {
        "error": {
            "message": f"The model `{model}` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


async def test_unknown_model_is_not_found_naming_model_as_openai_answers(
    oai: openai.AsyncOpenAI, raw: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model="gpt-nonexistent", messages=HI)
    assert caught.value.status_code == 404 and caught.value.body == model_not_found_body("gpt-nonexistent")["error"]
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model="gpt-nonexistent", messages=HI, stream=True)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.completions.create(model="gpt-nonexistent", prompt="Hi")
    assert caught.value.code == "model_not_found" and caught.value.type == "invalid_request_error"
    for path, body in (
        ("/chat/completions", {"model": "gpt-nonexistent", "messages": HI}),
        ("/completions", {"model": "gpt-nonexistent", "prompt": "Hi", "stream": True}),
    ):
        r = await raw.post(path, json=body)
        assert (r.status_code, r.json()) == (404, model_not_found_body("gpt-nonexistent")), r.text
    r = await raw.get("/models/gpt-nonexistent")
    assert (r.status_code, r.json()) == (404, model_not_found_body("gpt-nonexistent")), r.text
    # The reference's API keeps its own answer for the same model.
    r = await http.post("/process", json={"input": "hi", "model": "gpt-nonexistent"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"bogus": 1}, "bogus"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"n": 2}, "n"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"response_format": {"type": "json_schema"}}, "response_format.type"),
    ],
)
async def test_bad_parameters_are_400_naming_the_param(
    raw: httpx.AsyncClient, extra: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 2, **extra}
    r = await raw.post("/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": {
            "message": r.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_parameters",
        }
    }
    assert r.headers["x-request-id"].startswith("req_")


async def test_malformed_json_is_openai_shaped(raw: httpx.AsyncClient) -> None:
    r = await raw.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_parameters" and r.json()["error"]["param"] is None


async def test_rate_limited_is_rate_limit_error_with_retry_after(openai_url: str, platform: RunningPlatform) -> None:
    limited = await new_key(platform, plan="enterprise", name="openai-rpm", limits={"requests_per_minute": 1})
    client = openai.AsyncOpenAI(base_url=openai_url, api_key=limited.secret, max_retries=0)
    await fresh_minute(platform)  # both calls in one fixed window
    await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    await client.close()


async def test_sdk_retry_waits_for_our_retry_after(
    openai_url: str, platform: RunningPlatform, raw: httpx.AsyncClient
) -> None:
    """A concurrency 429 carries Retry-After: 1; the SDK's built-in retry waits that long (not its
    own shorter backoff) and then succeeds once the slot is free."""
    limited = await new_key(platform, plan="enterprise", name="openai-conc", limits={"concurrent_requests": 1})
    seen: list[tuple[int, str | None, float]] = []
    release = asyncio.Event()

    async def on_response(response: httpx.Response) -> None:
        seen.append((response.status_code, response.headers.get("retry-after"), time.monotonic()))
        if response.status_code == 429:
            release.set()

    auth = {"Authorization": f"Bearer {limited.secret}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 2000}
    async with httpx.AsyncClient(event_hooks={"response": [on_response]}, timeout=120) as hooked:
        # openai accepts an httpx.AsyncClient (is_legacy_httpx_async_client) but types httpx2's only.
        client = openai.AsyncOpenAI(
            base_url=openai_url,
            api_key=limited.secret,
            max_retries=2,
            http_client=hooked,  # type: ignore[arg-type]
        )
        async with raw.stream("POST", "/chat/completions", json={**body, "stream": True}, headers=auth) as holder:
            assert holder.status_code == 200
            retried = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1))
            await asyncio.wait_for(release.wait(), 60)
        # The holder's stream is closed: its slot frees, and the retry gets through.
        completion = await retried
    assert completion.choices[0].message.role == "assistant"
    assert [s for s, _, _ in seen] == [429, 200]
    retry_after = float(seen[0][1] or 0)
    assert retry_after >= 1
    assert seen[1][2] - seen[0][2] >= retry_after * 0.9  # the SDK slept at least our Retry-After


async def test_abandoned_stream_is_billed_cancelled_and_frees_its_slot(
    raw: httpx.AsyncClient, platform: RunningPlatform, key: CreatedKey
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a very long essay about the history of Rome."}],
        "max_tokens": 2000,
        "stream": True,
    }
    first: dict[str, Any] = {}
    async with raw.stream("POST", "/chat/completions", json=body) as r:
        lines = r.aiter_lines()
        seen = 0
        async for line in lines:
            if line.startswith("data: {"):
                first = first or json.loads(line[6:])
                seen += 1
                if seen == 3:
                    break
    record = await stored(platform, record_id(first["id"]))
    assert record.status == "cancelled"
    assert 3 <= record.completion_tokens < 500
    async with platform.runtime.sessions() as session:
        ledger = (await session.execute(select(LedgerEntry).where(LedgerEntry.record_id == record.id))).scalar_one()
    assert ledger.completion_tokens == record.completion_tokens
    await no_slots_held(platform, key.account_id)


# -- gRPC -----------------------------------------------------------------------------------------


async def test_the_same_service_over_grpc(platform: RunningPlatform, auth_md: tuple[tuple[str, str], ...]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.grpc_port}") as channel:
        stub = openai_stub(channel)
        say_hi = openai_pb2.ChatMessage(role="user", content=struct_pb2.Value(string_value="Say hi."))
        request = openai_pb2.CreateChatCompletionRequest(model=MODEL, messages=[say_hi], max_tokens=4)
        reply = await stub.CreateChatCompletion(request, metadata=auth_md)
        assert reply.id.startswith("chatcmpl-") and reply.choices[0].message.content
        chunks = [c async for c in stub.StreamChatCompletion(request, metadata=auth_md)]
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        models = await stub.ListModels(openai_pb2.OpenAIListModelsRequest(), metadata=auth_md)
        assert MODEL in [m.id for m in models.data]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateChatCompletion(request, metadata=(("authorization", "Bearer pk_nope"),))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        unknown = openai_pb2.CreateChatCompletionRequest(model="gpt-nonexistent", messages=[say_hi])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateChatCompletion(unknown, metadata=auth_md)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_paths_and_methods_under_openai_v1_answer_in_openais_format(raw: httpx.AsyncClient) -> None:
    r = await raw.get("/assistants")
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["code"] == "not_found"
    r = await raw.get("/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
