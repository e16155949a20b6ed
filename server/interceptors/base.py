"""Shared plumbing for interceptors built on ``grpc_interceptor.server.AsyncServerInterceptor``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

# Only our own API is intercepted; health and reflection pass through untouched.
API_PREFIX = "/plutos.v1."

Handler = Callable[[Any, Any], Any]


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
