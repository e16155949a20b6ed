"""A lean Redis connection for the limiter's hot path: one socket per process, pipelined.

Every call of the gateway runs two limiter scripts (ADMIT, FINISH). Through redis-py each costs
tens of microseconds of Python per round trip (a pooled connection taken and given back under a
lock and a timeout, every argument encoded in Python, the reply read through a stream reader),
which on one core is as much as the rest of the call. Here the scripts go through one connection
that keeps no lock: a command is encoded once into bytes, commands issued in the same turn of the
event loop leave in one write (auto-pipelining), and replies — parsed by hiredis — resolve the
waiting calls in order. Redis runs each script atomically whatever shares the connection, so
pipelining changes no decision.

Failures raise redis-py's exceptions, so the limiter maps them as before: the socket closing or
not answering within ``timeout`` (every call then in flight fails, the next one reconnects) →
``ConnectionError``/``TimeoutError``. Not answering means no reply for ``timeout`` seconds since
the commands on the way were written or Redis last answered, whichever is later — not since a call
was issued (a call issued while a batch is on the way leaves when its replies are in), and not
while the replies wait unread in the socket because this event loop was busy elsewhere (the
watchdog, a timer, may run before the loop reads its sockets: it looks again once it has). Under a
burst of thousands of admissions on a loaded loop, the issue-time deadline failed calls whose
replies had come in time, and with them every call in flight; an error reply → ``ResponseError``. ``NOSCRIPT`` (Redis
restarted and lost its script cache) is answered by loading the script and sending it again.
Plain ``redis://`` and ``unix://`` URLs only (with a password or a database number); the limiter
uses redis-py for anything else (TLS).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.connection import SSLConnection, UnixDomainSocketConnection
from redis.connection import parse_url as _parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

parse_url = cast(Callable[[str], dict[str, Any]], _parse_url)


# The watchdog, finding no reply within the timeout, looks again this much later (after the loop
# has read its sockets) before it fails the calls.
OVERDUE_RECHECK = 0.01


def encode(*args: str | int | bytes) -> bytes:
    """One command in RESP: ``*<n>`` then each argument as a bulk string."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Script:
    """A Lua script sent by SHA (``EVALSHA``), its body loaded when Redis does not know it."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()


def supports(url: str) -> bool:
    """Whether :class:`Pipe` can connect to ``url`` (plain TCP or a Unix socket; not TLS)."""
    return parse_url(url).get("connection_class") is not SSLConnection


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe

    def data_received(self, data: bytes) -> None:
        self.pipe._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._lost(self, exc)


class Pipe:
    """One pipelined connection to Redis. ``await pipe.evalsha(script, keys, args)``."""

    def __init__(self, url: str, *, timeout: float) -> None:
        options = parse_url(url)
        if options.get("connection_class") is SSLConnection:
            raise ValueError("TLS Redis URLs are not supported by the pipelined connection")
        unix = options.get("connection_class") is UnixDomainSocketConnection
        self._path: str | None = str(options["path"]) if unix else None
        self._host = str(options.get("host", "localhost"))
        self._port = int(options.get("port", 6379))
        hello: list[bytes] = []
        if options.get("password") is not None:
            user = options.get("username")
            hello.append(encode("AUTH", *([user] if user else []), options["password"]))
        if int(options.get("db", 0) or 0):
            hello.append(encode("SELECT", int(options["db"])))
        self._hello = hello
        self.timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._reader = hiredis.Reader()
        # Calls waiting for a reply, in the order their commands were issued (the first
        # ``_unanswered`` of them written, the rest in ``_out``).
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: list[bytes] = []
        self._unanswered = 0  # commands written and not answered yet
        # When the commands on the way were written or Redis last answered (time.monotonic()).
        self._progress = 0.0
        self._overdue = False  # the watchdog found no progress within the timeout once: it looks again
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False

    # -- connection -------------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._connecting is not None:  # another call is connecting: share its outcome
            await asyncio.shield(self._connecting)
            return
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            if self._path is not None:
                opening = loop.create_unix_connection(lambda: _Protocol(self), self._path)
            else:
                opening = loop.create_connection(lambda: _Protocol(self), self._host, self._port)
            try:
                transport, protocol = await asyncio.wait_for(opening, self.timeout)
            except TimeoutError as err:
                raise RedisTimeoutError(f"connecting to Redis timed out after {self.timeout:g}s") from err
            except OSError as err:
                raise RedisConnectionError(f"cannot connect to Redis: {err}") from err
            self._reader = hiredis.Reader()
            self._transport, self._protocol = transport, protocol
            self._timed_out = False
            for command in self._hello:  # AUTH, SELECT: answered before anything sent after them
                reply = await self._send(command)
                if isinstance(reply, hiredis.ReplyError):
                    self.close()
                    raise RedisConnectionError(f"Redis refused the connection: {reply}")
            self._connecting.set_result(None)
        except BaseException as err:
            self._connecting.set_exception(err if isinstance(err, Exception) else RedisConnectionError(str(err)))
            self._connecting.exception()  # retrieved: waiting callers re-raise it
            raise
        finally:
            self._connecting = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # connection_lost fails the calls still waiting
        self._transport = None

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self._transport = None
        self._protocol = None
        if self._timed_out:
            self._fail_all(RedisTimeoutError(f"Redis did not answer within {self.timeout:g}s"))
        else:
            self._fail_all(RedisConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def _fail_all(self, error: Exception) -> None:
        self._out.clear()
        self._unanswered = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._overdue = False
        waiting, self._waiting = self._waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
                future.exception()  # a cancelled caller never reads it: no "never retrieved" noise

    # -- calls ------------------------------------------------------------------------------------

    async def evalsha(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """``EVALSHA`` of ``script``; its reply (an error reply raises ``ResponseError``)."""
        command = encode("EVALSHA", script.sha, len(keys), *keys, *args)
        reply = await self.call(command)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            loaded = await self.call(encode("SCRIPT", "LOAD", script.body))
            if isinstance(loaded, hiredis.ReplyError):
                raise ResponseError(str(loaded))
            reply = await self.call(command)
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send_evalsha(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """``EVALSHA`` sent now (on a :attr:`connected` pipe): a future of the raw reply — an error
        reply (``NOSCRIPT`` included) is a ``hiredis.ReplyError`` result, not an exception."""
        return self._send(encode("EVALSHA", script.sha, len(keys), *keys, *args))

    async def call(self, command: bytes) -> Any:
        """Send one encoded command (see :func:`encode`) and wait for its reply."""
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        return await self._send(command)

    def _send(self, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(future)
        self._out.append(command)
        # Everything issued in this turn of the loop leaves in one write; while a write is still
        # unanswered, what comes next waits for its replies and then leaves at once (at most one
        # batch on the way: fewer writes and wake-ups on both sides, at most a round trip later).
        if self._flush_handle is None and not self._unanswered:
            self._flush_handle = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_handle = None
        if not self._out:
            return
        if self._transport is None:  # lost since these calls were issued
            self._fail_all(RedisConnectionError("connection to Redis lost"))
            return
        data = b"".join(self._out)
        self._unanswered += len(self._out)
        self._out.clear()
        self._transport.write(data)
        self._progress = time.monotonic()  # nothing else was on the way: the clock starts now
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + self.timeout, self._check)

    def _check(self) -> None:
        """The watchdog: no reply for ``timeout`` s since the commands on the way were written or
        Redis last answered times out every call waiting. A timer can run late, after the loop was
        busy elsewhere, with replies unread in the socket: the first time it finds the timeout
        passed it looks again shortly, once the loop has read its sockets (uvloop runs due timers
        before it polls), and only then gives up."""
        self._timer = None
        if not self._unanswered:
            self._overdue = False
            return  # nothing on the way: the next write arms the watchdog again
        loop = asyncio.get_running_loop()
        left = self._progress + self.timeout - time.monotonic()
        if left > 0:
            self._overdue = False
            self._timer = loop.call_at(loop.time() + left, self._check)
            return
        if not self._overdue:
            self._overdue = True
            self._timer = loop.call_at(loop.time() + OVERDUE_RECHECK, self._check)
            return
        self._overdue = False
        self._timed_out = True
        if self._transport is None:
            self._fail_all(RedisTimeoutError(f"Redis did not answer within {self.timeout:g}s"))
        self.close()

    def _received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        answered = False
        while (reply := reader.gets()) is not False:
            if not waiting or not self._unanswered:  # pragma: no cover - a reply nobody asked for
                self.close()
                return
            self._unanswered -= 1
            answered = True
            future = waiting.popleft()
            if not future.done():
                future.set_result(reply)
        if answered:
            self._progress = time.monotonic()
        if not self._unanswered and self._out and self._flush_handle is None:
            self._flush()  # what waited for these replies
