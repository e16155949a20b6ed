"""The bridge's in-process transport to the gRPC service (``bridge_transport = "local"``).

The REST bridge runs in the same process and on the same event loop as the grpc.aio server. Over a
loopback channel every REST call is serialized, framed as HTTP/2, written to a socket, read back
by gRPC's completion-queue thread, handed to the loop, deserialized, and the same again for the
answer: about half of the bridge's fixed cost per call. This transport calls the *same* method
handlers, through the *same* interceptor chain (errors and request ids, auth, rate limits, quota),
with the request message itself, as grpc-gateway's in-process registration does in Go.

Each call runs in a task of its own, as a grpc.aio server runs each RPC, with a servicer context
that offers what the interceptors and services use: ``invocation_metadata``, ``time_remaining``,
``send_initial_metadata``, ``set_trailing_metadata``, ``abort``, ``add_done_callback``. The call
objects offer the part of grpc.aio's client API the bridge uses, with the same outcomes: a failed
call raises ``grpc.aio.AioRpcError`` carrying the status, details and trailing metadata the
handler set; cancelling the call cancels the handler's task; the deadline cancels it and fails the
call with ``DEADLINE_EXCEEDED``. gRPC clients (internal services, the SDKs) still use the gRPC port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import grpc

log = logging.getLogger("plutos.local")

Metadata = tuple[tuple[str, str | bytes], ...]

# Messages a stream's handler may run ahead of its reader (gRPC's flow control plays this part
# over the network); the handler waits for the reader beyond that.
STREAM_BUFFER = 64


class _Collector:
    """Stands in for a ``grpc.aio.Server`` in the generated ``add_*Servicer_to_server`` functions."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


class LocalServicerContext:
    """What a handler sees of its call (grpc.aio's ``ServicerContext``, the parts used here)."""

    __slots__ = (
        "_callbacks",
        "_deadline",
        "_initial",
        "_loop",
        "_metadata",
        "code",
        "details",
        "initial_metadata",
        "trailing_metadata",
    )

    def __init__(self, metadata: Metadata, deadline: float | None, loop: asyncio.AbstractEventLoop) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._loop = loop
        self._callbacks: list[Callable[[Any], None]] | None = None
        self._initial: asyncio.Future[Metadata] | None = None
        self.initial_metadata: Metadata | None = None
        self.trailing_metadata: Metadata = ()
        self.code = grpc.StatusCode.OK
        self.details = ""

    # -- the servicer's side --

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(self._deadline - self._loop.time(), 0.0)

    def peer(self) -> str:
        return "local:bridge"

    async def send_initial_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        if self.initial_metadata is not None:
            raise grpc.aio.UsageError("Send initial metadata failed: already sent")
        self._accept(tuple(metadata))

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self.trailing_metadata = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Iterable[tuple[str, str | bytes]] = ()
    ) -> None:
        if code == grpc.StatusCode.OK:
            log.error("abort() called with StatusCode.OK; returning UNKNOWN")
            code = grpc.StatusCode.UNKNOWN
            details = ""
        self.code, self.details = code, details
        if trailing_metadata:
            self.trailing_metadata = tuple(trailing_metadata)
        raise grpc.aio.AbortError("Locally aborted.")

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    # -- the call's side --

    def _accept(self, metadata: Metadata) -> None:
        self.initial_metadata = metadata
        waiter = self._initial
        if waiter is not None and not waiter.done():
            waiter.set_result(metadata)

    async def wait_initial(self) -> Metadata:
        if self.initial_metadata is not None:
            return self.initial_metadata
        if self._initial is None:
            self._initial = self._loop.create_future()
        return await asyncio.shield(self._initial)

    def finished(self) -> None:
        """The handler is over: a stream that never sent headers answers trailers-only; the done
        callbacks run (as grpc.aio runs them when the RPC ends)."""
        if self.initial_metadata is None:
            self._accept(())
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                log.exception("a call's done callback failed")


class _LocalCall:
    """The client side of one in-process call: the handler's task and its outcome."""

    __slots__ = ("_context", "_expired", "_running", "_task", "_timer")

    def __init__(
        self,
        behaviour: Any,
        request: Any,
        context: LocalServicerContext,
        deadline: float | None,
        running: set[asyncio.Task[Any]],
    ) -> None:
        self._context = context
        self._running = running
        self._expired = False
        self._task = task = context._loop.create_task(self._handle(behaviour, request))
        running.add(task)
        task.add_done_callback(self._over)
        self._timer = None if deadline is None else context._loop.call_at(deadline, self._expire)

    async def _handle(self, behaviour: Any, request: Any) -> Any:
        raise NotImplementedError

    def _expire(self) -> None:
        self._timer = None
        if not self._task.done():
            self._expired = True
            self._task.cancel()

    def _over(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _settle(self, error: BaseException) -> None:
        """Record how the handler ended, as the status a gRPC client would receive."""
        context = self._context
        if isinstance(error, asyncio.CancelledError):
            if self._expired:
                context.code, context.details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
            elif getattr(self._running, "closing", False):  # the server stopped it (drain ran out)
                context.code, context.details = grpc.StatusCode.UNAVAILABLE, "The server is shutting down."
            else:
                context.code, context.details = grpc.StatusCode.CANCELLED, "Locally cancelled by application!"
        elif not isinstance(error, grpc.aio.AbortError):
            log.error("Unexpected error in a local call", exc_info=error)
            context.code = grpc.StatusCode.UNKNOWN
            context.details = f"Unexpected {type(error)}: {error}"
        elif context.code == grpc.StatusCode.OK:  # pragma: no cover - abort() always sets one
            context.code = grpc.StatusCode.UNKNOWN

    def _error(self) -> grpc.aio.AioRpcError:
        context = self._context
        return grpc.aio.AioRpcError(
            context.code,
            grpc.aio.Metadata(*(context.initial_metadata or ())),
            grpc.aio.Metadata(*context.trailing_metadata),
            context.details,
            None,
        )

    def cancel(self) -> bool:
        return not self._task.done() and self._task.cancel()

    def cancelled(self) -> bool:
        return self._context.code == grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return self._task.done()

    async def _wait(self) -> None:
        if not self._task.done():
            await asyncio.wait((self._task,))

    async def initial_metadata(self) -> Metadata:
        return await self._context.wait_initial()

    async def trailing_metadata(self) -> Metadata:
        await self._wait()
        return self._context.trailing_metadata

    async def code(self) -> grpc.StatusCode:
        await self._wait()
        return self._context.code

    async def details(self) -> str:
        await self._wait()
        return self._context.details


class LocalUnaryCall(_LocalCall):
    """Awaiting it gives the response or raises ``AioRpcError`` (``CancelledError`` if cancelled)."""

    __slots__ = ()

    async def _handle(self, behaviour: Any, request: Any) -> Any:
        context = self._context
        try:
            response = await behaviour(request, context)
        except BaseException as error:
            self._settle(error)
            raise
        finally:
            context.finished()
        if context.code != grpc.StatusCode.OK:  # set_code() without abort()
            raise grpc.aio.AbortError("status set by the handler")
        return response

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            return await self._task
        except asyncio.CancelledError:
            if self._expired:
                raise self._error() from None
            raise
        except BaseException:
            if self._context.code == grpc.StatusCode.OK:  # an error that never reached _settle
                self._context.code = grpc.StatusCode.UNKNOWN
            raise self._error() from None


class LocalStreamCall(_LocalCall):
    """``read()`` gives the messages, then ``grpc.aio.EOF``, or raises ``AioRpcError``;
    ``read_buffered()`` the messages already waiting, without waiting."""

    __slots__ = ("_buffer", "_ended", "_reader", "_space")

    def __init__(self, *args: Any) -> None:  # the buffer exists before the handler starts
        # A list, not a deque: it rarely holds more than a message or two, and an empty deque
        # takes 624 bytes (a block of 64 slots) for every open stream.
        self._buffer: list[Any] = []
        self._ended = False
        self._reader: asyncio.Future[None] | None = None
        self._space: asyncio.Future[None] | None = None
        super().__init__(*args)

    async def _handle(self, behaviour: Any, request: Any) -> None:
        context = self._context
        stream = behaviour(request, context)
        try:
            async for message in stream:
                if context.initial_metadata is None:  # grpc.aio sends empty headers before a message
                    context._accept(())
                self._buffer.append(message)
                self._wake_reader()
                if len(self._buffer) >= STREAM_BUFFER:
                    self._space = context._loop.create_future()
                    await self._space
        except BaseException as error:
            self._settle(error)
            if not isinstance(error, Exception):
                raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing a local stream's handler failed")
            self._ended = True
            self._wake_reader()
            context.finished()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

    async def read(self) -> Any:
        while not self._buffer:
            if self._ended:
                if self._context.code != grpc.StatusCode.OK:
                    raise self._error()
                return grpc.aio.EOF  # type: ignore[attr-defined]
            self._reader = self._context._loop.create_future()
            await self._reader
        message = self._buffer.pop(0)
        self._make_space()
        return message

    def read_buffered(self) -> list[Any]:
        """The messages the handler has already produced and ``read()`` would return at once (none
        if it would wait): a reader that fell behind takes them in one go."""
        if not self._buffer:
            return []
        messages, self._buffer = self._buffer, []
        self._make_space()
        return messages

    def _make_space(self) -> None:
        space = self._space
        if space is not None and len(self._buffer) < STREAM_BUFFER // 2:
            self._space = None
            if not space.done():
                space.set_result(None)


class _Method:
    """A method of the channel: calling it starts a call of ``call_type``."""

    __slots__ = ("_behaviour", "_call_type", "_running")

    def __init__(self, call_type: type[_LocalCall], behaviour: Any, running: set[asyncio.Task[Any]]) -> None:
        self._call_type = call_type
        self._behaviour = behaviour
        self._running = running

    def __call__(self, request: Any, *, metadata: Metadata = (), timeout: float | None = None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        context = LocalServicerContext(tuple(metadata), deadline, loop)
        return self._call_type(self._behaviour, request, context, deadline, self._running)


class HandlerWrapper(Protocol):
    """What wraps each method handler in the server's interceptors (the gRPC server's
    ``InterceptorChain``): the in-process calls go through the same chain as network calls.
    ``in_process``: a streaming behaviour may return any async iterator (gRPC needs an async
    generator function; a call here only iterates it and closes it)."""

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method_name: str, *, in_process: bool = ...
    ) -> grpc.RpcMethodHandler[Any, Any]: ...


class _Running(set[asyncio.Task[Any]]):
    """The channel's calls in progress; ``closing`` once :meth:`LocalChannel.close` cancels them
    (they end UNAVAILABLE, as calls a gRPC server stops do, rather than CANCELLED)."""

    closing = False


class LocalChannel:
    """``unary_unary`` / ``unary_stream`` like a ``grpc.aio.Channel``, dispatching in process.

    The serializer arguments are accepted and unused: request and response messages are handed
    over as they are."""

    def __init__(self, chain: HandlerWrapper, servicers: Sequence[tuple[Callable[[Any, Any], None], Any]]) -> None:
        collector = _Collector()
        for add_to_server, servicer in servicers:
            add_to_server(servicer, collector)
        self._handlers = {
            path: chain.wrap(handler, path, in_process=True) for path, handler in collector.handlers.items()
        }
        self._running: set[asyncio.Task[Any]] = _Running()

    def _handler(self, path: str, streaming: bool) -> Any:
        handler = self._handlers.get(path)
        if handler is None:
            raise KeyError(f"no local handler for {path}")
        behaviour = handler.unary_stream if streaming else handler.unary_unary
        if behaviour is None:
            raise TypeError(f"{path} is not a {'server-streaming' if streaming else 'unary'} method")
        return behaviour

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None) -> _Method:
        return _Method(LocalUnaryCall, self._handler(method, False), self._running)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None) -> _Method:
        return _Method(LocalStreamCall, self._handler(method, True), self._running)

    async def close(self, grace: float | None = None) -> None:
        """Like ``grpc.aio.Server.stop(grace)``: calls still running get ``grace`` seconds to
        finish (none without it), then are cancelled."""
        if self._running and grace:
            await asyncio.wait(set(self._running), timeout=grace)
        self._running.closing = True  # type: ignore[attr-defined]
        running = set(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
