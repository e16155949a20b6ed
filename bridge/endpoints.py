"""Endpoint building: one generic endpoint per annotated RPC, turning a REST request into the
request message, calling the RPC, and answering with JSON or server-sent events."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from bridge.disconnect import WATCH_DISCONNECT_AFTER, DisconnectWatch
from bridge.errors import from_rpc_error
from bridge.json_codec import JsonInputError, parse_into
from bridge.json_response import error_response, headers_from, json_response
from bridge.rejections import Rejected, error_code_of
from bridge.request_reading import DUPLICATE, read_body, request_id_of, wanted_headers
from bridge.routes import HttpBinding
from bridge.sse_response import SseResponse
from bridge.surface import REFERENCE, Surface
from core.errors import echo
from core.field_ranges import TYPE_RANGES
from core.idempotency_keys import MAX_KEY_LENGTH, valid_key
from core.tracing import inject
from core.tracing import state as tracing

if TYPE_CHECKING:
    from bridge.transports.local import LocalChannel

# A decimal integer as a query value: an optional minus sign and at most 40 digits (longer text
# stays text and is refused as not an integer, without converting thousands of digits).
_DECIMAL = re.compile(r"-?[0-9]{1,40}")

# (route template, HTTP method, status, seconds to the response's start) -> None
Observe = Callable[[str, str, int, float], None]


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
        rejected: Rejected | None = None,
    ) -> None:
        self.observe = observe
        self.rejected = rejected
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
                request_id = request_id_of(request)
                message = await self._build_request(request, binding, request_id, surface)
                if isinstance(message, Response):
                    return self._refused(binding, message, request_id)
                call = stream_rpc(message, metadata=self._metadata(request, request_id))
                return await self._sse(call, binding.response_type, request_id, surface)

            return stream_endpoint

        unary_rpc = self.channel.unary_unary(binding.grpc_path, serialize, binding.response_type.FromString)
        twin = binding.stream_twin
        if twin is not None:
            twin_rpc = self.channel.unary_stream(twin.grpc_path, serialize, twin.response_type.FromString)
            twin_field, twin_type = twin.field, twin.response_type

            async def either_endpoint(request: Request) -> Response:
                request_id = request_id_of(request)
                message = await self._build_request(request, binding, request_id, surface)
                if isinstance(message, Response):
                    return self._refused(binding, message, request_id)
                if getattr(message, twin_field):
                    call = twin_rpc(message, metadata=self._metadata(request, request_id))
                    return await self._sse(call, twin_type, request_id, surface)
                return await self._unary(unary_rpc, request, message, request_id, surface)

            return either_endpoint

        async def unary_endpoint(request: Request) -> Response:
            request_id = request_id_of(request)
            message = await self._build_request(request, binding, request_id, surface)
            if isinstance(message, Response):
                return self._refused(binding, message, request_id)
            return await self._unary(unary_rpc, request, message, request_id, surface)

        return unary_endpoint

    async def _unary(
        self, unary_rpc: Any, request: Request, message: Message, request_id: str, surface: Surface
    ) -> Response:
        call = unary_rpc(message, metadata=self._metadata(request, request_id), timeout=self.unary_timeout)
        # A call still running after WATCH_DISCONNECT_AFTER seconds gets a task that cancels it
        # if the client goes away; most calls are over by then and never pay for one.
        watch = DisconnectWatch(request, call)
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
        headers = headers_from(await call.trailing_metadata(), {"X-Request-Id": request_id})
        if surface.openai_rate_limit_headers:
            surface.add_headers(headers)
        return json_response(surface.to_obj(reply), 200, headers)

    def _refused(self, binding: HttpBinding, response: Response, request_id: str) -> Response:
        """A request answered before the RPC (bad JSON, body too large, bad parameters): reported."""
        if self.rejected is not None:
            self.rejected(binding.path, binding.http_method, response.status_code, error_code_of(response), request_id)
        return response

    @staticmethod
    def _metadata(request: Request, request_id: str) -> tuple[tuple[str, str], ...]:
        _, auth, _, idempotency_key = wanted_headers(request)
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
        idempotency_key = wanted_headers(request)[3]
        if idempotency_key is not None and not valid_key(idempotency_key):
            # Checked here too: gRPC metadata cannot carry what HTTP headers can (non-ASCII bytes).
            return error_response(
                "invalid_parameters",
                f"An idempotency key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                request_id,
                {"field": "Idempotency-Key"},
                surface=surface,
            )
        message = binding.request_type()
        if wanted_headers(request)[1] == DUPLICATE:
            return error_response(
                "invalid_parameters",
                "Send the API key in one Authorization header (this request has several).",
                request_id,
                {"header": "Authorization"},
                surface=surface,
            )
        try:
            if binding.body:
                declared = wanted_headers(request)[2]
                if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                    return self._too_large(request_id, surface)
                raw = await read_body(request, self.max_body_bytes)
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
                    names = surface.proto_names
                    if binding.body == "*":
                        parse_into(obj, message, proto_names=names)
                    else:
                        parse_into({binding.body: obj}, message, proto_names=names)
            if request.scope.get("query_string") and request.query_params:
                parse_into(self._query_object(request, binding), message, proto_names=surface.proto_names)
            if binding.path_fields:
                parse_into(
                    _nest({f: request.path_params[f.replace(".", "__")] for f in binding.path_fields}),
                    message,
                    proto_names=surface.proto_names,
                )
        except JsonInputError as err:
            details = {"field": err.field} if err.field else None
            return error_response("invalid_parameters", str(err), request_id, details, surface=surface)
        return message

    @staticmethod
    def _query_object(request: Request, binding: HttpBinding) -> dict[str, Any]:
        """Query parameters named by proto name (``start_date``) or JSON name (``startDate``).
        An integer field's value written as a decimal integer is read as one (``?limit=0`` is the
        number 0, as a JSON body would send it), so a value the field cannot hold is answered
        naming the field's bounds with the number as sent (bridge/json_codec.py)."""
        fields = binding.request_type.DESCRIPTOR.fields_by_name
        by_json = {f.json_name: f for f in binding.request_type.DESCRIPTOR.fields}
        obj: dict[str, Any] = {}
        for key in request.query_params:
            field = fields.get(key) or by_json.get(key)
            if field is None:
                raise JsonInputError(f"Unknown query parameter '{echo(key)}'.", echo(key))
            values: list[Any] = request.query_params.getlist(key)
            if field.type in TYPE_RANGES:
                values = [int(v) if _DECIMAL.fullmatch(v) else v for v in values]
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
        headers = headers_from(trailing, {})
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
        # Headers leave with the first message, so an accepted stream has output: even if the call
        # has already ended in an error (the in-process transport can run a whole stream before
        # this line), its chunks and its error event go out as SSE, never a bare JSON error.
        accepted = any(key == "x-request-id" for key, _ in initial or ())
        if not accepted:
            code = await call.code()
            if code != grpc.StatusCode.OK:
                failed = grpc.aio.AioRpcError(code, initial, await call.trailing_metadata(), await call.details(), None)
                return self._rpc_error(failed, request_id, surface)
        headers = headers_from(initial, {"X-Request-Id": request_id})
        if surface.openai_rate_limit_headers:
            surface.add_headers(headers)
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        oneofs = response_type.DESCRIPTOR.oneofs
        oneof_name = oneofs[0].name if oneofs else None
        return SseResponse(call, oneof_name, request_id, self.keepalive_seconds, headers, surface)


def _nest(flat: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
