"""Key scopes: each RPC needs one (see ``server.limits.policy.required_scope``); a key created
with ``--scopes`` that lacks it gets 403 ``permission_denied``. Runs after the rate-limit
interceptor, so a refused call still carries the X-RateLimit-* headers and counts as a request."""

from __future__ import annotations

from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from server.context import current_call
from server.errors import PlutosError
from server.interceptors.base import Handler, call_next, is_api_method
from server.limits.policy import required_scope


class ScopeInterceptor(AsyncServerInterceptor):
    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        if is_api_method(method_name):
            who = current_call.get().caller
            if who is not None and who.scopes is not None:
                scope = required_scope(method_name)
                if scope not in who.scopes:
                    raise PlutosError(
                        "permission_denied",
                        f"This API key does not have the '{scope}' permission.",
                        {"scope": scope},
                    )
        return await call_next(method, request, context)
