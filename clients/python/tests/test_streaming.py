"""POST /stream: SSE frames become StreamChunk... StreamComplete; errors and early exits are handled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plutos_ai import (
    APIConnectionError,
    AuthenticationError,
    GatewayTimeoutError,
    StreamChunk,
    StreamComplete,
    UpstreamError,
    Usage,
)
from plutos_ai._sse import ServerSentEvent, SSEDecoder, SSEParser
from plutos_testing import Recorder, error_response, make_async_client, make_client, sequence

COMPLETE = {
    "chunk": "final",
    "output": "Hello world!",
    "usage": {"promptTokens": 3, "completionTokens": 3, "totalTokens": 6},
    "id": "proc_00000000000000aa",
    "model": "m",
    "createdAt": "2024-01-01T12:00:00Z",
    "processingTime": 42,
}


def frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


REFERENCE_STREAM = (
    frame("chunk", {"chunk": "partial", "output": "Hello"})
    + frame("chunk", {"chunk": "partial", "output": " world"})
    + frame("chunk", {"chunk": "partial", "output": "!"})
    + frame("complete", COMPLETE)
)


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in small pieces, which records how much was read and whether it was closed."""

    def __init__(self, text: str, piece: int = 7) -> None:
        data = text.encode()
        self.pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
        self.sent = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(body: Body) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)


def test_reference_stream_yields_chunks_then_the_final_result() -> None:
    rec = Recorder()
    body = Body(REFERENCE_STREAM)
    client = make_client(lambda r: sse_response(body), rec)
    events = list(client.stream(input="Say hello", model="m", options={"max_tokens": 5}))

    request = rec.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/stream")
    assert request.headers["accept"] == "text/event-stream"
    assert rec.json() == {"input": "Say hello", "model": "m", "options": {"maxTokens": 5}}

    assert events[:-1] == [StreamChunk("Hello"), StreamChunk(" world"), StreamChunk("!")]
    final = events[-1]
    assert isinstance(final, StreamComplete)
    assert final.chunk == "final" and final.is_final
    assert final.output == "".join(e.output for e in events[:-1])
    assert final.usage == Usage(3, 3, 6)
    assert (final.id, final.model, final.processing_time) == ("proc_00000000000000aa", "m", 42)
    assert body.closed


def test_context_manager_and_final_attribute() -> None:
    client = make_client(lambda r: sse_response(Body(REFERENCE_STREAM)))
    with client.stream(input="x", model="m") as stream:
        assert list(stream.text()) == ["Hello", " world", "!"]
    assert stream.final is not None and stream.final.output == "Hello world!"


def test_until_done_returns_the_complete_event() -> None:
    client = make_client(lambda r: sse_response(Body(REFERENCE_STREAM)))
    assert client.stream(input="x", model="m").until_done().usage.total_tokens == 6


def test_crlf_comments_multiline_data_and_unknown_events() -> None:
    text = (
        ": keep-alive\r\n\r\n"
        "event: ping\r\ndata: {}\r\n\r\n"
        'event: chunk\r\ndata: {"chunk": "partial",\r\ndata: "output": "a"}\r\n\r\n'
        + frame("complete", {**COMPLETE, "output": "a"}).replace("\n", "\r\n")
    )
    events = list(make_client(lambda r: sse_response(Body(text, piece=3))).stream(input="x", model="m"))
    assert [e.output for e in events] == ["a", "a"]


def test_a_final_event_without_trailing_blank_line_is_discarded() -> None:
    # As the SSE standard says: the stream ended before the event did, so it ended early.
    text = frame("chunk", {"output": "a"}) + frame("complete", COMPLETE).rstrip("\n")
    stream = make_client(lambda r: sse_response(Body(text))).stream(input="x", model="m")
    assert next(stream) == StreamChunk("a")
    with pytest.raises(APIConnectionError):
        next(stream)


def test_error_event_after_chunks_raises_its_class() -> None:
    body = Body(
        frame("chunk", {"chunk": "partial", "output": "Hel"})
        + frame(
            "error", {"error": {"code": "upstream_error", "message": "backend died", "requestId": "req_s"}}
        )
    )
    stream = make_client(lambda r: sse_response(body)).stream(input="x", model="m")
    assert next(stream) == StreamChunk("Hel")
    with pytest.raises(UpstreamError) as info:
        next(stream)
    assert info.value.request_id == "req_s"
    assert info.value.message == "backend died"
    assert body.closed


def test_error_event_without_request_id_takes_the_response_header() -> None:
    body = Body(frame("error", {"error": {"code": "timeout", "message": "too slow"}}))
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream", "x-request-id": "req_hdr"}, stream=body
    )
    with pytest.raises(GatewayTimeoutError) as info:
        make_client(lambda r: response).stream(input="x", model="m").until_done()
    assert info.value.request_id == "req_hdr"
    assert info.value.status_code == 504


def test_stream_cut_before_complete_is_a_connection_error() -> None:
    body = Body(frame("chunk", {"chunk": "partial", "output": "Hel"}))
    with pytest.raises(APIConnectionError, match="complete"):
        list(make_client(lambda r: sse_response(body)).stream(input="x", model="m"))


def test_leaving_early_closes_the_connection() -> None:
    body = Body(REFERENCE_STREAM * 50, piece=16)
    client = make_client(lambda r: sse_response(body))
    with client.stream(input="x", model="m") as stream:
        first = next(stream)
    assert first == StreamChunk("Hello")
    assert body.closed
    assert body.sent < len(body.pieces)


def test_http_error_before_streaming_raises_on_entry_without_retry() -> None:
    rec = Recorder()
    client = make_client(lambda r: error_response(401, "invalid_api_key", "bad key"), rec)
    stream = client.stream(input="x", model="m")
    assert rec.requests == []  # nothing is sent until entered or iterated
    with pytest.raises(AuthenticationError), stream:
        pass
    assert len(rec.requests) == 1


def test_stream_is_retried_when_unavailable_before_it_starts() -> None:
    rec = Recorder()
    client = make_client(
        sequence(error_response(503, "service_unavailable"), sse_response(Body(REFERENCE_STREAM))), rec
    )
    assert client.stream(input="x", model="m").until_done().output == "Hello world!"
    assert len(rec.requests) == 2


def test_sse_decoder() -> None:
    decoder = SSEDecoder()
    out = [decoder.decode(line) for line in ["id: 7", "event: chunk", "data: a", "data: b", "retry: 10", ""]]
    assert out[-1] == ServerSentEvent(event="chunk", data="a\nb", id="7", retry=10)
    assert decoder.decode("") is None


async def test_async_stream() -> None:
    rec = Recorder()
    body = Body(REFERENCE_STREAM)
    client = make_async_client(lambda r: sse_response(body), rec)
    events = [event async for event in client.stream(input="x", model="m")]
    assert [e.output for e in events] == ["Hello", " world", "!", "Hello world!"]
    assert isinstance(events[-1], StreamComplete)
    assert body.closed


async def test_async_stream_early_exit_closes_the_connection() -> None:
    body = Body(REFERENCE_STREAM * 50, piece=16)
    client = make_async_client(lambda r: sse_response(body))
    async with client.stream(input="x", model="m") as stream:
        async for event in stream:
            assert event == StreamChunk("Hello")
            break
    assert body.closed
    assert body.sent < len(body.pieces)


async def test_async_stream_error_event() -> None:
    body = Body(frame("error", {"error": {"code": "upstream_error", "message": "boom"}}))
    client = make_async_client(lambda r: sse_response(body))
    with pytest.raises(UpstreamError):
        async with client.stream(input="x", model="m") as stream:
            await stream.until_done()


async def test_async_stream_http_error() -> None:
    client = make_async_client(lambda r: error_response(401, "invalid_api_key"))
    with pytest.raises(AuthenticationError):
        async for _ in client.stream(input="x", model="m"):
            pass


# -- the shared SSE corpus (clients/sse_corpus.json): the gateway and every SDK parse it alike --------

_CORPUS = json.loads((Path(__file__).resolve().parents[2] / "sse_corpus.json").read_text())["cases"]


def _parse(chunks: list[bytes]) -> list[dict[str, str]]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)] + parser.end()
    return [{"event": e.event, "data": e.data} for e in events]


@pytest.mark.parametrize("case", _CORPUS, ids=[c["name"] for c in _CORPUS])
def test_sse_corpus(case: dict[str, Any]) -> None:
    raw = case["stream"].encode()
    assert _parse([raw]) == case["events"]
    for cut in range(1, len(raw)):
        assert _parse([raw[:cut], raw[cut:]]) == case["events"], cut
    assert _parse([raw[i : i + 1] for i in range(len(raw))]) == case["events"]
