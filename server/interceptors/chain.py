"""Run a list of ``grpc_interceptor`` interceptors as one ``grpc.aio`` interceptor.

Each ``AsyncServerInterceptor`` handed to ``grpc.aio.server`` on its own is asked for every call
to wrap the next handler: an ``await`` down the chain, a new method handler and closures per layer
per call. The wrapped handler only depends on the method, so this builds it once per method and
reuses it; every call still runs each interceptor's ``intercept`` in the same order, with the same
arguments and the same stream handling as ``grpc_interceptor`` (outermost first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from inspect import iscoroutine
from typing import Any

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from server.interceptors.base import Handler, is_api_method, tolerant_deserializer


def _unary(interceptor: AsyncServerInterceptor, nxt: Handler, method_name: str) -> Handler:
    # A partial of the coroutine function itself: no wrapper frame per layer per call, and still
    # a coroutine function to grpc.aio (which runs any other unary handler on a thread pool).
    return partial(interceptor.intercept, nxt, method_name=method_name)


class _Deferred:
    """One interceptor around a stream, without a generator of its own.

    The interceptor runs (its work before the stream: authentication, limits, ...) on the first
    read, as it did inside a wrapping async generator; each later read goes straight to the stream
    it returned — no generator frame per message and layer — as does closing it."""

    __slots__ = ("_args", "_closed", "_intercept", "_next", "_stream")

    def __init__(self, intercept: Callable[..., Any], args: tuple[Any, Any, Any, str]) -> None:
        self._intercept = intercept
        self._args: tuple[Any, Any, Any, str] | None = args
        self._stream: Any = None
        self._next: Callable[[], Awaitable[Any]] | None = None
        self._closed = False

    def __aiter__(self) -> _Deferred:
        return self

    def __anext__(self) -> Awaitable[Any]:
        step = self._next
        if step is None:
            return self._first()
        return step()

    async def _first(self) -> Any:
        args = self._args
        if args is None:  # closed before its first read, or its interceptor gave no stream
            raise StopAsyncIteration
        self._args = None
        # As grpc_interceptor does: intercept() is a coroutine resolving to the stream (or None
        # for a handler using the read/write API), or the stream itself.
        result: Any = self._intercept(*args)
        if iscoroutine(result):
            result = await result
            if not result:
                raise StopAsyncIteration
        stream = self._stream = result.__aiter__()
        if self._closed:  # closed while its interceptor ran
            await self.aclose()
            raise StopAsyncIteration
        self._next = step = stream.__anext__
        return await step()

    async def aclose(self) -> None:
        self._closed = True
        self._args = None
        stream = self._stream
        if stream is not None:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


def _streaming(interceptor: AsyncServerInterceptor, nxt: Handler, method_name: str) -> Handler:
    intercept = interceptor.intercept

    def invoke(request: Any, context: Any) -> _Deferred:
        return _Deferred(intercept, (nxt, request, context, method_name))

    return invoke


def _served(behaviour: Handler) -> Handler:
    """The outermost layer as grpc.aio needs it: an async generator function (the only kind of
    stream handler it iterates); the one generator frame a message passes through in the chain."""

    async def serve(request: Any, context: Any) -> AsyncIterator[Any]:
        async for message in behaviour(request, context):
            yield message

    return serve


_FACTORIES: dict[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class InterceptorChain(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """``interceptors`` (outermost first) composed once per method."""

    def __init__(self, interceptors: Sequence[AsyncServerInterceptor]) -> None:
        self._interceptors = list(interceptors)
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method_name: str = handler_call_details.method
        handler = self._handlers.get(method_name)
        if handler is None:
            found = await continuation(handler_call_details)
            if not found:  # an unknown method: gRPC answers UNIMPLEMENTED
                return found
            handler = self._handlers[method_name] = self.wrap(found, method_name)
        return handler

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method_name: str, *, in_process: bool = False
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` with the interceptors around it. ``in_process`` (the bridge's in-process
        transport): a streaming method's behaviour returns the outermost layer's stream as it is,
        an async iterator, instead of an async generator function re-yielding it for grpc.aio."""
        kind = next((k for k in _FACTORIES if getattr(handler, k) is not None), None)
        if kind is None:  # pragma: no cover - grpc always sets one
            raise RuntimeError(f"no implementation for {method_name}")
        factory, behaviour = _FACTORIES[kind], getattr(handler, kind)
        wrap = _streaming if handler.response_streaming else _unary
        for interceptor in reversed(self._interceptors):
            behaviour = wrap(interceptor, behaviour, method_name)
        if handler.response_streaming and self._interceptors and not in_process:
            behaviour = _served(behaviour)
        deserializer = handler.request_deserializer
        return factory(
            behaviour,
            request_deserializer=tolerant_deserializer(deserializer) if is_api_method(method_name) else deserializer,
            response_serializer=handler.response_serializer,
        )
