"""A thin gRPC client over the generated stubs (install the extra: ``pip install 'plutos-ai[grpc]'``).

    from plutos_ai.grpc import PlutosGrpcClient

    with PlutosGrpcClient("localhost:50051", api_key="...") as client:
        response = client.process(input="Hello", model="smollm2-135m", options={"max_tokens": 20})
        print(response.output, response.usage.total_tokens)

Methods return the protobuf messages of ``plutos_ai._gen.plutos.v1`` (re-exported here as
``processing_pb2``, ``models_pb2``, ``usage_pb2``, ``webhooks_pb2``). Failures raise the same
exceptions as the REST client: the class comes from the ``google.rpc.ErrorInfo.reason`` in the
status details (the reference's code string), else from the gRPC status code. A failure to reach the
server (UNAVAILABLE without ErrorInfo) raises ``APIConnectionError``; an expired client deadline
(DEADLINE_EXCEEDED without ErrorInfo) raises ``APITimeoutError``.

Unary calls are retried like REST calls (rate limits, unavailability, connection failures).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:
    import grpc
    import grpc.aio
    from google.protobuf import json_format, struct_pb2
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"plutos_ai.grpc needs the gRPC extra ({exc.name} is missing): pip install 'plutos-ai[grpc]'"
    ) from exc

from ._base import resolve_api_key
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    PlutosError,
    error_for_grpc_status,
)
from ._gen.plutos.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    processing_pb2,
    processing_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from ._options import Options, format_date, normalize_options
from ._retry import RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_TARGET",
    "AsyncGrpcStream",
    "AsyncPlutosGrpcClient",
    "GrpcStream",
    "PlutosGrpcClient",
    "error_from_rpc",
    "models_pb2",
    "process_options",
    "processing_pb2",
    "usage_pb2",
    "webhooks_pb2",
]

DEFAULT_TARGET = "localhost:50051"
# Seconds per attempt: one default for every PlutosAI SDK (TypeScript 600 000 ms, Go
# DefaultTimeout = 10 min), the longest a REST call may run on the server (its unary timeout).
DEFAULT_TIMEOUT = 600.0

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

ChannelOptions = Sequence[tuple[str, Any]]


# -- conversions ------------------------------------------------------------------------------------


def process_options(
    options: Options | processing_pb2.ProcessOptions | None,
) -> processing_pb2.ProcessOptions | None:
    """Options (camelCase or snake_case keys, as for the REST client) -> ``ProcessOptions``."""
    if options is None or isinstance(options, processing_pb2.ProcessOptions):
        return options
    wire = normalize_options(options) or {}
    try:
        return json_format.ParseDict(wire, processing_pb2.ProcessOptions())
    except json_format.ParseError as exc:
        raise ValueError(f"invalid options: {exc}") from exc


def _status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(exc, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def error_from_rpc(exc: grpc.RpcError) -> PlutosError:
    """The SDK exception for a failed RPC (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    status_code = _status_code(exc)
    try:
        status = rpc_status.from_call(cast(grpc.Call, exc))
    except (ValueError, AttributeError, TypeError):  # inconsistent or unreadable status details
        status = None
    details_fn = getattr(exc, "details", None)
    message = status.message if status is not None else (details_fn() if callable(details_fn) else "") or ""

    reason: str | None = None
    details: dict[str, Any] = {}
    retry_after: float | None = None
    request_id: str | None = None
    for packed in status.details if status is not None else ():
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason = info.reason or None
            details.update(info.metadata)
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
            retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        elif packed.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            req = error_details_pb2.RequestInfo()
            packed.Unpack(req)
            request_id = req.request_id or None
        elif packed.Is(struct_pb2.Struct.DESCRIPTOR):  # the envelope's `details` object
            struct = struct_pb2.Struct()
            packed.Unpack(struct)
            details.update(_integral(json_format.MessageToDict(struct)))
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            details["fieldViolations"] = [
                {"field": v.field, "description": v.description} for v in bad.field_violations
            ]
    if retry_after is None:
        retry_after = parse_retry_after(details.get("retryAfter"))
    if request_id is None:
        request_id = details.get("requestId") or _metadata_value(exc, "x-request-id")

    if reason is None and status_code == grpc.StatusCode.UNAVAILABLE:
        return APIConnectionError(f"gRPC connection error: {message}")
    if reason is None and status_code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return APITimeoutError(f"gRPC deadline exceeded: {message}")
    if status_code == grpc.StatusCode.CANCELLED and reason is None:
        return APIConnectionError(f"gRPC call cancelled: {message}")
    return error_for_grpc_status(
        status_code.name,
        message,
        reason=reason,
        details=details,
        request_id=request_id,
        retry_after=retry_after,
    )


def _integral(value: Any) -> Any:
    # Struct numbers are doubles: show integral ones as ints (retryAfter: 60, not 60.0), as REST does.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _metadata_value(exc: grpc.RpcError, key: str) -> str | None:
    """A response metadata value (trailing first, then initial) of a failed call."""
    for attr in ("trailing_metadata", "initial_metadata"):
        getter = getattr(exc, attr, None)
        try:
            metadata = getter() if callable(getter) else None
        except Exception:  # pragma: no cover - defensive: metadata unavailable
            continue
        for item in metadata or ():
            if isinstance(item, tuple) and len(item) == 2 and item[0] == key:
                value = item[1]
                return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _date(value: str | dt.date | None) -> str:
    return format_date(value) or ""


def _channel_credentials(
    secure: bool,
    credentials: grpc.ChannelCredentials | None,
    ca_file: str | None = None,
    client_cert_file: str | None = None,
    client_key_file: str | None = None,
) -> grpc.ChannelCredentials | None:
    if credentials is not None:
        return credentials
    if ca_file or client_cert_file:
        if bool(client_cert_file) != bool(client_key_file):
            raise ValueError("client_cert_file and client_key_file go together")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(ca_file),
            private_key=_read(client_key_file),
            certificate_chain=_read(client_cert_file),
        )
    return grpc.ssl_channel_credentials() if secure else None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


# -- sync -------------------------------------------------------------------------------------------


class PlutosGrpcClient:
    """Blocking gRPC client.

    Args:
        target: ``host:port``; defaults to ``$PLUTOS_GRPC_TARGET``, else ``localhost:50051``.
        api_key: sent as ``authorization: Bearer <key>`` metadata; defaults to ``$PLUTOS_API_KEY``.
        secure: use TLS (system roots) instead of a plaintext channel.
        credentials: explicit channel credentials (implies TLS).
        ca_file: PEM CA bundle to trust instead of the system roots (implies TLS).
        client_cert_file, client_key_file: PEM client certificate (chain) and key, for servers that
            require one (mTLS; implies TLS).
        timeout: deadline in seconds for unary calls (streams have none unless ``stream_timeout``).
        max_retries: retries of unary calls failing with a retryable error.
        channel: use this channel instead of creating one (it is not closed by ``close()``).
    """

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        ca_file: str | None = None,
        client_cert_file: str | None = None,
        client_key_file: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        stream_timeout: float | None = None,
        max_retries: int = 2,
        channel_options: ChannelOptions | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = target or os.environ.get("PLUTOS_GRPC_TARGET") or DEFAULT_TARGET
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._retry = RetryPolicy(max_retries=max_retries)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {self.api_key}"),)
        self._owns_channel = channel is None
        if channel is None:
            creds = _channel_credentials(secure, credentials, ca_file, client_cert_file, client_key_file)
            opts = list(channel_options or [])
            channel = (
                grpc.secure_channel(self.target, creds, opts)
                if creds is not None
                else grpc.insecure_channel(self.target, opts)
            )
        self._channel = channel
        self._processing = processing_pb2_grpc.ProcessingServiceStub(channel)
        self._models = models_pb2_grpc.ModelsServiceStub(channel)
        self._usage = usage_pb2_grpc.UsageServiceStub(channel)
        self._webhooks = webhooks_pb2_grpc.WebhooksServiceStub(channel)
        self._keys = keys_pb2_grpc.KeysServiceStub(channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(channel)
        self._sleep: Callable[[float], object] = time.sleep

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> PlutosGrpcClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        retries = 0
        while True:
            try:
                return method(request, metadata=self._metadata, timeout=self.timeout)
            except grpc.RpcError as exc:
                error, cause = error_from_rpc(exc), exc
            delay = self._retry.delay(error, retries)
            if delay is None:
                raise error from cause
            self._sleep(delay)
            retries += 1

    def process(
        self, input: str, model: str, options: Options | processing_pb2.ProcessOptions | None = None
    ) -> processing_pb2.ProcessResponse:
        """``ProcessingService.Process``: one input through a model."""
        request = processing_pb2.ProcessRequest(input=input, model=model, options=process_options(options))
        return self._call(self._processing.Process, request)

    def get_process(self, id: str) -> processing_pb2.GetProcessResponse:
        """``ProcessingService.GetProcess``: a stored result."""
        return self._call(self._processing.GetProcess, processing_pb2.GetProcessRequest(id=id))

    def batch(
        self,
        inputs: Sequence[str],
        model: str,
        options: Options | processing_pb2.ProcessOptions | None = None,
    ) -> processing_pb2.BatchResponse:
        """``ProcessingService.Batch``: up to 100 inputs."""
        if isinstance(inputs, str):
            raise TypeError("inputs must be a list of strings, not a single string")
        request = processing_pb2.BatchRequest(
            inputs=list(inputs), model=model, options=process_options(options)
        )
        return self._call(self._processing.Batch, request)

    def stream(
        self, input: str, model: str, options: Options | processing_pb2.ProcessOptions | None = None
    ) -> GrpcStream:
        """``ProcessingService.Stream``: ``StreamResponse`` messages (``chunk``..., then ``complete``).

        Use the returned stream as a context manager: leaving it cancels the RPC.
        """
        request = processing_pb2.StreamRequest(input=input, model=model, options=process_options(options))
        call = self._processing.Stream(request, metadata=self._metadata, timeout=self.stream_timeout)
        return GrpcStream(call)

    def list_models(self) -> models_pb2.ListModelsResponse:
        """``ModelsService.ListModels``."""
        return self._call(self._models.ListModels, models_pb2.ListModelsRequest())

    def get_usage(
        self, start_date: str | dt.date | None = None, end_date: str | dt.date | None = None
    ) -> usage_pb2.GetUsageResponse:
        """``UsageService.GetUsage``; dates are inclusive ``YYYY-MM-DD`` (str or date)."""
        request = usage_pb2.GetUsageRequest(start_date=_date(start_date), end_date=_date(end_date))
        return self._call(self._usage.GetUsage, request)

    def create_webhook(
        self, url: str, events: Sequence[str], secret: str | None = None
    ) -> webhooks_pb2.CreateWebhookResponse:
        """``WebhooksService.CreateWebhook``."""
        request = webhooks_pb2.CreateWebhookRequest(url=url, events=list(events), secret=secret or "")
        return self._call(self._webhooks.CreateWebhook, request)

    def list_webhooks(self) -> webhooks_pb2.ListWebhooksResponse:
        """``WebhooksService.ListWebhooks``."""
        return self._call(self._webhooks.ListWebhooks, webhooks_pb2.ListWebhooksRequest())

    def delete_webhook(self, id: str) -> webhooks_pb2.DeleteWebhookResponse:
        """``WebhooksService.DeleteWebhook``."""
        return self._call(self._webhooks.DeleteWebhook, webhooks_pb2.DeleteWebhookRequest(id=id))

    # -- management (request messages in, response messages out; see docs/management-api.md) --

    def create_key(self, request: keys_pb2.CreateKeyRequest) -> keys_pb2.CreateKeyResponse:
        """KeysService.CreateKey."""
        return self._call(self._keys.CreateKey, request)

    def list_keys(self, request: keys_pb2.ListKeysRequest) -> keys_pb2.ListKeysResponse:
        """KeysService.ListKeys."""
        return self._call(self._keys.ListKeys, request)

    def get_key(self, request: keys_pb2.GetKeyRequest) -> keys_pb2.GetKeyResponse:
        """KeysService.GetKey."""
        return self._call(self._keys.GetKey, request)

    def update_key(self, request: keys_pb2.UpdateKeyRequest) -> keys_pb2.UpdateKeyResponse:
        """KeysService.UpdateKey."""
        return self._call(self._keys.UpdateKey, request)

    def rotate_key(self, request: keys_pb2.RotateKeyRequest) -> keys_pb2.RotateKeyResponse:
        """KeysService.RotateKey."""
        return self._call(self._keys.RotateKey, request)

    def revoke_key(self, request: keys_pb2.RevokeKeyRequest) -> keys_pb2.RevokeKeyResponse:
        """KeysService.RevokeKey."""
        return self._call(self._keys.RevokeKey, request)

    def list_processes(
        self, request: processing_pb2.ListProcessesRequest
    ) -> processing_pb2.ListProcessesResponse:
        """ProcessingService.ListProcesses."""
        return self._call(self._processing.ListProcesses, request)

    def get_daily_usage(self, request: usage_pb2.GetDailyUsageRequest) -> usage_pb2.GetDailyUsageResponse:
        """UsageService.GetDailyUsage."""
        return self._call(self._usage.GetDailyUsage, request)

    def list_webhook_deliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        """WebhooksService.ListWebhookDeliveries."""
        return self._call(self._webhooks.ListWebhookDeliveries, request)

    def redeliver_webhook_delivery(
        self, request: webhooks_pb2.RedeliverWebhookDeliveryRequest
    ) -> webhooks_pb2.RedeliverWebhookDeliveryResponse:
        """WebhooksService.RedeliverWebhookDelivery."""
        return self._call(self._webhooks.RedeliverWebhookDelivery, request)

    def test_webhook(self, request: webhooks_pb2.TestWebhookRequest) -> webhooks_pb2.TestWebhookResponse:
        """WebhooksService.TestWebhook."""
        return self._call(self._webhooks.TestWebhook, request)

    def create_account(self, request: admin_pb2.CreateAccountRequest) -> admin_pb2.CreateAccountResponse:
        """AdminService.CreateAccount."""
        return self._call(self._admin.CreateAccount, request)

    def list_accounts(self, request: admin_pb2.ListAccountsRequest) -> admin_pb2.ListAccountsResponse:
        """AdminService.ListAccounts."""
        return self._call(self._admin.ListAccounts, request)

    def get_account(self, request: admin_pb2.GetAccountRequest) -> admin_pb2.GetAccountResponse:
        """AdminService.GetAccount."""
        return self._call(self._admin.GetAccount, request)

    def update_account(self, request: admin_pb2.UpdateAccountRequest) -> admin_pb2.UpdateAccountResponse:
        """AdminService.UpdateAccount."""
        return self._call(self._admin.UpdateAccount, request)

    def list_audit_events(
        self, request: admin_pb2.ListAuditEventsRequest
    ) -> admin_pb2.ListAuditEventsResponse:
        """AdminService.ListAuditEvents."""
        return self._call(self._admin.ListAuditEvents, request)


class GrpcStream(Iterator[processing_pb2.StreamResponse]):
    """The messages of a ``Stream`` RPC; errors are raised as SDK exceptions."""

    def __init__(self, call: grpc.CallIterator[processing_pb2.StreamResponse]) -> None:
        self._call = call
        self._messages = iter(call)

    def __iter__(self) -> GrpcStream:
        return self

    def __next__(self) -> processing_pb2.StreamResponse:
        try:
            return next(self._messages)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def cancel(self) -> None:
        """Cancel the RPC (the server stops generating)."""
        self._call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves RpcContext.cancel untyped

    close = cancel

    def __enter__(self) -> GrpcStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()


# -- async ------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    _ProcessingAsyncStub = processing_pb2_grpc.ProcessingServiceAsyncStub
    _ModelsAsyncStub = models_pb2_grpc.ModelsServiceAsyncStub
    _UsageAsyncStub = usage_pb2_grpc.UsageServiceAsyncStub
    _WebhooksAsyncStub = webhooks_pb2_grpc.WebhooksServiceAsyncStub
    _KeysAsyncStub = keys_pb2_grpc.KeysServiceAsyncStub
    _AdminAsyncStub = admin_pb2_grpc.AdminServiceAsyncStub


class AsyncPlutosGrpcClient:
    """The asyncio twin of ``PlutosGrpcClient`` (``grpc.aio``); same arguments and methods, awaited."""

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        ca_file: str | None = None,
        client_cert_file: str | None = None,
        client_key_file: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        stream_timeout: float | None = None,
        max_retries: int = 2,
        channel_options: ChannelOptions | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.target = target or os.environ.get("PLUTOS_GRPC_TARGET") or DEFAULT_TARGET
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._retry = RetryPolicy(max_retries=max_retries)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {self.api_key}"),)
        self._owns_channel = channel is None
        if channel is None:
            creds = _channel_credentials(secure, credentials, ca_file, client_cert_file, client_key_file)
            opts = list(channel_options or [])
            channel = (
                grpc.aio.secure_channel(self.target, creds, opts)
                if creds is not None
                else grpc.aio.insecure_channel(self.target, opts)
            )
        self._channel = channel
        self._processing = cast("_ProcessingAsyncStub", processing_pb2_grpc.ProcessingServiceStub(channel))
        self._models = cast("_ModelsAsyncStub", models_pb2_grpc.ModelsServiceStub(channel))
        self._usage = cast("_UsageAsyncStub", usage_pb2_grpc.UsageServiceStub(channel))
        self._webhooks = cast("_WebhooksAsyncStub", webhooks_pb2_grpc.WebhooksServiceStub(channel))
        self._keys = cast("_KeysAsyncStub", keys_pb2_grpc.KeysServiceStub(channel))
        self._admin = cast("_AdminAsyncStub", admin_pb2_grpc.AdminServiceStub(channel))
        self._sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close(None)

    aclose = close

    async def __aenter__(self) -> AsyncPlutosGrpcClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        retries = 0
        while True:
            try:
                return await method(request, metadata=self._metadata, timeout=self.timeout)
            except grpc.RpcError as exc:
                error, cause = error_from_rpc(exc), exc
            delay = self._retry.delay(error, retries)
            if delay is None:
                raise error from cause
            await self._sleep(delay)
            retries += 1

    async def process(
        self, input: str, model: str, options: Options | processing_pb2.ProcessOptions | None = None
    ) -> processing_pb2.ProcessResponse:
        request = processing_pb2.ProcessRequest(input=input, model=model, options=process_options(options))
        return await self._call(self._processing.Process, request)

    async def get_process(self, id: str) -> processing_pb2.GetProcessResponse:
        return await self._call(self._processing.GetProcess, processing_pb2.GetProcessRequest(id=id))

    async def batch(
        self,
        inputs: Sequence[str],
        model: str,
        options: Options | processing_pb2.ProcessOptions | None = None,
    ) -> processing_pb2.BatchResponse:
        if isinstance(inputs, str):
            raise TypeError("inputs must be a list of strings, not a single string")
        request = processing_pb2.BatchRequest(
            inputs=list(inputs), model=model, options=process_options(options)
        )
        return await self._call(self._processing.Batch, request)

    def stream(
        self, input: str, model: str, options: Options | processing_pb2.ProcessOptions | None = None
    ) -> AsyncGrpcStream:
        """Not a coroutine: returns an ``AsyncGrpcStream`` to ``async for`` over (and ``async with``)."""
        request = processing_pb2.StreamRequest(input=input, model=model, options=process_options(options))
        call = self._processing.Stream(request, metadata=self._metadata, timeout=self.stream_timeout)
        return AsyncGrpcStream(call)

    async def list_models(self) -> models_pb2.ListModelsResponse:
        return await self._call(self._models.ListModels, models_pb2.ListModelsRequest())

    async def get_usage(
        self, start_date: str | dt.date | None = None, end_date: str | dt.date | None = None
    ) -> usage_pb2.GetUsageResponse:
        request = usage_pb2.GetUsageRequest(start_date=_date(start_date), end_date=_date(end_date))
        return await self._call(self._usage.GetUsage, request)

    async def create_webhook(
        self, url: str, events: Sequence[str], secret: str | None = None
    ) -> webhooks_pb2.CreateWebhookResponse:
        request = webhooks_pb2.CreateWebhookRequest(url=url, events=list(events), secret=secret or "")
        return await self._call(self._webhooks.CreateWebhook, request)

    async def list_webhooks(self) -> webhooks_pb2.ListWebhooksResponse:
        return await self._call(self._webhooks.ListWebhooks, webhooks_pb2.ListWebhooksRequest())

    async def delete_webhook(self, id: str) -> webhooks_pb2.DeleteWebhookResponse:
        return await self._call(self._webhooks.DeleteWebhook, webhooks_pb2.DeleteWebhookRequest(id=id))

    # -- management (request messages in, response messages out; see docs/management-api.md) --

    async def create_key(self, request: keys_pb2.CreateKeyRequest) -> keys_pb2.CreateKeyResponse:
        """KeysService.CreateKey."""
        return await self._call(self._keys.CreateKey, request)

    async def list_keys(self, request: keys_pb2.ListKeysRequest) -> keys_pb2.ListKeysResponse:
        """KeysService.ListKeys."""
        return await self._call(self._keys.ListKeys, request)

    async def get_key(self, request: keys_pb2.GetKeyRequest) -> keys_pb2.GetKeyResponse:
        """KeysService.GetKey."""
        return await self._call(self._keys.GetKey, request)

    async def update_key(self, request: keys_pb2.UpdateKeyRequest) -> keys_pb2.UpdateKeyResponse:
        """KeysService.UpdateKey."""
        return await self._call(self._keys.UpdateKey, request)

    async def rotate_key(self, request: keys_pb2.RotateKeyRequest) -> keys_pb2.RotateKeyResponse:
        """KeysService.RotateKey."""
        return await self._call(self._keys.RotateKey, request)

    async def revoke_key(self, request: keys_pb2.RevokeKeyRequest) -> keys_pb2.RevokeKeyResponse:
        """KeysService.RevokeKey."""
        return await self._call(self._keys.RevokeKey, request)

    async def list_processes(
        self, request: processing_pb2.ListProcessesRequest
    ) -> processing_pb2.ListProcessesResponse:
        """ProcessingService.ListProcesses."""
        return await self._call(self._processing.ListProcesses, request)

    async def get_daily_usage(
        self, request: usage_pb2.GetDailyUsageRequest
    ) -> usage_pb2.GetDailyUsageResponse:
        """UsageService.GetDailyUsage."""
        return await self._call(self._usage.GetDailyUsage, request)

    async def list_webhook_deliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        """WebhooksService.ListWebhookDeliveries."""
        return await self._call(self._webhooks.ListWebhookDeliveries, request)

    async def redeliver_webhook_delivery(
        self, request: webhooks_pb2.RedeliverWebhookDeliveryRequest
    ) -> webhooks_pb2.RedeliverWebhookDeliveryResponse:
        """WebhooksService.RedeliverWebhookDelivery."""
        return await self._call(self._webhooks.RedeliverWebhookDelivery, request)

    async def test_webhook(
        self, request: webhooks_pb2.TestWebhookRequest
    ) -> webhooks_pb2.TestWebhookResponse:
        """WebhooksService.TestWebhook."""
        return await self._call(self._webhooks.TestWebhook, request)

    async def create_account(
        self, request: admin_pb2.CreateAccountRequest
    ) -> admin_pb2.CreateAccountResponse:
        """AdminService.CreateAccount."""
        return await self._call(self._admin.CreateAccount, request)

    async def list_accounts(self, request: admin_pb2.ListAccountsRequest) -> admin_pb2.ListAccountsResponse:
        """AdminService.ListAccounts."""
        return await self._call(self._admin.ListAccounts, request)

    async def get_account(self, request: admin_pb2.GetAccountRequest) -> admin_pb2.GetAccountResponse:
        """AdminService.GetAccount."""
        return await self._call(self._admin.GetAccount, request)

    async def update_account(
        self, request: admin_pb2.UpdateAccountRequest
    ) -> admin_pb2.UpdateAccountResponse:
        """AdminService.UpdateAccount."""
        return await self._call(self._admin.UpdateAccount, request)

    async def list_audit_events(
        self, request: admin_pb2.ListAuditEventsRequest
    ) -> admin_pb2.ListAuditEventsResponse:
        """AdminService.ListAuditEvents."""
        return await self._call(self._admin.ListAuditEvents, request)


class AsyncGrpcStream(AsyncIterator[processing_pb2.StreamResponse]):
    """The messages of a ``Stream`` RPC over ``grpc.aio``; errors are raised as SDK exceptions."""

    def __init__(self, call: grpc.aio.UnaryStreamCall[Any, processing_pb2.StreamResponse]) -> None:
        self._call = call
        self._messages: AsyncIterator[processing_pb2.StreamResponse] = call.__aiter__()

    def __aiter__(self) -> AsyncGrpcStream:
        return self

    async def __anext__(self) -> processing_pb2.StreamResponse:
        try:
            return await self._messages.__anext__()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def cancel(self) -> None:
        """Cancel the RPC (the server stops generating)."""
        self._call.cancel()

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> AsyncGrpcStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()
