"""Authentication: the ``authorization`` metadata must carry a valid Bearer key."""

from __future__ import annotations

from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from core.errors import PlutosError
from server.authenticator import Authenticator
from server.call_state import current_call
from server.interceptors.base import Handler, call_next, is_api_method
from server.interceptors.errors import DUPLICATE_AUTHORIZATION


class AuthInterceptor(AsyncServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        if is_api_method(method_name):
            state = current_call.get()  # the error interceptor read the metadata
            if state.authorization == DUPLICATE_AUTHORIZATION:
                raise PlutosError(
                    "invalid_parameters",
                    "Send the API key in one authorization metadata entry (this call has several).",
                    {"header": "authorization"},
                )
            state.caller = await self._auth.authenticate(state.authorization)
        return await call_next(method, request, context)
