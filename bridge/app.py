"""The Starlette application: one generic endpoint per annotated RPC, JSON or SSE."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from time import perf_counter
from types import ModuleType
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bridge.errors import from_rpc_error
from bridge.json_codec import JsonInputError, parse_into
from bridge.routes import HttpBinding, bindings_for_modules
from bridge.surface import REFERENCE, Surface, surface_for_path, surface_of
from core.errors import ERRORS, echo
from core.idempotency_keys import MAX_KEY_LENGTH, valid_key
from core.ids import request_id_from
from core.tracing import inject
from core.tracing import state as tracing

if TYPE_CHECKING:
    from bridge.transports.local import LocalChannel

log = logging.getLogger("plutos.bridge")

# gRPC response metadata → HTTP response header.
FORWARDED_METADATA = {
    "x-request-id": "X-Request-Id",
    "x-ratelimit-limit": "X-RateLimit-Limit",
    "x-ratelimit-remaining": "X-RateLimit-Remaining",
    "x-ratelimit-reset": "X-RateLimit-Reset",
    "retry-after": "Retry-After",
    "idempotent-replayed": "Idempotent-Replayed",
    "x-cache": "X-Cache",
    "x-process-id": "X-Process-Id",
}
_JSON = "application/json"

# (route template, HTTP method, status, seconds to the response's start) -> None
Observe = Callable[[str, str, int, float], None]


def _default_modules() -> list[ModuleType]:
    from plutos.v1 import admin_pb2, keys_pb2, models_pb2, openai_pb2, processing_pb2, usage_pb2, webhooks_pb2

    return [processing_pb2, models_pb2, usage_pb2, webhooks_pb2, keys_pb2, admin_pb2, openai_pb2]


class JsonResponse(Response):
    """A JSON response with exactly the headers Starlette's ``Response`` would give it (the given
    ones, lower-cased, then ``content-length`` and ``content-type``), built without its
    general-purpose rendering and header checks."""

    media_type = _JSON

    def __init__(self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] if headers else []
        raw.append((b"content-length", b"%d" % len(body)))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse(orjson.dumps(obj), status, headers)


def error_response(
    code: str,
    message: str,
    request_id: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    surface: Surface = REFERENCE,
) -> Response:
    """The error's body in ``surface``'s format, with the status from the error table."""
    all_headers = {"X-Request-Id": request_id, **(headers or {})}
    if details and "retryAfter" in details:
        all_headers.setdefault("Retry-After", str(details["retryAfter"]))
    if surface.openai_rate_limit_headers:
        surface.add_headers(all_headers)
    body = surface.error_body(code, message, request_id, details)
    return json_response(body, ERRORS[code].http_status, all_headers)


def _headers_from(metadata: Iterable[tuple[str, str | bytes]] | None, into: dict[str, str]) -> dict[str, str]:
    for key, value in metadata or ():
        header = FORWARDED_METADATA.get(key)
        if header is not None and isinstance(value, str):
            into[header] = value
    return into


DUPLICATE = "\x00duplicate"  # an impossible header value: the header was sent more than once


def _wanted_headers(request: Request) -> tuple[str | None, str | None, str | None, str | None]:
    """The request's ``x-request-id``, ``authorization``, ``content-length`` and ``idempotency-key``
    (the first of each, as ``request.headers.get`` gives them), found in one pass over the raw headers."""
    scope = request.scope
    found: tuple[str | None, str | None, str | None, str | None] | None = scope.get("plutos.headers")
    if found is None:
        request_id = authorization = length = idempotency_key = None
        for name, value in scope["headers"]:  # ASGI: names are lower-case
            if name == b"authorization":
                # Two Authorization headers: which one counts is ambiguous (proxies and servers
                # disagree); the request is refused (see Bridge._build_request).
                authorization = value.decode("latin-1") if authorization is None else DUPLICATE
            elif name == b"x-request-id":
                if request_id is None:
                    request_id = value.decode("latin-1")
            elif name == b"content-length":
                if length is None:
                    length = value.decode("latin-1")
            elif name == b"idempotency-key" and idempotency_key is None:
                idempotency_key = value.decode("latin-1")
        found = scope["plutos.headers"] = (request_id, authorization, length, idempotency_key)
    return found


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes (the rest is
    never read into memory)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                size += len(body)
                if size > limit:
                    return None
                chunks.append(body)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _request_id(request: Request) -> str:
    """The client's ``X-Request-Id`` if it passes the one rule (:func:`core.ids.valid_request_id`),
    else a new id; either is what the server sees, so header and body always agree."""
    return request_id_from(_wanted_headers(request)[0])


class Bridge:
    """Translates REST calls onto a gRPC channel: a loopback ``grpc.aio`` channel, or the
    in-process :class:`~bridge.transports.local.LocalChannel` (same handlers and interceptors)."""

    def __init__(
        self,
        channel: grpc.aio.Channel | LocalChannel,
        max_body_bytes: int,
        unary_timeout: float | None,
        keepalive_seconds: float,
        observe: Observe | None = None,
    ) -> None:
        self.observe = observe
        self.keepalive_seconds = keepalive_seconds
        self.channel = channel
        self.max_body_bytes = max_body_bytes
        self.unary_timeout = unary_timeout

    def endpoint(self, binding: HttpBinding, surface: Surface = REFERENCE) -> Callable[[Request], Any]:
        """The route's endpoint: the RPC's answer as JSON, or its messages as server-sent events.

        A unary RPC with a stream twin (``(plutos.v1.stream_variant)``) calls the twin instead when
        the request's named bool field is true."""
        inner = self._endpoint(binding, surface)
        observe = self.observe
        if observe is None:
            return inner
        route, http_method = binding.path, binding.http_method

        async def observed(request: Request) -> Response:
            started = perf_counter()
            response: Response = await inner(request)
            observe(route, http_method, response.status_code, perf_counter() - started)
            return response

        return observed

    def _endpoint(self, binding: HttpBinding, surface: Surface) -> Callable[[Request], Any]:
        serialize = binding.request_type.SerializeToString
        if binding.server_streaming:
            stream_rpc = self.channel.unary_stream(binding.grpc_path, serialize, binding.response_type.FromString)

            async def stream_endpoint(request: Request) -> Response:
                request_id = _request_id(request)
                message = await self._build_request(request, binding, request_id, surface)
                if isinstance(message, Response):
                    return message
                call = stream_rpc(message, metadata=self._metadata(request, request_id))
                return await self._sse(call, binding.response_type, request_id, surface)

            return stream_endpoint

        unary_rpc = self.channel.unary_unary(binding.grpc_path, serialize, binding.response_type.FromString)
        twin = binding.stream_twin
        if twin is not None:
            twin_rpc = self.channel.unary_stream(twin.grpc_path, serialize, twin.response_type.FromString)
            twin_field, twin_type = twin.field, twin.response_type

            async def either_endpoint(request: Request) -> Response:
                request_id = _request_id(request)
                message = await self._build_request(request, binding, request_id, surface)
                if isinstance(message, Response):
                    return message
                if getattr(message, twin_field):
                    call = twin_rpc(message, metadata=self._metadata(request, request_id))
                    return await self._sse(call, twin_type, request_id, surface)
                return await self._unary(unary_rpc, request, message, request_id, surface)

            return either_endpoint

        async def unary_endpoint(request: Request) -> Response:
            request_id = _request_id(request)
            message = await self._build_request(request, binding, request_id, surface)
            if isinstance(message, Response):
                return message
            return await self._unary(unary_rpc, request, message, request_id, surface)

        return unary_endpoint

    async def _unary(
        self, unary_rpc: Any, request: Request, message: Message, request_id: str, surface: Surface
    ) -> Response:
        call = unary_rpc(message, metadata=self._metadata(request, request_id), timeout=self.unary_timeout)
        # A call still running after WATCH_DISCONNECT_AFTER seconds gets a task that cancels it
        # if the client goes away; most calls are over by then and never pay for one.
        watch = _DisconnectWatch(request, call)
        timer = asyncio.get_running_loop().call_later(WATCH_DISCONNECT_AFTER, watch.start)
        try:
            reply = await call
        except grpc.aio.AioRpcError as err:
            return self._rpc_error(err, request_id, surface)
        except asyncio.CancelledError:
            if not watch.cancelled_call():
                raise
            # The client left and the watcher cancelled the call: nobody reads this answer.
            return error_response("cancelled", "The client closed the request.", request_id, surface=surface)
        finally:
            timer.cancel()
            watch.stop()
        headers = _headers_from(await call.trailing_metadata(), {"X-Request-Id": request_id})
        if surface.openai_rate_limit_headers:
            surface.add_headers(headers)
        return json_response(surface.to_obj(reply), 200, headers)

    @staticmethod
    def _metadata(request: Request, request_id: str) -> tuple[tuple[str, str], ...]:
        _, auth, _, idempotency_key = _wanted_headers(request)
        metadata: tuple[tuple[str, str], ...] = (("x-request-id", request_id),)
        if auth is not None:
            metadata += (("authorization", auth),)
        if idempotency_key is not None:
            metadata += (("idempotency-key", idempotency_key),)
        if tracing.enabled:  # over a gRPC hop the trace continues through metadata
            metadata += tuple(inject({}).items())
        return metadata

    async def _build_request(
        self, request: Request, binding: HttpBinding, request_id: str, surface: Surface
    ) -> Message | Response:
        """Body, path and query parameters → the request message, or a 400 envelope."""
        idempotency_key = _wanted_headers(request)[3]
        if idempotency_key is not None and not valid_key(idempotency_key):
            # Checked here too: gRPC metadata cannot carry what HTTP headers can (non-ASCII bytes).
            return error_response(
                "invalid_parameters",
                f"An idempotency key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                request_id,
                {"field": "Idempotency-Key"},
            )
        message = binding.request_type()
        if _wanted_headers(request)[1] == DUPLICATE:
            return error_response(
                "invalid_parameters",
                "Send the API key in one Authorization header (this request has several).",
                request_id,
                {"header": "Authorization"},
            )
        try:
            if binding.body:
                declared = _wanted_headers(request)[2]
                if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                    return self._too_large(request_id, surface)
                raw = await _read_body(request, self.max_body_bytes)
                if raw is None:
                    return self._too_large(request_id, surface)
                if raw.strip():
                    try:
                        obj = orjson.loads(raw)
                    except orjson.JSONDecodeError as err:
                        return error_response(
                            "invalid_parameters",
                            f"Malformed JSON body: {err.args[0] if err.args else err}",
                            request_id,
                            surface=surface,
                        )
                    if binding.body == "*":
                        parse_into(obj, message)
                    else:
                        parse_into({binding.body: obj}, message)
            if request.scope.get("query_string") and request.query_params:
                parse_into(self._query_object(request, binding), message)
            if binding.path_fields:
                parse_into(
                    _nest({f: request.path_params[f.replace(".", "__")] for f in binding.path_fields}),
                    message,
                )
        except JsonInputError as err:
            details = {"field": err.field} if err.field else None
            return error_response("invalid_parameters", str(err), request_id, details, surface=surface)
        return message

    @staticmethod
    def _query_object(request: Request, binding: HttpBinding) -> dict[str, Any]:
        """Query parameters named by proto name (``start_date``) or JSON name (``startDate``)."""
        fields = binding.request_type.DESCRIPTOR.fields_by_name
        by_json = {f.json_name: f for f in binding.request_type.DESCRIPTOR.fields}
        obj: dict[str, Any] = {}
        for key in request.query_params:
            field = fields.get(key) or by_json.get(key)
            if field is None:
                raise JsonInputError(f"Unknown query parameter '{echo(key)}'.", echo(key))
            values = request.query_params.getlist(key)
            obj[field.name] = values if field.is_repeated else values[-1]
        return obj

    def _too_large(self, request_id: str, surface: Surface) -> Response:
        return error_response(
            "input_too_long",
            f"Request body exceeds the limit of {self.max_body_bytes} bytes.",
            request_id,
            {"maxBytes": self.max_body_bytes},
            surface=surface,
        )

    @staticmethod
    def _rpc_error(err: grpc.aio.AioRpcError, request_id: str, surface: Surface) -> Response:
        kind, message, details = from_rpc_error(err)
        trailing: Any = err.trailing_metadata()
        headers = _headers_from(trailing, {})
        return error_response(kind.code, message, request_id, details, headers, surface)

    async def _sse(self, call: Any, response_type: type[Message], request_id: str, surface: Surface) -> Response:
        # Wait until the server accepts the call (initial metadata) or fails it: failures before
        # the first byte get the normal status and JSON envelope.
        try:
            initial = await call.initial_metadata()
        except grpc.aio.AioRpcError as err:
            return self._rpc_error(err, request_id, surface)
        # The server accepts a stream by sending its headers (x-request-id among them). Without
        # them the call failed before it began (a trailers-only answer, whose status may not be
        # read yet when the empty headers are): wait for the status.
        accepted = any(key == "x-request-id" for key, _ in initial or ())
        if call.done() or not accepted:
            code = await call.code()
            if code != grpc.StatusCode.OK:
                failed = grpc.aio.AioRpcError(code, initial, await call.trailing_metadata(), await call.details(), None)
                return self._rpc_error(failed, request_id, surface)
        headers = _headers_from(initial, {"X-Request-Id": request_id})
        if surface.openai_rate_limit_headers:
            surface.add_headers(headers)
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        oneofs = response_type.DESCRIPTOR.oneofs
        oneof_name = oneofs[0].name if oneofs else None
        return SseResponse(call, oneof_name, request_id, self.keepalive_seconds, headers, surface)


WATCH_DISCONNECT_AFTER = 0.2  # seconds


class _DisconnectWatch:
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


class SseResponse(Response):
    """The RPC's messages as server-sent events: ``event: <oneof case>\ndata: <json>\n\n`` each,
    ``event: error`` if the call fails mid-stream, ``: keep-alive`` comments after
    ``keepalive_seconds`` of silence. A client that disconnects cancels the RPC, and so the
    generation (and any upstream request) behind it.

    JSON is written as the reference shows it (``{"chunk": "partial", ...}``), ASCII-only so a
    client that decodes each network read on its own never splits a character.

    Messages are read straight from the call. One helper task per stream writes the keep-alive
    comments and watches for the disconnect (Starlette's StreamingResponse runs an anyio task
    group per response, and reading with a timeout needs a task and an ``asyncio.wait`` per
    message, since cancelling a read cancels the RPC)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        call: Any,
        oneof_name: str | None,
        request_id: str,
        keepalive_seconds: float,
        headers: dict[str, str],
        surface: Surface = REFERENCE,
    ) -> None:
        self.status_code = 200
        self.surface = surface
        self.background = None
        self.call = call
        self.oneof_name = oneof_name
        self.request_id = request_id
        self.keepalive_seconds = keepalive_seconds
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-type", b"text/event-stream; charset=utf-8"))  # as StreamingResponse's
        self.raw_headers = raw
        self._last_sent = 0.0
        self._client_gone = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        call = self.call
        helper: asyncio.Future[None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            self._last_sent = loop.time()
            helper = asyncio.ensure_future(self._keepalive_and_watch(receive, send, asyncio.current_task()))
            # In process, the messages the handler produced while this task waited (for the client
            # to take the previous write, or for the CPU) go out in one write: every event is still
            # sent, in order, but a stream that fell behind costs one send, not one per event.
            read_buffered = getattr(call, "read_buffered", None)
            try:
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                        if self.surface.sse_done:
                            await send({"type": "http.response.body", "body": self.surface.sse_done, "more_body": True})
                        break
                    frame = self._frame(message)
                    if read_buffered is not None and (waiting := read_buffered()):
                        frames = [f for f in (frame, *map(self._frame, waiting)) if f is not None]
                        frame = b"".join(frames) if frames else None
                    if frame is not None:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                        self._last_sent = loop.time()
            except grpc.aio.AioRpcError as err:
                kind, text, details = from_rpc_error(err)
                error = self.surface.frame("error", self.surface.error_body(kind.code, text, self.request_id, details))
                await send({"type": "http.response.body", "body": error, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            # The client left and the helper cancelled this task: nobody reads the rest.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            if helper is not None:
                helper.cancel()
            # The client left (or we are done): cancelling the RPC stops generation server-side.
            call.cancel()

    def _frame(self, message: Any) -> bytes | None:
        event = "message"
        payload: Any = message
        if self.oneof_name is not None:
            case = message.WhichOneof(self.oneof_name)
            if case is None:
                return None
            event, payload = case, getattr(message, case)
        return self.surface.frame(event, self.surface.to_obj(payload))

    async def _keepalive_and_watch(self, receive: Any, send: Any, streaming: asyncio.Task[Any] | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last_sent + self.keepalive_seconds - loop.time()
            if wait <= 0:
                try:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                except Exception:  # the response ended while this waited to write (flow control)
                    return
                self._last_sent = loop.time()
                continue
            try:
                async with asyncio.timeout(wait):
                    message = await receive()
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                self._client_gone = True
                if streaming is not None:
                    streaming.cancel()
                return


def _nest(flat: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def create_app(
    channel: grpc.aio.Channel | LocalChannel,
    *,
    modules: Sequence[ModuleType] | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    unary_timeout: float | None = 600.0,
    keepalive_seconds: float = 15.0,
    extra_routes: Sequence[BaseRoute] = (),
    observe: Observe | None = None,
) -> FastRoutes:
    """Build the REST app for every annotated RPC in ``modules`` (default: the plutos.v1 protos).

    ``extra_routes`` are surfaces that are not RPCs (static files, the metrics scrape, documents
    derived from the descriptors); the composition root passes them, the bridge only mounts them after
    the API's routes, under the same 404/405 envelope handlers. ``observe(route, method, status,
    seconds)``, when given, is called once per API request with its route template and status."""
    bridge = Bridge(channel, max_body_bytes, unary_timeout, keepalive_seconds, observe)
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
    routes.extend(extra_routes)
    surface_at = surface_for_path(bindings)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        request_id = _request_id(request)
        surface = surface_at(request.url.path)
        if exc.status_code == 405:
            allow = _allowed_methods(request)
            return error_response(
                "method_not_allowed",
                f"Method {request.method} is not allowed here; use {allow}.",
                request_id,
                {"allow": allow},
                {"Allow": allow},
                surface,
            )
        return error_response(
            "not_found", f"No route for {request.method} {request.url.path}.", request_id, surface=surface
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        return _internal_error(request)

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
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception:
            response = _internal_error(request)
        await response(scope, receive, send)


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path: Starlette's 405 names only the first route that
    matched the path, and one path often has several RPCs (GET and POST /v1/webhooks)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return ", ".join(sorted(methods))


def _internal_error(request: Request) -> Response:
    """An endpoint raised: logged with its traceback; the caller gets the envelope, not the trace."""
    log.exception("bridge error on %s %s", request.method, request.url.path)
    return error_response("internal_error", "Internal server error.", _request_id(request))
