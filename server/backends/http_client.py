"""A small HTTP/1.1 client for upstream calls: asyncio protocol + httptools (llhttp), keep-alive pool.

Why not aiohttp: on the gateway's hot path (one POST to ``/chat/completions`` per call, its answer
read as it arrives) aiohttp spent about as much CPU per call as the rest of the gateway's own work
(request objects, header multidicts, timer contexts per read, the payload registry). This client
does only what an upstream call needs — one request per connection at a time, ``Content-Length``
bodies, chunked or sized or read-until-close answers, TLS — and costs a fraction of that
(bench/UPSTREAM_RESULTS.md).

Errors, as the backend maps them (the table in server/backends/upstream_errors.py):

- :class:`ConnectError`: the connection could not be opened (refused, no route, DNS, connect or
  pool-wait timeout). Nothing was sent.
- :class:`ConnectionClosed`: the connection closed (or broke) before the whole answer arrived.
  ``before_response`` says whether any of the answer had arrived: if not, the request may be
  tried again (a keep-alive connection the server dropped just as we reused it).
- :class:`TimeoutError`: no byte of the answer within the read timeout.
- :class:`ProtocolError`: the server's bytes are not HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any
from urllib.parse import urlsplit

import httptools

from server.observability.metrics import UPSTREAM_CONNECTIONS

MAX_BUFFERED = 1 << 20  # stop reading from the socket while this much of an answer is unread
# Idle keep-alive connections a pool keeps (at most its max_connections): after a burst (thousands of
# streams ending together) the rest close at once instead of holding sockets on both sides.
IDLE_CONNECTIONS = 100


class HttpClientError(Exception):
    """Base of this module's errors."""


class ConnectError(HttpClientError):
    """The connection could not be opened."""


class ConnectionClosed(HttpClientError):
    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class ProtocolError(HttpClientError):
    """The upstream's bytes are not a valid HTTP/1.1 answer."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request/response exchange at a time."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: Any = None
        self.closed = False
        self.gone = False  # counted out of the pool
        self.idle_since = 0.0
        # The read timeout's timer, shared by successive waits (see wait()), and its time.
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0.0
        self.wait_due = 0.0  # the end of the current wait, on the loop's clock
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.message_done = False
        self.until_close = False
        self.keep_alive = True
        self.error: BaseException | None = None
        # The body's pieces not read yet: a list (rarely more than one; an empty deque takes 624
        # bytes, for every open stream).
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.got_bytes = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid HTTP from the upstream: {exc}"))
            self.transport.close()
            return
        if self.buffered > MAX_BUFFERED and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if not self.message_done and self.error is None:
            if self.headers_done and self.until_close:
                self.message_done = True  # an answer delimited by the end of the connection
            else:
                self.error = ConnectionClosed(
                    "the upstream closed the connection" + (f": {exc!r}" if exc else ""),
                    before_response=not self.got_bytes,
                )
        self._wake()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers = {}
            return
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()
        self.until_close = (
            "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.message_done = True

    # -- plumbing -----------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, within: float) -> None:
        """Until something arrives (or the connection ends); ``TimeoutError`` after ``within`` s.

        One timer serves a stream's successive waits (a stream waits once per chunk; a timer set
        and cancelled each time costs more than the rest of the wait): it is set for the end of the
        first wait and, firing before the end of the wait then in progress, set again for that."""
        loop = self.loop
        due = self.wait_due = loop.time() + within
        timer = self.timer
        if timer is None or self.timer_due > due:
            if timer is not None:
                timer.cancel()
            self.timer_due = due
            self.timer = loop.call_at(due, self._timer_fired)
        waiter = self.waiter = loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def _timer_fired(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.wait_due > self.timer_due:  # a later wait than the one the timer was set for
            self.timer_due = self.wait_due
            self.timer = self.loop.call_at(self.wait_due, self._timer_fired)
            return
        waiter.set_exception(TimeoutError())

    def stop_timer(self) -> None:
        """The exchange is over (the connection idles in the pool, or is gone)."""
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()


class Response:
    """An answer being read. Read it to the end and :meth:`release` it, or :meth:`close` it."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status: int = conn.parser.get_status_code()
        self.headers = conn.headers
        self._done = False

    def at_eof(self) -> bool:
        c = self._conn
        return c.message_done and not c.chunks

    async def read_chunk(self, within: float) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at its end."""
        c = self._conn
        while True:
            if c.chunks:
                piece = c.chunks.pop(0)
                c.buffered -= len(piece)
                if c.paused and c.buffered < MAX_BUFFERED // 2 and not c.closed:
                    c.paused = False
                    c.transport.resume_reading()
                return piece
            if c.message_done:
                return b""
            if c.error is not None:
                raise c.error
            await c.wait(within)

    async def read(self, within: float, limit: int | None = None) -> bytes:
        """The rest of the body (at most ``limit`` bytes), each wait at most ``within`` s."""
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            piece = await self.read_chunk(within)
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    def release(self) -> None:
        """Done with a fully read answer: the connection goes back to the pool (or closes)."""
        if self._done:
            return
        self._done = True
        c = self._conn
        if c.message_done and not c.chunks and c.keep_alive and not c.closed and c.error is None:
            c.pool._release(c)
        else:
            c.pool._discard(c)

    def close(self) -> None:
        """Stop reading: the connection closes, so the upstream sees the request abandoned."""
        if self._done:
            return
        self._done = True
        self._conn.pool._discard(self._conn)


class HttpPool:
    """Keep-alive connections to one origin (``scheme://host:port``): at most ``max_connections``
    open, at most ``max_idle`` of them kept idle for reuse (up to ``keepalive_timeout`` seconds)."""

    def __init__(
        self,
        base_url: str,
        max_connections: int = 1000,
        keepalive_timeout: float = 30.0,
        max_idle: int = IDLE_CONNECTIONS,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.loop = asyncio.get_running_loop()
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parts.scheme == "https" else None
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.max_connections = max_connections
        self.keepalive_timeout = keepalive_timeout
        self.max_idle = min(max_idle, max_connections)
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0  # connections open or opening
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._connections = UPSTREAM_CONNECTIONS.labels(base_url)

    async def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        deadline: float | None = None,
    ) -> Response:
        """Send ``POST {base path}{path}``; returns once the answer's status and headers are in.

        ``connect_timeout`` bounds the wait for a pooled connection plus connecting;
        ``read_timeout`` each wait for the answer; ``deadline`` (loop time) the whole call."""
        if deadline is not None:
            connect_timeout = min(connect_timeout, deadline - self.loop.time())
            if connect_timeout <= 0:
                raise TimeoutError()
        conn = await self._acquire(connect_timeout)
        try:
            head = [f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n"]
            head += [f"{k}: {v}\r\n" for k, v in headers.items()]
            head.append("\r\n")
            conn.transport.write("".join(head).encode("latin-1") + body)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                wait = read_timeout if deadline is None else min(read_timeout, deadline - self.loop.time())
                if wait <= 0:
                    raise TimeoutError()
                await conn.wait(wait)
            return Response(conn)
        except BaseException:
            self._discard(conn)
            raise

    async def _acquire(self, connect_timeout: float) -> _Connection:
        if self._closed:
            raise ConnectError("the client is closed")
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be dropped
            if conn.closed:
                continue
            if now - conn.idle_since > self.keepalive_timeout:
                self._discard(conn)
                continue
            conn._reset()
            return conn
        if self._open >= self.max_connections:
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(connect_timeout):
                    await waiter
            except TimeoutError:
                raise ConnectError(f"no free connection to {self.host_header} within {connect_timeout}s") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            return await self._acquire(connect_timeout)
        self._open += 1
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except BaseException as exc:
            self._open -= 1
            self._wake_waiter()
            if isinstance(exc, TimeoutError):  # before OSError: it is one
                raise ConnectError(f"connecting to {self.host_header} timed out after {connect_timeout}s") from None
            if isinstance(exc, OSError):
                raise ConnectError(f"cannot connect to {self.host_header}: {exc}") from exc
            raise
        self._connections.inc()
        return conn

    def _release(self, conn: _Connection) -> None:
        conn.stop_timer()
        if self._closed or len(self._idle) >= self.max_idle:
            self._discard(conn)
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        self._wake_waiter()

    def _discard(self, conn: _Connection) -> None:
        if not conn.closed:
            conn.closed = True
            conn.transport.close()
        self._gone(conn)

    def _forget(self, conn: _Connection) -> None:
        """The connection ended by itself (``connection_lost``)."""
        if conn in self._idle:
            self._idle.remove(conn)
        self._gone(conn)

    def _gone(self, conn: _Connection) -> None:
        """Count a connection out of the pool, once, and hand its place to a waiter."""
        conn.stop_timer()
        if not conn.gone:
            conn.gone = True
            self._open -= 1
            self._connections.dec()
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectError("the client is closed"))
        self._waiters.clear()
