"""What the sync and async REST clients share: configuration, headers, error decoding, stream events."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import platform
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar

import httpx

from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    PlutosError,
    make_api_error,
)
from ._options import Options, format_date, normalize_options
from ._retry import RetryPolicy, parse_retry_after
from ._sse import ServerSentEvent
from ._types import StreamChunk, StreamComplete, StreamEvent
from ._version import __version__

__all__ = ["ENVIRONMENTS", "BaseClient", "Environment"]

Environment = Literal["production", "staging", "development"]

ENVIRONMENTS: dict[str, str] = {
    "production": "https://api.plutos-ai.com/v1",
    "staging": "https://staging-api.plutos-ai.com/v1",
    "development": "http://localhost:3000/v1",
}

# Seconds per attempt: one default for every PlutosAI SDK (TypeScript 600 000 ms, Go
# DefaultTimeout = 10 min), the longest a REST call may run on the server (its unary timeout).
DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 2


def tls_options(ca_file: str | None, client_cert: str | tuple[str, str] | None) -> dict[str, Any]:
    """``httpx.Client`` keyword arguments for a private CA bundle and a client certificate."""
    options: dict[str, Any] = {}
    if ca_file or client_cert:
        import ssl

        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        if client_cert:
            cert, key = (client_cert, None) if isinstance(client_cert, str) else client_cert
            context.load_cert_chain(cert, key)
        options["verify"] = context
    return options


def resolve_base_url(environment: str, base_url: str | None) -> str:
    """``base_url`` if given, else ``$PLUTOS_BASE_URL``, else the environment's URL."""
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}: expected one of {', '.join(ENVIRONMENTS)}")
    url = base_url or os.environ.get("PLUTOS_BASE_URL") or ENVIRONMENTS[environment]
    return url.rstrip("/")


def resolve_api_key(api_key: str | None) -> str:
    key = api_key if api_key is not None else os.environ.get("PLUTOS_API_KEY")
    if not key:
        raise PlutosError(
            "No API key: pass api_key=... to the client or set the PLUTOS_API_KEY environment variable"
        )
    return key


_C = TypeVar("_C", bound="BaseClient")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class RawResponse(Generic[_T]):
    """A result with the HTTP response that carried it (``client.with_raw_response.<method>(...)``)."""

    status_code: int
    headers: httpx.Headers
    #: The parsed result, as the method returns it.
    data: _T

    @property
    def request_id(self) -> str | None:
        """The response's ``X-Request-Id``."""
        value: str | None = self.headers.get("x-request-id")
        return value


class RawResponses:
    """``client.with_raw_response``: every JSON method of the client, returning a :class:`RawResponse`
    (status code, headers, parsed ``data``) instead of the result alone; awaitable on the async client."""

    def __init__(self, client: BaseClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if (
            name.startswith("_")
            or name in ("stream", "close", "with_options")
            or not callable(getattr(self._client, name, None))
        ):
            raise AttributeError(f"with_raw_response has no method {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            clone = self._client.with_options()
            result = getattr(clone, name)(*args, **kwargs)
            if inspect.isawaitable(result):

                async def finish() -> RawResponse[Any]:
                    return clone._raw(await result)

                return finish()
            return clone._raw(result)

        return call


class BaseClient:
    """Configuration and request/response plumbing, free of I/O."""

    _owns_http: bool  # whether close() closes the connection pool (set by the concrete clients)
    _last_response: httpx.Response | None = None  # the latest JSON answer (read by with_raw_response)

    @property
    def with_raw_response(self) -> RawResponses:
        """The same methods, returning :class:`RawResponse` (headers, status code, ``data``)::

        raw = client.with_raw_response.process_data(input="Hi", model="m")
        print(raw.headers["x-ratelimit-remaining"], raw.data.output)
        """
        return RawResponses(self)

    def _raw(self, data: _T) -> RawResponse[_T]:
        response = self._last_response
        if response is None:
            raise TypeError("this method has no single HTTP response")
        return RawResponse(response.status_code, response.headers, data)

    def __init__(
        self,
        *,
        api_key: str | None,
        environment: Environment,
        base_url: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.api_key = resolve_api_key(api_key)
        self.environment = environment
        self.base_url = resolve_base_url(environment, base_url)
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self._retry = RetryPolicy(max_retries=max_retries)
        self._default_headers = dict(default_headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def with_options(
        self: _C,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> _C:
        """A client sharing this one's connections, with other per-request settings::

            client.with_options(timeout=5, max_retries=0).process_data(input="Hi", model="m")

        ``extra_headers`` are added to every request, over ``default_headers``.
        Closing the returned client leaves the shared connections open.
        """
        clone = copy.copy(self)
        if timeout is not None:
            clone.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        if max_retries is not None:
            if max_retries < 0:
                raise ValueError("max_retries must be >= 0")
            clone.max_retries = max_retries
            clone._retry = dataclasses.replace(self._retry, max_retries=max_retries)
        clone._default_headers = {**self._default_headers, **(extra_headers or {})}
        clone._owns_http = False
        clone._last_response = None
        return clone

    # -- requests ---------------------------------------------------------------------------------

    def _headers(self, *, stream: bool = False) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"plutos-ai-python/{__version__} (Python {platform.python_version()})",
            **self._default_headers,
        }

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Request:
        return http.build_request(
            method,
            self._url(path),
            json=json_body,
            params=params,
            headers=self._headers(stream=stream),
            timeout=self.timeout,
        )


# -- payloads ---------------------------------------------------------------------------------------


def process_body(input: str, model: str, options: Options | None) -> dict[str, Any]:
    body: dict[str, Any] = {"input": input, "model": model}
    opts = normalize_options(options)
    if opts is not None:
        body["options"] = opts
    return body


def batch_body(inputs: list[str], model: str, options: Options | None) -> dict[str, Any]:
    if isinstance(inputs, str):
        raise TypeError("inputs must be a list of strings, not a single string")
    body: dict[str, Any] = {"inputs": list(inputs), "model": model}
    opts = normalize_options(options)
    if opts is not None:
        body["options"] = opts
    return body


def usage_params(start_date: Any, end_date: Any) -> dict[str, str]:
    params: dict[str, str] = {}
    if (start := format_date(start_date)) is not None:
        params["start_date"] = start
    if (end := format_date(end_date)) is not None:
        params["end_date"] = end
    return params


def webhook_body(url: str, events: list[str], secret: str | None) -> dict[str, Any]:
    if isinstance(events, str):
        raise TypeError("events must be a list of strings, not a single string")
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if secret is not None:
        body["secret"] = secret
    return body


def new_idempotency_key() -> str:
    """A fresh key for one POST, sent again on each of its retries (as the OpenAI and Stripe SDKs do)."""
    return f"plutos-py-retry-{uuid.uuid4()}"


def path_segment(value: str) -> str:
    if not value:
        raise ValueError("id must be a non-empty string")
    return urllib.parse.quote(value, safe="")


# -- responses --------------------------------------------------------------------------------------


def error_from_envelope(
    body: Any,
    *,
    status_code: int | None,
    headers: Mapping[str, str] | None = None,
    fallback_message: str = "",
) -> APIError:
    """An APIError from ``{"error": {code, message, details, requestId}}`` (and response headers)."""
    headers = headers or {}
    env = body.get("error") if isinstance(body, Mapping) else None
    env = env if isinstance(env, Mapping) else {}
    details = env.get("details")
    details = dict(details) if isinstance(details, Mapping) else {}
    code = env.get("code")
    message = env.get("message") or fallback_message or "unknown error"
    request_id = env.get("requestId") or headers.get("x-request-id")
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None:
        retry_after = parse_retry_after(details.get("retryAfter"))
    return make_api_error(
        str(message),
        status_code=status_code,
        code=str(code) if code else None,
        details=details,
        request_id=str(request_id) if request_id else None,
        retry_after=retry_after,
    )


def error_from_response(response: httpx.Response) -> APIError:
    """The APIError for a non-2xx response whose body has been read."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    fallback = response.text.strip()[:500] if body is None else ""
    return error_from_envelope(
        body,
        status_code=response.status_code,
        headers=response.headers,
        fallback_message=fallback or f"HTTP {response.status_code} {response.reason_phrase}".strip(),
    )


def decode_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise APIError(
            f"the gateway sent a response that is not JSON: {response.text[:200]!r}",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from exc


def connection_error(exc: httpx.TransportError) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out: {exc}")
    return APIConnectionError(f"connection error: {exc or type(exc).__name__}")


def event_from_sse(sse: ServerSentEvent, headers: Mapping[str, str] | None = None) -> StreamEvent | None:
    """The typed event of one SSE frame; raises the APIError of an ``error`` frame; None to skip.

    ``headers`` are the stream response's, for the request id of an error frame that has none.
    """
    if sse.event not in ("chunk", "complete", "error"):
        return None  # unknown event kinds are ignored for forward compatibility
    try:
        data = json.loads(sse.data) if sse.data else {}
    except ValueError as exc:
        raise APIConnectionError(f"malformed SSE data in {sse.event!r} event: {sse.data[:200]!r}") from exc
    if sse.event == "error":
        # The HTTP status was 200 when the stream started: the code decides the class and status.
        request_id = headers.get("x-request-id") if headers is not None else None
        raise error_from_envelope(
            data,
            status_code=None,
            headers={"x-request-id": request_id} if request_id else None,
            fallback_message="stream failed",
        )
    if sse.event == "chunk":
        return StreamChunk.from_json(data)
    return StreamComplete.from_json(data)


STREAM_ENDED_EARLY = "the stream ended before its complete event"
