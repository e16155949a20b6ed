"""The ASGI front: the routes without path parameters by a dict lookup, the rest through Starlette,
and an endpoint that raises answered with the envelope, never the traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bridge.json_response import error_response
from bridge.request_reading import request_id_of

log = logging.getLogger("plutos.bridge")

STARTED = "plutos.started"  # scope key: when a request that Starlette routes arrived (perf_counter)


class FastRoutes:
    """ASGI front for the routes without path parameters (``POST /v1/process``, ``/v1/stream``, ...):
    a dict lookup and the endpoint, skipping Starlette's middleware stack and route scan (a fifth of
    the bridge's CPU per call). Everything else (path parameters, 404, 405) goes to ``app``."""

    def __init__(self, app: Starlette, exact: dict[tuple[str, str], Callable[[Request], Any]]) -> None:
        self.app = app
        self._exact = exact

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = self._exact.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if endpoint is None:
            scope[STARTED] = perf_counter()  # for the 404/405 answers' latency (bridge/app.py)
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception:
            response = internal_error(request)
        await response(scope, receive, send)


def internal_error(request: Request) -> Response:
    """An endpoint raised: logged with its traceback; the caller gets the envelope, not the trace."""
    log.exception("bridge error on %s %s", request.method, request.url.path)
    return error_response("internal_error", "Internal server error.", request_id_of(request))
