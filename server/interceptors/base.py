"""Shared plumbing for interceptors built on ``grpc_interceptor.server.AsyncServerInterceptor``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

# Only our own API is intercepted; health and reflection pass through untouched.
API_PREFIX = "/plutos.v1."

Handler = Callable[[Any, Any], Any]


class _Malformed:
    """What an API method's request deserializer returns for bytes that are not its message."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MALFORMED_REQUEST"


MALFORMED_REQUEST: Any = _Malformed()


def tolerant_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserialize`` that returns :data:`MALFORMED_REQUEST` instead of raising, so the error
    interceptor answers ``INVALID_ARGUMENT`` (gRPC itself would answer ``UNKNOWN`` with the
    exception's class name)."""
    if deserialize is None:
        return None
    parse = deserialize

    def deserialize_or_mark(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return MALFORMED_REQUEST

    return deserialize_or_mark


def is_api_method(method_name: str) -> bool:
    return method_name.startswith(API_PREFIX)


async def call_next(method: Handler, request: Any, context: Any) -> Any:
    """Invoke the next handler: await a unary result, hand back a stream's async iterator."""
    response = method(request, context)
    if hasattr(response, "__aiter__"):
        return response
    return await response


def is_stream(response: Any) -> bool:
    return hasattr(response, "__aiter__")


AsyncGen = AsyncIterator[Any]
Coro = Awaitable[Any]
