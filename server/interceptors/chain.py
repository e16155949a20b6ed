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


def _streaming(interceptor: AsyncServerInterceptor, nxt: Handler, method_name: str) -> Handler:
    intercept = interceptor.intercept

    async def invoke(request: Any, context: Any) -> AsyncIterator[Any]:
        # As grpc_interceptor does: intercept() is a coroutine resolving to the stream (or None
        # for a handler using the read/write API), or the stream itself.
        result: Any = intercept(nxt, request, context, method_name)
        if iscoroutine(result):
            result = await result
            if not result:
                return
        async for message in result:
            yield message

    return invoke


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

    def wrap(self, handler: grpc.RpcMethodHandler[Any, Any], method_name: str) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` with the interceptors around it (also used by the in-process transport)."""
        kind = next((k for k in _FACTORIES if getattr(handler, k) is not None), None)
        if kind is None:  # pragma: no cover - grpc always sets one
            raise RuntimeError(f"no implementation for {method_name}")
        factory, behaviour = _FACTORIES[kind], getattr(handler, kind)
        wrap = _streaming if handler.response_streaming else _unary
        for interceptor in reversed(self._interceptors):
            behaviour = wrap(interceptor, behaviour, method_name)
        deserializer = handler.request_deserializer
        return factory(
            behaviour,
            request_deserializer=tolerant_deserializer(deserializer) if is_api_method(method_name) else deserializer,
            response_serializer=handler.response_serializer,
        )
