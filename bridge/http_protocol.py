"""The REST server's HTTP/1.1 connection protocol: uvicorn's httptools protocol with bounds on what a
client may make it hold before a request reaches the application.

- **Header size and count.** A request line plus headers larger than ``max_header_bytes``, or more
  than ``max_headers`` header lines, is answered ``431 headers_too_large`` and the connection closed
  as soon as it is known; at most one network read beyond the limit is ever held.
- **Header-read timeout.** A connection must deliver a request's complete headers within
  ``header_timeout`` seconds of opening (or of the request's first byte, on a kept-alive
  connection), else it is answered ``408 request_timeout`` and closed: a client sending one byte at
  a time cannot hold a connection, or a slot of memory, forever.
- **Malformed requests** (what uvicorn answers "Invalid HTTP request received." in plain text) get
  ``400 invalid_parameters`` in the envelope, then the connection is closed.
- **Idle timeout.** A kept-alive connection with no request in progress is closed after uvicorn's
  ``timeout_keep_alive`` (``http_idle_timeout``).

The answers are the API's error envelope (codes from core/errors.py's table).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from bridge.endpoints import Observe
from bridge.errors import envelope
from bridge.rejections import UNPARSED, Rejected, bounded_method
from bridge.sse_response import ON_DISCONNECT
from core.errors import ERRORS
from core.ids import new_request_id

LINGER_SECONDS = 1.0  # after a refusal, how long the client has to read it before the close


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 32 * 1024  # request line + header lines, bytes
    max_headers: int = 100  # header lines per request
    header_timeout: float = 10.0  # seconds to receive a request's complete headers
    idle_timeout: float = 5.0  # seconds a kept-alive connection may sit without a request


def bounded_protocol(
    limits: HttpLimits, *, observe: Observe | None = None, rejected: Rejected | None = None
) -> type[asyncio.Protocol]:
    """A uvicorn ``http=`` protocol class applying ``limits``; each refusal is counted through
    ``observe`` and reported through ``rejected`` (route ``unparsed``, see bridge/rejections.py)."""

    class Bounded(BoundedHttpProtocol):
        pass

    Bounded.limits = limits
    Bounded.observe = staticmethod(observe) if observe is not None else None
    Bounded.rejected = staticmethod(rejected) if rejected is not None else None
    return Bounded


class BoundedHttpProtocol(HttpToolsProtocol):
    limits = HttpLimits()
    observe: Observe | None = None
    rejected: Rejected | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request line and headers
        self._head_bytes = 0  # bytes read while the headers were incomplete
        self._head_size = 0  # request line + headers as parsed
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = 0.0  # loop time the current request's head began (or the connection)
        self._refused = False
        self._on_disconnect: Callable[[], None] | None = None
        self.pipeline = _Pipeline()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow._is_writable_event = _Event(self.flow._is_writable_event)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)
        callback, self._on_disconnect = self._on_disconnect, None
        if callback is not None and self.cycle is not None and not self.cycle.response_complete:
            callback()

    def _watch_disconnect(self, callback: Callable[[], None]) -> None:
        if self.cycle is not None and self.cycle.disconnected:  # lost before the response began
            self.loop.call_soon(callback)
            return
        self._on_disconnect = callback

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._over_limits(self._head_size):
                self._refuse_too_large()
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Headers still incomplete after this read: all of it was head.
        if self._in_head and self._over_limits(self._head_bytes):
            self._refuse_too_large()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request that is not valid HTTP/1.1 (a bad request line, header or
        ``Content-Length``, an unknown version), as the API's envelope with a request id instead
        of plain text."""
        self._refuse("invalid_parameters", "The request is not valid HTTP/1.1.", {})

    def _over_limits(self, size: int) -> bool:
        return size > self.limits.max_header_bytes or self._head_count > self.limits.max_headers

    def _refuse_too_large(self) -> None:
        self._refuse(
            "headers_too_large",
            f"Request headers exceed the limit of {self.limits.max_header_bytes} bytes "
            f"or {self.limits.max_headers} lines.",
            {"maxBytes": self.limits.max_header_bytes, "maxHeaders": self.limits.max_headers},
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._on_disconnect = None  # a new request on a kept-alive connection
        self.scope[ON_DISCONNECT] = self._watch_disconnect  # type: ignore[literal-required]
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()
        self._head_size = 0
        self._head_count = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._head_count <= self.limits.max_headers:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._over_limits(self._head_size):
            raise _HeadersTooLarge  # the parser stops; data_received answers 431
        self._in_head = False
        self._cancel_head_timer()
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:
            cycle.message_event = _Event(cycle.message_event)
            if self.scope["method"] != "HEAD":
                cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_started = self.loop.time()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport is None or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # never said anything: just close
            self.transport.close()
            return
        self._refuse(
            "request_timeout",
            f"The request's headers did not arrive within {self.limits.header_timeout:g} seconds.",
            {"timeoutSeconds": self.limits.header_timeout},
        )

    def _refuse(self, code: str, message: str, details: dict[str, Any]) -> None:
        self._cancel_head_timer()
        request_id = new_request_id()
        body = orjson.dumps(envelope(code, message, request_id, details))
        head = [
            STATUS_LINE[ERRORS[code].http_status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self._refused = True
        self._report(ERRORS[code].http_status, code, request_id)
        transport = self.transport
        transport.write(b"".join(head) + body)
        # A "lingering close": stop reading (what the client still sends stays in the kernel's
        # bounded buffer) and end our side, so the client reads the answer before the connection
        # is torn down; closing at once with unread input would reset it, answer and all.
        transport.pause_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _report(self, status: int, code: str, request_id: str) -> None:
        if self.observe is None and self.rejected is None:
            return
        method = bounded_method(None)  # the parser's method is not to be trusted once it failed
        if self.observe is not None:
            self.observe(UNPARSED, method, status, self.loop.time() - self._head_started)
        if self.rejected is not None:
            self.rejected(UNPARSED, method, status, code, request_id)


class _HeadersTooLarge(Exception):
    pass


# Memory per open connection (an SSE stream holds one for its whole life): uvicorn keeps a deque
# of pipelined requests and two asyncio.Events (its flow control's, the request cycle's), each
# with a deque of waiters; an empty deque takes 624 bytes (a block of 64 slots). These hold the
# same things in lists (56 bytes empty): rarely more than one waiter or pipelined request.


class _Pipeline(list[Any]):
    """uvicorn's pipelined requests: ``appendleft``, ``pop`` (the oldest) and truth, as its deque."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class _Event(asyncio.Event):
    """An ``asyncio.Event`` (taking over ``like``'s state) whose waiters are kept in a list."""

    def __init__(self, like: asyncio.Event) -> None:
        super().__init__()
        self._waiters: list[asyncio.Future[bool]] = []  # type: ignore[assignment]
        if like.is_set():
            self.set()


class HeadWithBody:
    """The transport as one request's response cycle sees it: a response head that announces a
    ``content-length`` (so the whole body follows at once: every JSON answer) is held back and
    leaves with the body's first write — one ``write`` (one system call, one TCP segment) instead
    of two. Other heads (chunked: SSE streams, which must show their head before the first event)
    and ``100 Continue`` pass straight through; ``close`` sends a held head first. Not for HEAD
    requests (no body write follows their head)."""

    __slots__ = ("_before_head", "_held", "_real")

    def __init__(self, real: Any) -> None:
        self._real = real
        self._held: bytes | None = None
        self._before_head = True

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        elif self._before_head and not data.startswith(b"HTTP/1.1 100 "):
            self._before_head = False
            if b"\r\ncontent-length: " in data:
                self._held = data
                return
        self._real.write(data)

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._real.write(held)
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
