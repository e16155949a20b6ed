"""Streaming answers: an RPC's messages as server-sent events, with keep-alive comments and the
client's disconnect cancelling the call."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import grpc
from starlette.responses import Response

from bridge.errors import from_rpc_error
from bridge.surface import REFERENCE, Surface

# The ASGI scope key of a function taking a callback that the server calls, once, if the connection
# is lost before the response is complete (bridge/http_protocol.py sets it).
ON_DISCONNECT = "plutos.on_disconnect"


class SseResponse(Response):
    """The RPC's messages as server-sent events: ``event: <oneof case>\ndata: <json>\n\n`` each,
    ``event: error`` if the call fails mid-stream, ``: keep-alive`` comments after
    ``keepalive_seconds`` of silence. A client that disconnects cancels the RPC, and so the
    generation (and any upstream request) behind it.

    JSON is written as the reference shows it (``{"chunk": "partial", ...}``), ASCII-only so a
    client that decodes each network read on its own never splits a character.

    Messages are read straight from the call. Served by the gateway's HTTP protocol
    (:mod:`bridge.http_protocol`), the connection's loss is reported by a callback and the keep-alive
    comments come from a timer: one task per stream. Elsewhere a helper task per stream writes the
    keep-alive comments and watches for the disconnect (Starlette's StreamingResponse runs an anyio
    task group per response, and reading with a timeout needs a task and an ``asyncio.wait`` per
    message, since cancelling a read cancels the RPC)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        call: Any,
        oneof_name: str | None,
        request_id: str,
        keepalive_seconds: float,
        headers: dict[str, str],
        surface: Surface = REFERENCE,
    ) -> None:
        self.status_code = 200
        self.surface = surface
        self.background = None
        self.call = call
        self.oneof_name = oneof_name
        self.request_id = request_id
        self.keepalive_seconds = keepalive_seconds
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-type", b"text/event-stream; charset=utf-8"))  # as StreamingResponse's
        self.raw_headers = raw
        self._last_sent = 0.0
        self._client_gone = False
        self._timer: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Future[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        call = self.call
        helper: asyncio.Future[None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            self.raw_headers = []  # sent: not kept for the stream's lifetime (~1 KiB per open stream)
            self._last_sent = loop.time()
            watch = scope.get(ON_DISCONNECT)
            streaming = asyncio.current_task()
            if watch is not None and streaming is not None:
                # The server tells us when the connection is lost, and a timer sends the keep-alive
                # comments: no task per stream besides this one.
                watch(partial(self._left, streaming))
                self._timer = loop.call_at(self._last_sent + self.keepalive_seconds, self._keepalive_due, send)
            else:
                helper = asyncio.ensure_future(self._keepalive_and_watch(receive, send, streaming))
            # In process, the messages the handler produced while this task waited (for the client
            # to take the previous write, or for the CPU) go out in one write: every event is still
            # sent, in order, but a stream that fell behind costs one send, not one per event.
            read_buffered = getattr(call, "read_buffered", None)
            try:
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                        if self.surface.sse_done:
                            await send({"type": "http.response.body", "body": self.surface.sse_done, "more_body": True})
                        break
                    frame = self._frame(message)
                    if read_buffered is not None and (waiting := read_buffered()):
                        frames = [f for f in (frame, *map(self._frame, waiting)) if f is not None]
                        frame = b"".join(frames) if frames else None
                    if frame is not None:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                        self._last_sent = loop.time()
            except grpc.aio.AioRpcError as err:
                kind, text, details = from_rpc_error(err)
                error = self.surface.frame("error", self.surface.error_body(kind.code, text, self.request_id, details))
                await send({"type": "http.response.body", "body": error, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            # The client left and the helper cancelled this task: nobody reads the rest.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            if helper is not None:
                helper.cancel()
            if self._timer is not None:
                self._timer.cancel()
            if self._pinging is not None:
                self._pinging.cancel()
            # The client left (or we are done): cancelling the RPC stops generation server-side.
            call.cancel()

    def _left(self, streaming: asyncio.Task[Any]) -> None:
        """The client's connection is gone: stop streaming (and so cancel the call)."""
        self._client_gone = True
        streaming.cancel()

    def _keepalive_due(self, send: Any) -> None:
        loop = asyncio.get_running_loop()
        due = self._last_sent + self.keepalive_seconds
        if due > loop.time():  # something was sent since: wait from then
            self._timer = loop.call_at(due, self._keepalive_due, send)
        else:
            self._timer = None
            self._pinging = asyncio.ensure_future(self._ping(send))

    async def _ping(self, send: Any) -> None:
        try:
            await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
        except Exception:  # the response ended while this waited to write (flow control)
            return
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        self._pinging = None
        self._timer = loop.call_at(self._last_sent + self.keepalive_seconds, self._keepalive_due, send)

    def _frame(self, message: Any) -> bytes | None:
        event = "message"
        payload: Any = message
        if self.oneof_name is not None:
            case = message.WhichOneof(self.oneof_name)
            if case is None:
                return None
            event, payload = case, getattr(message, case)
        return self.surface.frame(event, self.surface.to_obj(payload))

    async def _keepalive_and_watch(self, receive: Any, send: Any, streaming: asyncio.Task[Any] | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last_sent + self.keepalive_seconds - loop.time()
            if wait <= 0:
                try:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                except Exception:  # the response ended while this waited to write (flow control)
                    return
                self._last_sent = loop.time()
                continue
            try:
                async with asyncio.timeout(wait):
                    message = await receive()
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                self._client_gone = True
                if streaming is not None:
                    streaming.cancel()
                return
