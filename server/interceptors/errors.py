"""Request ids and errors: the outermost interceptor.

Gives every call a request id (the client's ``x-request-id`` or a new ``req_…``), returns it as
metadata, and turns every exception into a ``google.rpc.Status``: :class:`PlutosError` with its
code, anything unexpected as ``internal_error`` (logged with its traceback, never sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_interceptor.server import AsyncServerInterceptor
from grpc_status import rpc_status

from core.errors import ERROR_DOMAIN, PlutosError
from core.ids import new_request_id, valid_request_id
from core.tracing import end_rpc, start_rpc
from core.tracing import state as tracing
from server.call_state import CallState, current_call
from server.interceptors.base import MALFORMED_REQUEST, Handler, is_api_method, is_stream
from server.memory_release import IdleRelease
from server.observability.logs import RequestLog
from server.observability.metrics import (
    REQUESTS,
    STREAM_FIRST_MESSAGE,
    STREAM_MESSAGES,
    STREAMS_CANCELLED,
    STREAMS_OPEN,
    model_label,
)
from server.store.faults import is_transient, store_unavailable

log = logging.getLogger("plutos.errors")

DUPLICATE_AUTHORIZATION = "\x00duplicate"  # an impossible metadata value: sent more than once


def metadata_value(value: Any) -> str:
    """A detail as an ``ErrorInfo.metadata`` value (strings by the API's design): a string as is,
    anything else (numbers, booleans, lists, objects, null) as compact JSON — ``["a","b"]``,
    ``30``, ``true`` — never a Python repr. The ``Struct`` detail keeps the typed values."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=str, separators=(",", ":"))


def status_for_error(err: PlutosError) -> status_pb2.Status:
    """The rich status for an error: ErrorInfo (reason = code), the details Struct, RetryInfo."""
    info = error_details_pb2.ErrorInfo(
        reason=err.code,
        domain=ERROR_DOMAIN,
        metadata={k: metadata_value(v) for k, v in err.details.items()},
    )
    packed = []
    for msg in _detail_messages(err, info):
        anything = any_pb2.Any()
        anything.Pack(msg)
        packed.append(anything)
    return status_pb2.Status(code=err.kind.grpc_status.value[0], message=err.message, details=packed)


def _detail_messages(err: PlutosError, info: error_details_pb2.ErrorInfo) -> list[Any]:
    messages: list[Any] = [info]
    if err.details:
        details = struct_pb2.Struct()
        details.update(err.details)
        messages.append(details)
    if err.retry_after is not None:
        messages.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=err.retry_after)))
    return messages


async def abort_with_error(context: grpc.aio.ServicerContext[Any, Any], err: PlutosError, state: CallState) -> None:
    # to_status: the rich status as the call's code, message and grpc-status-details-bin trailer.
    status = rpc_status.to_status(status_for_error(err))
    await context.abort(status.code, status.details, trailing_metadata=(*state.metadata(), *status.trailing_metadata))


class ErrorInterceptor(AsyncServerInterceptor):
    """Also where every plutos.v1 call is measured once (request counter and latency histogram,
    stream gauges) and gets its request log line; both are off when not given. ``calls`` is told
    when each call starts and ends (a stream: from its first read to its end), to act once the
    process is idle."""

    def __init__(
        self, *, request_log: RequestLog | None = None, metrics: bool = True, calls: IdleRelease | None = None
    ) -> None:
        self._log = request_log
        self._metrics = REQUESTS if metrics else None
        self._calls = calls if calls is not None else IdleRelease()

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        if not is_api_method(method_name):
            response = method(request, context)
            return response if is_stream(response) else await response
        started = time.perf_counter()
        request_id, authorization, idempotency_key = _incoming(context)
        state = CallState(request_id, method_name, authorization=authorization, idempotency_key=idempotency_key)
        state.response_metadata["x-request-id"] = request_id
        current_call.set(state)
        model = model_label(getattr(request, "model", ""))
        code = "UNKNOWN"
        traced = None
        if tracing.enabled:
            traced = start_rpc(method_name, context.invocation_metadata(), request_id)
        calls = self._calls
        calls.call_started()
        try:
            if request is MALFORMED_REQUEST:
                raise PlutosError("invalid_parameters", "The request is not a valid protobuf message of this method.")
            response = method(request, context)
            if is_stream(response):
                code = ""  # measured when the stream ends
                return self._stream(response, context, state, model, started, request, traced)
            result = await response
            code = "OK"
        except PlutosError as err:
            code, state.error_code = err.kind.grpc_status.name, err.code
            await abort_with_error(context, err, state)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception as exc:
            mapped = _unexpected(exc, state)
            code, state.error_code = mapped.kind.grpc_status.name, mapped.code
            await abort_with_error(context, mapped, state)
        finally:
            calls.call_ended()  # a stream counts again from its first read (in _stream)
            if code:
                self._done(state, method_name, model, code, started, request)
                if traced is not None:
                    end_rpc(*traced, code, state.error_code)
        context.set_trailing_metadata(state.metadata())
        return result

    def _done(self, state: CallState, method_name: str, model: str, code: str, started: float, request: Any) -> None:
        if self._metrics is not None:
            self._metrics.observe(method_name, code, model, time.perf_counter() - started)
        if self._log is not None:
            self._log.write(state, method_name, model, code, started, request)

    async def _stream(
        self,
        response: AsyncIterator[Any],
        context: Any,
        state: CallState,
        model: str,
        started: float,
        request: Any,
        traced: tuple[Any, object] | None,
    ) -> AsyncIterator[Any]:
        metrics = self._metrics is not None
        if metrics:
            STREAMS_OPEN.inc()
        calls = self._calls
        calls.call_started()
        sent = 0
        code = "CANCELLED"  # unless it ends otherwise: the client went away (or the server stopped it)
        try:
            async for message in response:
                if not state.initial_metadata_sent:
                    await state.send_initial_metadata(context)
                if metrics and sent == 0:
                    STREAM_FIRST_MESSAGE.labels(model).observe(time.perf_counter() - started)
                sent += 1
                yield message
            code = "OK"
        except PlutosError as err:
            code, state.error_code = err.kind.grpc_status.name, err.code
            await abort_with_error(context, err, state)
        except (grpc.aio.AbortError, grpc.RpcError):
            code = "UNKNOWN"
            raise
        except Exception as exc:
            mapped = _unexpected(exc, state)
            code, state.error_code = mapped.kind.grpc_status.name, mapped.code
            await abort_with_error(context, mapped, state)
        finally:
            calls.call_ended()
            if code == "CANCELLED" and state.completed:
                code = "OK"  # the client left after the answer was whole and stored
            if metrics:
                STREAMS_OPEN.dec()
                if sent:
                    STREAM_MESSAGES.labels(model).inc(sent)
                if code == "CANCELLED":
                    STREAMS_CANCELLED.labels(model).inc()
            self._done(state, state.method, model, code, started, request)
            if traced is not None:
                end_rpc(*traced, code, state.error_code)
        context.set_trailing_metadata(state.metadata())


def _unexpected(exc: Exception, state: CallState) -> PlutosError:
    """An exception that is not a :class:`PlutosError`: a store that stayed busy or unreachable is
    a 503 to retry (logged without a traceback); anything else is a bug: ``internal_error``,
    logged with its traceback. The caller never sees the exception's text."""
    if is_transient(exc):
        log.warning("store unavailable in %s (request %s): %r", state.method, state.request_id, exc)
        return store_unavailable()
    log.error("internal error in %s (request %s)", state.method, state.request_id, exc_info=exc)
    return PlutosError("internal_error", "Internal server error.")


def _incoming(context: Any) -> tuple[str, str | None, str | None]:
    """The call's request id (the client's, if well-formed, or a new one), ``authorization`` and
    ``idempotency-key``."""
    request_id = authorization = idempotency_key = None
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            if request_id is None and valid_request_id(value):
                request_id = value
        elif key == "authorization" and isinstance(value, str):
            # More than one: ambiguous, refused by the auth interceptor (as a missing key is not).
            authorization = value if authorization is None else DUPLICATE_AUTHORIZATION
        elif key == "idempotency-key" and idempotency_key is None and isinstance(value, str):
            idempotency_key = value
    return request_id or new_request_id(), authorization, idempotency_key
