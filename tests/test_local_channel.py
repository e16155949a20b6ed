"""The bridge's in-process transport: the outcomes a gRPC client would see, and REST answers that
match the loopback gRPC transport's byte for byte (but for ids and timings).

The first tests drive ``LocalChannel`` with small handlers of their own, to reach what the real
services rarely do on cue (a deadline mid-call, a cancelled stream, a slow reader); the last ones
send the same REST requests through both transports of the running platform."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from plutos.v1 import processing_pb2

from bridge.app import create_app
from bridge.transports.local import STREAM_BUFFER, LocalChannel
from gateway.app import BRIDGE_CHANNEL_OPTIONS, RunningPlatform
from server.interceptors.chain import InterceptorChain
from server.keys import CreatedKey
from tests.conftest import MODEL, error_trailers
from tests.sse import parse_frame

UNARY = "/test.Local/Unary"
STREAM = "/test.Local/Stream"


class Handlers:
    """Behaviour chosen per request through its ``input``."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.produced = 0

    async def Unary(self, request: processing_pb2.ProcessRequest, context: Any) -> processing_pb2.ProcessResponse:
        self.events.append(f"metadata {dict(context.invocation_metadata())}")
        context.add_done_callback(lambda _: self.events.append("done callback"))
        try:
            if request.input == "abort":
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "no more", trailing_metadata=(("retry-after", "7"),)
                )
            if request.input == "slow":
                remaining = context.time_remaining()
                self.events.append(f"remaining {remaining is not None and 0 < remaining <= 0.2}")
                await asyncio.sleep(10)
            if request.input == "raise":
                raise ValueError("boom")
            context.set_trailing_metadata((("x-request-id", "req_test"),))
            return processing_pb2.ProcessResponse(output=request.input.upper(), id="proc_1")
        except asyncio.CancelledError:
            self.events.append("handler cancelled")
            raise

    async def Stream(
        self, request: processing_pb2.StreamRequest, context: Any
    ) -> AsyncIterator[processing_pb2.StreamResponse]:
        context.add_done_callback(lambda _: self.events.append("done callback"))
        if request.input == "refuse":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        await context.send_initial_metadata((("x-request-id", "req_stream"),))
        try:
            for n in range(1000 if request.input == "flood" else 3):
                self.produced += 1
                yield processing_pb2.StreamResponse(chunk=processing_pb2.StreamChunk(chunk="partial", output=str(n)))
                if request.input == "fail" and n == 1:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "upstream gone")
                if request.input == "hang":
                    await asyncio.sleep(10)
        finally:
            self.events.append("stream closed")
        context.set_trailing_metadata((("x-done", "yes"),))


def add_to_server(servicer: Handlers, server: Any) -> None:
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(servicer.Unary),
        "Stream": grpc.unary_stream_rpc_method_handler(servicer.Stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Local", handlers),))
    server.add_registered_method_handlers("test.Local", handlers)


@pytest.fixture
def local() -> tuple[LocalChannel, Handlers]:
    handlers = Handlers()
    return LocalChannel(InterceptorChain([]), [(add_to_server, handlers)]), handlers


def request(text: str) -> processing_pb2.ProcessRequest:
    return processing_pb2.ProcessRequest(input=text, model="m")


async def test_unary_answer_metadata_and_done_callbacks(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    call = channel.unary_unary(UNARY)(request("hi"), metadata=(("authorization", "Bearer x"),))
    reply = await call
    assert reply.output == "HI"
    assert tuple(await call.trailing_metadata()) == (("x-request-id", "req_test"),)
    assert await call.code() == grpc.StatusCode.OK
    await asyncio.sleep(0)
    assert handlers.events == ["metadata {'authorization': 'Bearer x'}", "done callback"]


async def test_abort_is_an_rpc_error_with_its_status_and_trailers(local: tuple[LocalChannel, Handlers]) -> None:
    channel, _ = local
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(UNARY)(request("abort"))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "no more"
    assert list(error_trailers(caught.value)) == [("retry-after", "7")]


async def test_an_unexpected_exception_is_unknown_not_a_crash(local: tuple[LocalChannel, Handlers]) -> None:
    channel, _ = local
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(UNARY)(request("raise"))
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert "boom" in (caught.value.details() or "")


async def test_deadline_cancels_the_handler(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(UNARY)(request("slow"), timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0)
    assert "remaining True" in handlers.events
    assert handlers.events[-2:] == ["handler cancelled", "done callback"]


async def test_cancelling_the_call_cancels_the_handler(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    call = channel.unary_unary(UNARY)(request("slow"))
    await asyncio.sleep(0.05)
    assert call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await call.code() == grpc.StatusCode.CANCELLED
    await asyncio.sleep(0)
    assert handlers.events[-2:] == ["handler cancelled", "done callback"]


async def test_cancelling_the_caller_cancels_the_handler(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    caller = asyncio.ensure_future(channel.unary_unary(UNARY)(request("slow")))
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)
    assert handlers.events[-2:] == ["handler cancelled", "done callback"]


async def test_stream_headers_messages_trailers_then_eof(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    call = channel.unary_stream(STREAM)(processing_pb2.StreamRequest(input="ok"))
    assert tuple(await call.initial_metadata()) == (("x-request-id", "req_stream"),)
    outputs = []
    while (message := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        outputs.append(message.chunk.output)
    assert outputs == ["0", "1", "2"]
    assert await call.code() == grpc.StatusCode.OK
    assert tuple(await call.trailing_metadata()) == (("x-done", "yes"),)
    assert handlers.events == ["stream closed", "done callback"]


async def test_stream_failing_before_its_headers_is_trailers_only(local: tuple[LocalChannel, Handlers]) -> None:
    channel, _ = local
    call = channel.unary_stream(STREAM)(processing_pb2.StreamRequest(input="refuse"))
    assert tuple(await call.initial_metadata()) == ()
    assert call.done()
    assert await call.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await call.details() == "not yours"


async def test_stream_failing_midway_gives_its_messages_then_the_error(local: tuple[LocalChannel, Handlers]) -> None:
    channel, _ = local
    call = channel.unary_stream(STREAM)(processing_pb2.StreamRequest(input="fail"))
    assert (await call.read()).chunk.output == "0"
    assert (await call.read()).chunk.output == "1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "upstream gone"


async def test_cancelling_a_stream_closes_its_handler(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    call = channel.unary_stream(STREAM)(processing_pb2.StreamRequest(input="hang"))
    assert (await call.read()).chunk.output == "0"
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED
    await asyncio.sleep(0)
    assert handlers.events == ["stream closed", "done callback"]


async def test_a_stream_runs_at_most_a_buffer_ahead_of_its_reader(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    call = channel.unary_stream(STREAM)(processing_pb2.StreamRequest(input="flood"))
    await call.read()
    await asyncio.sleep(0.05)
    assert handlers.produced <= STREAM_BUFFER + 1
    read = 1
    while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
        read += 1
    assert read == handlers.produced == 1000


async def test_close_gives_running_calls_their_grace_then_cancels_them(local: tuple[LocalChannel, Handlers]) -> None:
    channel, handlers = local
    quick = channel.unary_unary(UNARY)(request("quick"))
    slow = channel.unary_unary(UNARY)(request("slow"))
    await channel.close(grace=0.1)
    assert (await quick).output == "QUICK"
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert "handler cancelled" in handlers.events


def test_an_unknown_method_is_refused_when_the_bridge_is_built(local: tuple[LocalChannel, Handlers]) -> None:
    channel, _ = local
    with pytest.raises(KeyError):
        channel.unary_unary("/test.Local/Nope")
    with pytest.raises(TypeError):
        channel.unary_unary(STREAM)


# -- the platform's REST answers over both transports ------------------------------------------------

_VARIABLE = re.compile(rb'"(req|proc)_[A-Za-z0-9]+"|"(processingTime|createdAt)":[^,}]+')


def _same_shape(body: bytes) -> bytes:
    return _VARIABLE.sub(b"<v>", body)


async def test_rest_answers_are_the_same_over_both_transports(platform: RunningPlatform, key: CreatedKey) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{platform.grpc_port}", options=BRIDGE_CHANNEL_OPTIONS)
    apps = {"local": create_app(platform.local_channel), "grpc": create_app(channel)}
    good = {"Authorization": f"Bearer {key.secret}"}
    cases: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/process", {"input": "Say hi.", "model": MODEL, "options": {"maxTokens": 5, "temperature": 0}}, good),
        ("POST", "/process", {"input": "Hi", "model": "no-such-model"}, good),
        ("POST", "/process", {"input": 5, "model": MODEL}, good),
        ("POST", "/process", {"input": "Hi", "model": MODEL}, {"Authorization": "Bearer pk_live_wrong"}),
        ("POST", "/process", {"input": "Hi", "model": MODEL}, {}),
        ("GET", "/process/proc_doesnotexist", None, good),
        ("GET", "/models", None, good),
        ("POST", "/batch", {"inputs": [], "model": MODEL}, good),
        ("POST", "/stream", {"input": "Hi", "model": "no-such-model"}, good),
        ("POST", "/stream", {"input": "Say hi.", "model": MODEL, "options": {"maxTokens": 4, "temperature": 0}}, good),
    ]
    # One instant for the whole comparison: X-RateLimit-Reset must not differ because a minute ended
    # between the two transports' calls.
    frozen = float((int(time.time()) // 60 + 1) * 60)
    platform.runtime.limiter.clock = lambda: frozen
    try:
        for method, path, body, headers in cases:
            answers = {}
            for name, app in apps.items():
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b/v1") as c:
                    r = await c.request(method, path, json=body, headers={**headers, "X-Request-Id": "req_same"})
                # Each call has its own record id: only whether X-Process-Id is there must agree.
                skip = ("x-ratelimit-remaining", "content-length", "x-process-id")
                shown = {k: v for k, v in r.headers.items() if k not in skip}
                shown["x-process-id"] = "present" if "x-process-id" in r.headers else "absent"
                answers[name] = (r.status_code, shown, _same_shape(r.content))
            assert answers["local"] == answers["grpc"], (method, path, body)
            if path == "/stream" and answers["local"][0] == 200:
                last = answers["local"][2].rstrip(b"\n").split(b"\n\n")[-1]
                assert parse_frame(last).event == "complete"
    finally:
        del platform.runtime.limiter.clock  # back to the class's wall clock
        await channel.close(None)
