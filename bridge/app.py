"""The REST app: one route per annotated RPC's path (JSON or SSE endpoints), the non-API surfaces
after them, and the 404/405/500 envelopes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from time import perf_counter
from types import ModuleType
from typing import TYPE_CHECKING, Any

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bridge.endpoints import Bridge, Observe
from bridge.front import STARTED, FastRoutes, internal_error
from bridge.json_response import error_response
from bridge.rejections import UNMATCHED, Rejected, bounded_method
from bridge.request_reading import request_id_of
from bridge.routes import bindings_for_modules
from bridge.surface import surface_for_path, surface_of

if TYPE_CHECKING:
    from bridge.transports.local import LocalChannel

__all__ = ["create_app"]


def _default_modules() -> list[ModuleType]:
    from plutos.v1 import admin_pb2, keys_pb2, models_pb2, openai_pb2, processing_pb2, usage_pb2, webhooks_pb2

    return [processing_pb2, models_pb2, usage_pb2, webhooks_pb2, keys_pb2, admin_pb2, openai_pb2]


def create_app(
    channel: grpc.aio.Channel | LocalChannel,
    *,
    modules: Sequence[ModuleType] | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    unary_timeout: float | None = 600.0,
    keepalive_seconds: float = 15.0,
    extra_routes: Sequence[BaseRoute] = (),
    observe: Observe | None = None,
    rejected: Rejected | None = None,
) -> FastRoutes:
    """Build the REST app for every annotated RPC in ``modules`` (default: the plutos.v1 protos).

    ``extra_routes`` are surfaces that are not RPCs (static files, the metrics scrape, documents
    derived from the descriptors); the composition root passes them, the bridge only mounts them after
    the API's routes, under the same 404/405 envelope handlers. ``observe(route, method, status,
    seconds)``, when given, is called once per API request with its route template and status, and
    once per 404 / 405 (route ``unmatched`` / the path's template). ``rejected(route, method, status,
    code, request_id)``, when given, is called for every request answered before an RPC ran (see
    bridge/rejections.py)."""
    bridge = Bridge(channel, max_body_bytes, unary_timeout, keepalive_seconds, observe, rejected)
    bindings = bindings_for_modules(modules or _default_modules())
    # One route per path, dispatching on the method (GET and POST /v1/process are two RPCs), so a
    # 405 lists every method the path has in Allow.
    by_path: dict[str, dict[str, Callable[[Request], Any]]] = {}
    names: dict[str, str] = {}
    for b in bindings:
        by_path.setdefault(b.route_path, {})[b.http_method] = bridge.endpoint(
            b, surface_of(b.method.containing_service)
        )
        names.setdefault(b.route_path, b.grpc_path)
    routes: list[BaseRoute] = [
        Route(path, _by_method(endpoints), methods=list(endpoints), name=names[path])
        for path, endpoints in by_path.items()
    ]
    api_routes = list(routes)
    templates = {b.route_path: b.path for b in bindings}  # Starlette's path -> the annotation's template
    routes.extend(extra_routes)
    surface_at = surface_for_path(bindings)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        request_id = request_id_of(request)
        surface = surface_at(request.url.path)
        if exc.status_code == 405:
            allow, path = _allowed_methods(request)
            code, route = "method_not_allowed", templates.get(path, path)
            response = error_response(
                code,
                f"Method {request.method} is not allowed here; use {allow}.",
                request_id,
                {"allow": allow},
                {"Allow": allow},
                surface,
            )
        else:
            code, route = "not_found", UNMATCHED
            response = error_response(
                code, f"No route for {request.method} {request.url.path}.", request_id, surface=surface
            )
        method = bounded_method(request.method)
        if observe is not None:
            observe(route, method, response.status_code, perf_counter() - request.scope.get(STARTED, perf_counter()))
        if rejected is not None:
            rejected(route, method, response.status_code, code, request_id)
        return response

    async def unexpected(request: Request, exc: Exception) -> Response:
        return internal_error(request)

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: unexpected},
    )
    # No "307 to the path without its trailing slash": its Location is built from the Host header
    # (an open redirect to any host) and it carries no envelope. Unknown paths are 404 envelopes.
    app.router.redirect_slashes = False
    app.state.bindings = api_routes
    app.state.http_bindings = bindings  # what the routes were built from (read by bridge/surfaces.py)
    exact = {
        (method, path): endpoint
        for path, endpoints in by_path.items()
        if "{" not in path
        for method, endpoint in endpoints.items()
    }
    return FastRoutes(app, exact)


async def _no_endpoint(request: Request) -> Any:  # pragma: no cover - the router filters methods
    raise HTTPException(405)


def _by_method(endpoints: dict[str, Callable[[Request], Any]]) -> Callable[[Request], Any]:
    if len(endpoints) == 1:
        return next(iter(endpoints.values()))

    async def dispatch(request: Request) -> Any:
        # The router admitted the method: one of these, or HEAD (allowed with GET).
        return await endpoints.get(request.method, endpoints.get("GET", _no_endpoint))(request)

    return dispatch


def _allowed_methods(request: Request) -> tuple[str, str]:
    """Every method some route takes at this path (Starlette's 405 names only the first route that
    matched the path, and one path often has several RPCs: GET and POST /v1/webhooks), and the
    first matching route's path."""
    methods: set[str] = set()
    first = ""
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
            first = first or route.path
    return ", ".join(sorted(methods)), first
