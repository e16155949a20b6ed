"""A fault injector: a small OpenAI-compatible upstream (Starlette + uvicorn on a loopback port).

It is NOT a stand-in for a real inference server (the tests use llama-cpp-python's own server for
that); it produces the failures a real server cannot be made to produce on demand: 500s, 429s with
``Retry-After``, bad JSON, a connection dropped mid-stream, silence, and it records whether the
gateway closed each request early (the proof that cancellation reaches the upstream).

The ``model`` field of the request picks the behaviour; the user message identifies the request in
:attr:`FaultUpstream.calls`, so each test looks up its own calls by a unique input.

Model ``script`` answers as told per input: ``upstream.script(text, Fault(...))`` sets the status,
headers, usage (any JSON, e.g. ``3000000000`` or ``"12"``), content type (a JSON completion to a
streaming request), SSE framing (CRLF, CR-only, one event's data over several ``data:`` lines,
comments, ``event:``/``id:``/``retry:`` fields) and the text pieces (NUL bytes, broken UTF-8 split
points) of the answer to the request whose user message is ``text``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.app import reuseport_socket

MOCK_TEXT = ["Hello", " from", " the", " mock"]
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


@dataclass
class Call:
    model: str
    key: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    outcome: str = "open"  # open | completed | disconnected | failed


FRAMINGS = ("lf", "crlf", "cr", "split-data", "fields")


@dataclass
class Fault:
    """How model ``script`` answers one input.

    ``status`` other than 200 answers ``{"error": ...}`` with ``headers``. ``usage`` is sent as is
    (last chunk of a stream, or the completion's ``usage``); None sends none. ``as_json`` answers a
    streaming request with one ``application/json`` completion (``content_type`` overrides the
    header). ``framing``: ``lf`` (``\n\n``), ``crlf``, ``cr`` (CR-only line ends), ``split-data``
    (each event's JSON split over two ``data:`` lines), ``fields`` (comments, ``event:``, ``id:``
    and ``retry:`` lines around each event). ``byte_chunks`` sends the stream in pieces of that many
    bytes (splitting lines, CRLF pairs and UTF-8 characters across reads)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[str] = field(default_factory=lambda: list(MOCK_TEXT))
    usage: Any = None
    as_json: bool = False
    content_type: str | None = None
    framing: str = "lf"
    byte_chunks: int = 0
    finish_reason: str = "stop"
    pause: float = 0.0  # seconds between the stream's chunks


class FaultUpstream:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.scripts: dict[str, Fault] = {}
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, key: str, fault: Fault) -> str:
        """Model ``script`` answers the input ``key`` as ``fault`` says; returns ``key``."""
        self.scripts[key] = fault
        return key

    def calls_for(self, key: str) -> list[Call]:
        return [c for c in self.calls if c.key == key]

    async def wait_for_outcome(self, key: str, outcome: str, within: float = 10.0) -> Call | None:
        """The first call for ``key`` that ended with ``outcome``, waiting up to ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for call in self.calls_for(key):
                if call.outcome == outcome:
                    return call
            await asyncio.sleep(0.05)
        return None

    async def start(self) -> None:
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        sock = reuseport_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)

    # -- the upstream -----------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model"))
        key = str(body["messages"][-1]["content"])
        call = Call(model=model, key=key, body=body, headers=dict(request.headers))
        self.calls.append(call)
        attempt = len(self.calls_for(key))
        rid = {"x-request-id": f"mock-{model}-{attempt}"}
        stream = bool(body.get("stream"))

        if model == "script":
            call.outcome = "completed"
            return self._scripted(self.scripts.get(key) or Fault(), stream, rid)
        if model == "fail-500":
            call.outcome = "failed"
            return JSONResponse({"error": {"message": "boom (secret-ish detail)"}}, 500, headers=rid)
        if model == "rate-429" or (model == "rate-429-once" and attempt == 1):
            call.outcome = "failed"
            return JSONResponse({"error": {"message": "slow down"}}, 429, headers={**rid, "retry-after": "1"})
        if model == "unavailable-503-once" and attempt == 1:
            call.outcome = "failed"
            return JSONResponse({"error": {"message": "warming up"}}, 503, headers=rid)
        if model == "bad-json":
            call.outcome = "completed"
            if stream:
                return StreamingResponse(
                    _aiter([b'data: {"choices": [{"delta": {"content": "x"\n\n']),
                    media_type="text/event-stream",
                    headers=rid,
                )
            return Response(b"{not json", media_type="application/json", headers=rid)
        if model == "slow":  # says nothing for 30 s, watching for the gateway to give up
            for _ in range(600):
                if await request.is_disconnected():
                    call.outcome = "disconnected"
                    return Response(status_code=499)
                await asyncio.sleep(0.05)
            call.outcome = "completed"
            return JSONResponse(_completion(model, "too late"), headers=rid)
        if model == "sleep-1":  # answers normally after a second: slower than an impatient client
            await asyncio.sleep(1.0)
            if not stream:
                call.outcome = "completed"
                return JSONResponse(_completion(model, "".join(MOCK_TEXT)), headers=rid)
            return self._sse(call, model, MOCK_TEXT, headers=rid)
        if model == "echo":
            seen = {
                "body": body,
                "authorization": request.headers.get("authorization"),
                "x-client-request-id": request.headers.get("x-client-request-id"),
            }
            pieces = [json.dumps(seen)]
            usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            if not stream:
                call.outcome = "completed"
                return JSONResponse(_completion(model, pieces[0], usage), headers=rid)
            return self._sse(call, model, pieces, usage=usage, headers=rid)
        if model == "error-event":  # an error object in the stream after one piece, in one write
            call.outcome = "completed"
            frames = [
                _event({"choices": [{"index": 0, "delta": {"content": "half"}, "finish_reason": None}]}),
                b'data: {"error": {"message": "model crashed", "code": 500}}\n\n',
            ]
            return StreamingResponse(_aiter([b"".join(frames)]), media_type="text/event-stream", headers=rid)
        if model == "cut-short":  # a well-formed stream that ends without finish_reason or [DONE]
            call.outcome = "completed"
            frames = [_event({"choices": [{"index": 0, "delta": {"content": "half"}, "finish_reason": None}]})]
            return StreamingResponse(_aiter(frames), media_type="text/event-stream", headers=rid)
        if model == "tool-call":  # calls get_weather(city="Paris"), its arguments streamed in two fragments
            call.outcome = "completed"
            if not stream:
                answer = _completion(model, "")
                answer["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
                answer["choices"][0]["finish_reason"] = "tool_calls"
                return JSONResponse(answer, headers=rid)
            head = {"index": 0, "id": TOOL_CALL["id"], "type": "function"}
            frames = [
                _event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}),
                _event(
                    {
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [
                                        {**head, "function": {"name": "get_weather", "arguments": '{"city": '}}
                                    ]
                                },
                            }
                        ]
                    }
                ),
                _event(
                    {
                        "choices": [
                            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}
                        ]
                    }
                ),
                _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
                b"data: [DONE]\n\n",
            ]
            return StreamingResponse(_aiter(frames), media_type="text/event-stream", headers=rid)
        if model == "die-after-3":
            return self._sse(call, model, ["one", " two", " three"], die=True, headers=rid)
        if model == "drip":  # 200 pieces, one every 50 ms: long enough to be cancelled
            return self._sse(call, model, [f" w{i}" for i in range(200)], pause=0.05, headers=rid)
        if model == "stall-after-1":
            return self._sse(call, model, ["first", " second"], pause=30.0, headers=rid)
        # "ok" and every recovering model once it recovers
        if not stream:
            call.outcome = "completed"
            return JSONResponse(_completion(model, "".join(MOCK_TEXT)), headers=rid)
        return self._sse(call, model, MOCK_TEXT, headers=rid)

    def _scripted(self, fault: Fault, stream: bool, rid: dict[str, str]) -> Response:
        headers = {**rid, **fault.headers}
        if fault.status != 200:
            return JSONResponse({"error": {"message": "scripted failure"}}, fault.status, headers=headers)
        text = "".join(fault.pieces)
        if not stream or fault.as_json:
            answer = _completion("script", text)
            answer["choices"][0]["finish_reason"] = fault.finish_reason
            if fault.usage is not None:
                answer["usage"] = fault.usage
            body = json.dumps(answer).encode()
            return Response(body, headers=headers, media_type=fault.content_type or "application/json")
        objects: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        objects += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in fault.pieces]
        objects.append({"choices": [{"index": 0, "delta": {}, "finish_reason": fault.finish_reason}]})
        if fault.usage is not None:
            objects.append({"choices": [], "usage": fault.usage})
        payload = b"".join(frame_event(json.dumps(o), fault.framing) for o in objects)
        payload += frame_event("[DONE]", fault.framing)
        size = fault.byte_chunks or len(payload)
        if fault.pause:  # one event per chunk, paced
            chunks = [frame_event(json.dumps(o), fault.framing) for o in objects]
            chunks.append(frame_event("[DONE]", fault.framing))
        else:
            chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
        media_type = fault.content_type or "text/event-stream"
        return StreamingResponse(_aiter(chunks, fault.pause), headers=headers, media_type=media_type)

    def _sse(
        self,
        call: Call,
        model: str,
        pieces: list[str],
        *,
        usage: dict[str, int] | None = None,
        pause: float = 0.0,
        die: bool = False,
        headers: dict[str, str],
    ) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            try:
                yield _event({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
                for i, piece in enumerate(pieces):
                    if i and pause:
                        await asyncio.sleep(pause)
                    yield _event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                if die:
                    call.outcome = "failed"
                    raise RuntimeError("fault injector: dropping the connection mid-stream")
                yield _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if usage is not None:
                    yield _event({"choices": [], "usage": usage})
                yield b"data: [DONE]\n\n"
                call.outcome = "completed"
            finally:
                if call.outcome == "open":
                    call.outcome = "disconnected"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def frame_event(data: str, framing: str = "lf") -> bytes:
    """One SSE event carrying ``data``, framed as ``framing`` (see :class:`Fault`)."""
    if framing == "split-data" and "," in data:
        # Two data lines, cut after a comma: they join with "\n", which JSON takes as whitespace.
        cut = data.index(",") + 1
        lines = [f"data: {data[:cut]}", f"data:{data[cut:]}"]
    elif framing == "fields":
        lines = [": a comment", "event: message", "id: 7", "retry: 1000", f"data: {data}"]
    else:
        lines = [f"data: {data}"]
    end = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}.get(framing, "\n")
    return ("".join(line + end for line in lines) + end).encode()


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"object": "chat.completion.chunk", **obj}).encode() + b"\n\n"


async def _aiter(items: list[bytes], pause: float = 0.0) -> AsyncIterator[bytes]:
    for i, item in enumerate(items):
        if i and pause:
            await asyncio.sleep(pause)
        yield item


def _completion(model: str, text: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


@pytest.fixture(scope="module")
async def faults() -> AsyncIterator[FaultUpstream]:
    """A fault injector of the test module's own (this is a pytest plugin, registered in
    tests/conftest.py)."""
    upstream = FaultUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()
