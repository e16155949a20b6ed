"""Watching a unary call's REST client: one that leaves mid-call cancels the RPC."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

WATCH_DISCONNECT_AFTER = 0.2  # seconds


class DisconnectWatch:
    """Cancels a unary call when its REST client disconnects, once started."""

    __slots__ = ("_call", "_request", "_task")

    def __init__(self, request: Request, call: Any) -> None:
        self._request = request
        self._call = call
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(_cancel_on_disconnect(self._request, self._call))

    def cancelled_call(self) -> bool:
        """Whether this watch cancelled the call (the client left)."""
        return self._task is not None and self._task.done() and not self._task.cancelled()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _cancel_on_disconnect(request: Request, call: Any) -> None:
    """A REST client that leaves mid-call cancels the RPC, and so the generation (and any upstream
    request) behind it, as gRPC clients do by cancelling."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    call.cancel()
