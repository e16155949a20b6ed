"""The asynchronous REST client, ``AsyncPlutosAI``: the same API as ``PlutosAI``, awaited."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _management as m
from ._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    STREAM_ENDED_EARLY,
    BaseClient,
    Environment,
    batch_body,
    connection_error,
    decode_json,
    error_from_response,
    event_from_sse,
    new_idempotency_key,
    path_segment,
    process_body,
    tls_options,
    usage_params,
    webhook_body,
)
from ._exceptions import APIConnectionError, PlutosError
from ._management_types import (
    Account,
    ApiKey,
    AuditEvent,
    CreatedKey,
    DailyUsage,
    KeyRotation,
    Page,
    ProcessHistoryItem,
    ResultList,
    WebhookDelivery,
    WebhookTestResult,
    with_request_id,
)
from ._options import Options
from ._sse import SSEParser
from ._types import (
    BatchResult,
    Model,
    ProcessRecord,
    ProcessResult,
    StreamComplete,
    StreamEvent,
    UsageReport,
    Webhook,
    WebhookDeletion,
)

_T = TypeVar("_T")

__all__ = ["AsyncPlutosAI", "AsyncStream"]


class AsyncPlutosAI(BaseClient):
    """Asynchronous client for the PlutosAI REST API.

    Args:
        api_key: the API key; defaults to ``$PLUTOS_API_KEY``.
        environment: ``"production"``, ``"staging"`` or ``"development"`` (http://localhost:3000/v1).
        base_url: overrides the environment's URL (default: ``$PLUTOS_BASE_URL`` if set).
        timeout: seconds, or an ``httpx.Timeout``, per attempt.
        max_retries: retries of rate-limited (429), 502/503/504 and failed-connection requests.
        default_headers: extra headers sent with every request.
        http_client: an ``httpx.AsyncClient`` to send requests with (it is not closed by ``aclose()``).
        ca_file: PEM CA bundle to trust for HTTPS instead of the system's (e.g. a private CA).
        client_cert: PEM client certificate file (with its key), or ``(cert_file, key_file)``.

    Use it as an async context manager, or call ``aclose()``, to release connections.
    """

    def __init__(
        self,
        api_key: str | None = None,
        environment: Environment = "production",
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        ca_file: str | None = None,
        client_cert: str | tuple[str, str] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            environment=environment,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        if http_client is None:
            http_client = httpx.AsyncClient(**tls_options(ca_file, client_cert))
        self._http = http_client
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # -- lifecycle --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool (unless the ``httpx.AsyncClient`` was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncPlutosAI:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- API --------------------------------------------------------------------------------------

    async def process_data(
        self, input: str, model: str, options: Options | None = None, *, idempotency_key: str | None = None
    ) -> ProcessResult:
        """Process one input with a model (``POST /process``).

        ``options`` takes camelCase or snake_case keys: ``{"temperature": 0.7, "max_tokens": 100}``.
        """
        data, request_id = await self._request_with_id(
            "POST", "/process", json_body=process_body(input, model, options), idempotency_key=idempotency_key
        )
        return replace(ProcessResult.from_json(data), request_id=request_id)

    async def get_process(self, id: str) -> ProcessRecord:
        """Retrieve a stored processing result (``GET /process/{id}``)."""
        data, request_id = await self._request_with_id("GET", f"/process/{path_segment(id)}")
        return replace(ProcessRecord.from_json(data), request_id=request_id)

    async def batch(
        self,
        inputs: list[str],
        model: str,
        options: Options | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """Process up to 100 inputs in one request (``POST /batch``); results keep the input order."""
        data, request_id = await self._request_with_id(
            "POST", "/batch", json_body=batch_body(inputs, model, options), idempotency_key=idempotency_key
        )
        return replace(BatchResult.from_json(data), request_id=request_id)

    def stream(
        self, input: str, model: str, options: Options | None = None, *, idempotency_key: str | None = None
    ) -> AsyncStream:
        """Stream the output as it is generated (``POST /stream``, Server-Sent Events).

        Not a coroutine: returns an ``AsyncStream``; ``async for`` over it yields ``StreamChunk``
        objects followed by one ``StreamComplete`` (whole output, usage, id). Use it as an async
        context manager so that leaving early closes the connection (which cancels generation on
        the server)::

            async with client.stream(input="Hi", model="m") as stream:
                async for event in stream:
                    print(event.output, end="")

        The request is sent on entering the ``async with`` block or on the first iteration; request
        errors (bad key, unknown model...) are raised there.
        """
        return AsyncStream(self, process_body(input, model, options), idempotency_key)

    async def list_models(self) -> list[Model]:
        """The model catalogue (``GET /models``)."""
        data = await self._request("GET", "/models")
        models = data.get("models") if isinstance(data, Mapping) else None
        return [Model.from_json(m) for m in models or []]

    async def get_usage(
        self, start_date: str | dt.date | None = None, end_date: str | dt.date | None = None
    ) -> UsageReport:
        """Usage statistics and limits (``GET /usage``); dates are inclusive, ``YYYY-MM-DD``."""
        data, request_id = await self._request_with_id(
            "GET", "/usage", params=usage_params(start_date, end_date)
        )
        return replace(UsageReport.from_json(data), request_id=request_id)

    async def create_webhook(
        self, url: str, events: list[str], secret: str | None = None, *, idempotency_key: str | None = None
    ) -> Webhook:
        """Register a webhook (``POST /webhooks``). Deliveries are signed with ``secret``; without
        one the server generates a ``whsec_`` secret, returned once as the result's ``secret``."""
        data, request_id = await self._request_with_id(
            "POST", "/webhooks", json_body=webhook_body(url, events, secret), idempotency_key=idempotency_key
        )
        return replace(Webhook.from_json(data), request_id=request_id)

    async def list_webhooks(self) -> list[Webhook]:
        """The caller's webhooks (``GET /webhooks``)."""
        data = await self._request("GET", "/webhooks")
        hooks = data.get("webhooks") if isinstance(data, Mapping) else None
        return [Webhook.from_json(h) for h in hooks or []]

    async def delete_webhook(self, id: str) -> WebhookDeletion:
        """Remove a webhook (``DELETE /webhooks/{id}``)."""
        data, request_id = await self._request_with_id("DELETE", f"/webhooks/{path_segment(id)}")
        return replace(WebhookDeletion.from_json(data), request_id=request_id)

    # -- management (keys, accounts, audit, history, daily usage, deliveries) ----------------------

    async def create_key(
        self,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        models: list[str] | None = None,
        limits: Mapping[str, int] | None = None,
        expires_at: dt.datetime | str | None = None,
        account_id: str | None = None,
        cache_default: str | None = None,
    ) -> CreatedKey:
        """Create an API key (``POST /keys``; with ``account_id``: ``POST /admin/accounts/{id}/keys``).

        Needs the ``keys`` scope (``admin`` with ``account_id``). The secret is in the result only.
        ``limits`` takes ``requests_per_minute``, ``requests_per_hour``, ``requests_per_day``,
        ``concurrent_requests``. ``cache_default``: ``options.cache`` for the key's calls that do not
        set it (``"use"``, ``"refresh"``, ``"bypass"``). Raises ``InvalidParametersError`` for anything
        the caller may not grant."""
        return await self._call(
            m.create_key(
                name=name,
                scopes=scopes,
                models=models,
                limits=limits,
                expires_at=expires_at,
                account_id=account_id,
                cache_default=cache_default,
            )
        )

    async def list_keys(
        self,
        *,
        account_id: str | None = None,
    ) -> ResultList[ApiKey]:
        """The account's keys, prefixes only (``GET /keys``)."""
        return await self._call(m.list_keys(account_id))

    async def get_key(
        self,
        id: str,
        *,
        account_id: str | None = None,
    ) -> ApiKey:
        """One key (``GET /keys/{id}``); ``NotFoundError`` for another account's."""
        return await self._call(m.get_key(id, account_id))

    async def update_key(
        self,
        id: str,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        models: list[str] | None = None,
        limits: Mapping[str, int] | None = None,
        expires_at: dt.datetime | str | None = None,
        account_id: str | None = None,
        cache_default: str | None = None,
    ) -> ApiKey:
        """Change a key (``PATCH /keys/{id}``): only the arguments given; ``models=[]`` allows every model."""
        return await self._call(
            m.update_key(
                id,
                name=name,
                scopes=scopes,
                models=models,
                limits=limits,
                expires_at=expires_at,
                account_id=account_id,
                cache_default=cache_default,
            )
        )

    async def rotate_key(
        self,
        id: str,
        *,
        grace_seconds: int | None = None,
        account_id: str | None = None,
    ) -> KeyRotation:
        """Replace a key (``POST /keys/{id}:rotate``); the old one works ``grace_seconds`` more (default
        86400). ``ConflictError`` if the key is not active (rotated, expired, revoked)."""
        return await self._call(m.rotate_key(id, grace_seconds, account_id))

    async def revoke_key(
        self,
        id: str,
        *,
        allow_self: bool = False,
        account_id: str | None = None,
    ) -> ApiKey:
        """Revoke a key now (``POST /keys/{id}:revoke``); the calling key itself needs ``allow_self=True``."""
        return await self._call(m.revoke_key(id, allow_self, account_id))

    async def list_processes(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        model: str | None = None,
        status: str | None = None,
        start_date: str | dt.date | None = None,
        end_date: str | dt.date | None = None,
    ) -> Page[ProcessHistoryItem]:
        """The account's processing records, newest first (``GET /process``); ``limit`` 1-100 (default 20),
        ``after`` the previous page's ``last_id``."""
        return await self._call(
            m.list_processes(
                limit=limit, after=after, model=model, status=status, start_date=start_date, end_date=end_date
            )
        )

    async def get_daily_usage(
        self,
        start_date: str | dt.date | None = None,
        end_date: str | dt.date | None = None,
        *,
        model: str | None = None,
    ) -> ResultList[DailyUsage]:
        """One row per UTC day and model (``GET /usage/daily``); default: this month so far."""
        return await self._call(m.get_daily_usage(start_date, end_date, model))

    async def list_webhook_deliveries(
        self,
        webhook_id: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        status: str | None = None,
    ) -> Page[WebhookDelivery]:
        """A webhook's deliveries, newest first (``GET /webhooks/{id}/deliveries``)."""
        return await self._call(
            m.list_webhook_deliveries(webhook_id, limit=limit, after=after, status=status)
        )

    async def redeliver_webhook_delivery(
        self,
        webhook_id: str,
        delivery_id: str,
    ) -> WebhookDelivery:
        """Send a delivered or failed delivery again now (``POST .../deliveries/{id}:redeliver``);
        ``ConflictError`` while it is pending."""
        return await self._call(m.redeliver_webhook_delivery(webhook_id, delivery_id))

    async def test_webhook(
        self,
        id: str,
    ) -> WebhookTestResult:
        """Send a signed ``ping`` now and report the receiver's answer (``POST /webhooks/{id}:test``)."""
        return await self._call(m.test_webhook(id))

    async def create_account(
        self,
        *,
        name: str | None = None,
        plan: str | None = None,
    ) -> Account:
        """Create an account (``POST /admin/accounts``; ``admin`` scope); plan default ``free``."""
        return await self._call(m.create_account(name, plan))

    async def list_accounts(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> Page[Account]:
        """Accounts with this month's usage, newest first (``GET /admin/accounts``)."""
        return await self._call(m.list_accounts(limit, after))

    async def get_account(
        self,
        id: str,
    ) -> Account:
        """One account (``GET /admin/accounts/{id}``)."""
        return await self._call(m.get_account(id))

    async def update_account(
        self,
        id: str,
        *,
        name: str | None = None,
        plan: str | None = None,
        suspended: bool | None = None,
    ) -> Account:
        """Change an account's name or plan, suspend or resume it (``PATCH /admin/accounts/{id}``)."""
        return await self._call(m.update_account(id, name, plan, suspended))

    async def list_audit_events(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        account_id: str | None = None,
    ) -> Page[AuditEvent]:
        """Changes to keys and accounts, newest first (``GET /admin/audit``)."""
        return await self._call(m.list_audit_events(limit, after, account_id))

    async def _call(self, call: m.Call[_T]) -> _T:
        data, request_id = await self._request_with_id(
            call.method, call.path, json_body=call.body, params=call.params
        )
        return with_request_id(call.parse(data), request_id)

    # -- transport --------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        return (await self._request_with_id(method, path, json_body=json_body, params=params))[0]

    async def _request_with_id(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Any, str | None]:
        """The decoded JSON answer and the response's ``X-Request-Id``."""
        response = await self._send_with_retries(
            method, path, json_body=json_body, params=params, stream=False, idempotency_key=idempotency_key
        )
        self._last_response = response
        return decode_json(response), response.headers.get("x-request-id")

    async def _send_with_retries(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        stream: bool,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send until a 2xx response (returned) or an error that must not be retried (raised)."""
        # Every POST carries an idempotency key, the same on each retry: the gateway runs it once.
        if method == "POST" and idempotency_key is None:
            idempotency_key = new_idempotency_key()
        retries = 0
        while True:
            request = self._build_request(
                self._http, method, path, json_body=json_body, params=params, stream=stream
            )
            if idempotency_key is not None:
                request.headers["Idempotency-Key"] = idempotency_key
            error: PlutosError
            cause: BaseException | None = None
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error, cause = connection_error(exc), exc
            else:
                if response.is_success:
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                error = error_from_response(response)
            delay = self._retry.delay(error, retries)
            if delay is None:
                raise error from cause
            await self._sleep(delay)
            retries += 1


async def _bytes_then_end(response: httpx.Response) -> AsyncIterator[bytes | None]:
    """The response's bytes, then None for the end of the stream."""
    async for chunk in response.aiter_bytes():
        yield chunk
    yield None


class AsyncStream(AsyncIterator[StreamEvent]):
    """The events of one ``POST /stream`` call: ``StreamChunk``... then one ``StreamComplete``.

    After the stream is consumed, ``final`` holds the ``StreamComplete``.
    """

    def __init__(
        self, client: AsyncPlutosAI, body: dict[str, Any], idempotency_key: str | None = None
    ) -> None:
        self._client = client
        self._body = body
        self._idempotency_key = idempotency_key
        self._response: httpx.Response | None = None
        self._events: AsyncGenerator[StreamEvent, None] | None = None
        self._closed = False
        self.final: StreamComplete | None = None

    @property
    def response(self) -> httpx.Response | None:
        """The HTTP response, once the request has been sent."""
        return self._response

    async def _open(self) -> httpx.Response:
        if self._closed:
            raise PlutosError("the stream is closed")
        if self._response is None:
            self._response = await self._client._send_with_retries(
                "POST", "/stream", json_body=self._body, stream=True, idempotency_key=self._idempotency_key
            )
        return self._response

    async def _iter_events(self) -> AsyncGenerator[StreamEvent, None]:
        response = await self._open()
        parser = SSEParser()
        try:
            async for chunk in _bytes_then_end(response):
                for sse in parser.feed(chunk) if chunk is not None else parser.end():
                    event = event_from_sse(sse, response.headers)
                    if event is None:
                        continue
                    if isinstance(event, StreamComplete):
                        self.final = event
                    yield event
                    if self.final is not None:
                        return
            raise APIConnectionError(STREAM_ENDED_EARLY)
        except httpx.TransportError as exc:
            raise connection_error(exc) from exc
        finally:
            await response.aclose()

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._events is None:
            self._events = self._iter_events()
        return await self._events.__anext__()

    async def text(self) -> AsyncIterator[str]:
        """Only the text of each chunk (the final event's whole output is not repeated)."""
        async for event in self:
            if not event.is_final:
                yield event.output

    async def until_done(self) -> StreamComplete:
        """Consume the rest of the stream and return its ``StreamComplete``."""
        async for _ in self:
            pass
        if self.final is None:  # pragma: no cover - _iter_events raises first
            raise APIConnectionError(STREAM_ENDED_EARLY)
        return self.final

    async def aclose(self) -> None:
        """Close the connection; the server cancels generation if the stream was not finished."""
        self._closed = True
        if self._events is not None:
            await self._events.aclose()
        if self._response is not None:
            await self._response.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncStream:
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
