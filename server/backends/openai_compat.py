"""The ``openai-compatible`` backend: a catalogue entry served by an upstream ``/chat/completions``.

Works with OpenAI, vLLM, Ollama, llama.cpp's server and llama-cpp-python's server. Every entry
pointing at the same ``base_url`` shares one connection pool (keep-alive) of
:mod:`server.backends.http_client`, a small asyncio + httptools HTTP/1.1 client: on this path it
costs a fraction of aiohttp's CPU per call, and aiohttp a tenth of httpx's (bench/UPSTREAM_RESULTS.md).

Errors a caller can meet, and what they mean (see docs/upstreams.md)::

    upstream answered 5xx (not retried: 500, 501, ...)   → upstream_error       502
    upstream answered 502/503/504, retries used up       → upstream_error       502
    upstream answered another 4xx (400, 401, 404, ...)   → upstream_error       502
    connection reset (before any response: after
      retries), truncated stream, bad JSON, an error
      object inside the stream                           → upstream_error       502
    upstream answered 429, retries used up               → service_unavailable  503 (+ Retry-After)
    connection refused / connect timeout, retries used up → service_unavailable  503
    read timeout, or the caller's deadline reached       → timeout              504

``details`` carries ``model`` (the catalogue id), and when the upstream answered, ``upstreamStatus``
and ``upstreamRequestId`` (its ``x-request-id`` header). The upstream's own error message is logged,
never passed on (it can name the account or a key prefix).

Retries (exponential backoff with jitter, at least the upstream's ``Retry-After``) cover connect
errors, connections closed before any response, 429 and 502-504; only before the upstream accepted
the request (so never after a byte of output) and never past the caller's deadline.

Token counts come from the upstream's ``usage`` (``stream_options.include_usage``). When it sends
none (llama-cpp-python's server does not in streams), the completion is counted as one token per
content chunk (servers stream one token per chunk) and the prompt is estimated as
``ceil(chars / 4)`` per message plus 4 tokens per message and 3 for the reply's priming.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.trace import Status, StatusCode

from core.errors import PlutosError
from core.tracing import client_span, inject
from core.tracing import state as tracing
from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt, closing_stream
from server.backends.http_client import ConnectError, HttpClientError, HttpPool, Response
from server.call_state import current_call
from server.config import ModelSpec
from server.observability.metrics import UpstreamMetrics

log = logging.getLogger("plutos.backends.openai")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3
DRAIN_SECONDS = 1.0  # after [DONE], how long to wait for the body's end (to reuse the connection)
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
NUL = "\x00"
_FINISH_REASONS = {"length": "length", "tool_calls": "tool_calls"}  # anything else ends as "stop"


def is_event_stream(headers: dict[str, str], asked_to_stream: bool) -> bool:
    """Whether an upstream's 200 answer is read as server-sent events: by its ``Content-Type``
    (``text/event-stream``: events; ``application/json`` or ``…+json``: one completion, as some
    servers and proxies answer a streaming request), else as what was asked for."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "text/event-stream":
        return True
    if media == "application/json" or media.endswith("+json"):
        return False
    return asked_to_stream


def sse_data(buffer: bytes, final: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The complete events in ``buffer`` as ``(event type, data)`` pairs, and the bytes left over,
    parsed as the WHATWG HTML standard's event-stream rules say: lines end in CRLF, LF or CR;
    ``data:`` lines of one event join with LF; one space after the colon is dropped; lines starting
    with ``:`` are comments; ``event:`` names the event (``message`` when absent); an event with no
    ``data`` is not dispatched; a blank line ends an event. An event not ended when the stream ends
    (``final``) is discarded, as the standard says. The leftover is normalised (LF line ends) and
    may end with a lone CR, which may be the first half of a CRLF."""
    hold = b""
    if b"\r" in buffer:
        if buffer.endswith(b"\r") and not final:
            buffer, hold = buffer[:-1], b"\r"
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = buffer.rfind(b"\n\n")
    if end < 0:
        if buffer.startswith(b"\n"):  # blank lines between events
            buffer = buffer.lstrip(b"\n")
        return [], buffer + hold
    events: list[tuple[bytes, bytes]] = []
    for block in buffer[:end].split(b"\n\n"):
        if block.startswith(b"data: ") and b"\n" not in block:  # the usual one-line event
            events.append((b"message", block[6:]))
            continue
        name, data, seen = b"message", [], False
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
                seen = True
            elif field == b"event":
                name = value or b"message"
        if seen:
            events.append((name, b"\n".join(data)))
    return events, buffer[end + 2 :].lstrip(b"\n") + hold


class SseParser:
    """Bytes, one network read at a time → complete ``(event type, data)`` events (:func:`sse_data`);
    a UTF-8 byte order mark at the very start is skipped, as the standard says."""

    __slots__ = ("buffer", "started")

    def __init__(self) -> None:
        self.buffer = b""
        self.started = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        buffer = self.buffer + chunk
        if not self.started:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self.buffer = buffer
                return []
            self.started = True
            buffer = buffer.removeprefix(b"\xef\xbb\xbf")
        if b"\n" not in chunk and b"\r" not in chunk:
            self.buffer = buffer
            return []
        events, self.buffer = sse_data(buffer)
        return events


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per four characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return (
        sum(estimate_tokens(m.get("content") or "") + MESSAGE_OVERHEAD_TOKENS for m in messages) + REPLY_PRIMING_TOKENS
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """A catalogue entry's upstream settings (the ``[[models]]`` keys besides the common ones)."""

    base_url: str
    upstream_model: str
    api_key_env: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0  # longest silence between two pieces of the upstream's answer
    total_timeout: float = 600.0  # longest whole call, when the caller sets no earlier deadline
    max_retries: int = 2
    retry_backoff: float = 0.25  # first backoff, doubled each retry, with jitter
    retry_backoff_max: float = 4.0
    max_retry_after: float = 30.0  # a longer Retry-After is passed to the caller instead of waited
    stream: bool = True  # ask the upstream to stream (false: one JSON answer)
    stream_usage: bool = True  # send stream_options.include_usage
    max_connections: int = 1000  # one per stream in flight (HTTP/1.1): docs/scaling.md
    max_tokens_param: str = "max_tokens"  # "max_completion_tokens" for OpenAI's reasoning models
    extra_body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> UpstreamConfig:
        o = spec.options
        where = f"model {spec.id}"
        if "api_key" in o:
            raise ValueError(
                f"{where}: never put the key in the catalogue; name its environment variable with api_key_env"
            )
        base_url = o.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: base_url must be an http(s) URL (e.g. https://api.openai.com/v1)")
        timeout = o.get("timeout", {})
        if isinstance(timeout, int | float):
            timeout = {"read": timeout}
        if not isinstance(timeout, dict) or not set(timeout) <= {"connect", "read", "total"}:
            raise ValueError(f"{where}: timeout is seconds, or a table with connect, read, total")
        extra = o.get("extra_body", {})
        if not isinstance(extra, dict):
            raise ValueError(f"{where}: extra_body must be a table")
        defaults = cls(base_url="", upstream_model="")
        config = cls(
            base_url=base_url.rstrip("/"),
            upstream_model=str(o.get("upstream_model", spec.id)),
            api_key_env=o.get("api_key_env"),
            connect_timeout=float(timeout.get("connect", defaults.connect_timeout)),
            read_timeout=float(timeout.get("read", defaults.read_timeout)),
            total_timeout=float(timeout.get("total", defaults.total_timeout)),
            max_retries=int(o.get("max_retries", defaults.max_retries)),
            retry_backoff=float(o.get("retry_backoff", defaults.retry_backoff)),
            retry_backoff_max=float(o.get("retry_backoff_max", defaults.retry_backoff_max)),
            max_retry_after=float(o.get("max_retry_after", defaults.max_retry_after)),
            stream=bool(o.get("stream", spec.supports_streaming)),
            stream_usage=bool(o.get("stream_usage", True)),
            max_connections=int(o.get("max_connections", defaults.max_connections)),
            max_tokens_param=str(o.get("max_tokens_param", "max_tokens")),
            extra_body=dict(extra),
        )
        if min(config.connect_timeout, config.read_timeout, config.total_timeout) <= 0:
            raise ValueError(f"{where}: timeouts must be positive")
        if config.max_retries < 0 or config.max_connections < 1:
            raise ValueError(f"{where}: max_retries must be >= 0 and max_connections >= 1")
        return config

    def api_key(self, model_id: str) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(f"model {model_id}: environment variable {self.api_key_env} (api_key_env) is not set")
        return key


class _ClientPool:
    """One :class:`HttpPool` per upstream base URL and event loop, shared by reference count."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, int], list[Any]] = {}  # key → [pool, users]

    def acquire(self, config: UpstreamConfig) -> HttpPool:
        key = (config.base_url, id(asyncio.get_running_loop()))
        entry = self._clients.get(key)
        if entry is None:
            entry = self._clients[key] = [HttpPool(config.base_url, config.max_connections), 0]
        entry[1] += 1
        client: HttpPool = entry[0]
        return client

    async def release(self, config: UpstreamConfig) -> None:
        key = (config.base_url, id(asyncio.get_running_loop()))
        entry = self._clients.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._clients[key]
            await entry[0].close()


CLIENTS = _ClientPool()


class OpenAICompatibleBackend(Backend):
    takes_openai_fields = True

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.config = UpstreamConfig.from_spec(spec)
        self.supports_streaming = spec.supports_streaming
        self.url = f"{self.config.base_url}/chat/completions"
        self._headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if self.config.stream else "application/json",
        }
        key = self.config.api_key(spec.id)
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._client: HttpPool | None = None
        self._observed = UpstreamMetrics(self.config.base_url)

    async def start(self) -> None:
        self._client = CLIENTS.acquire(self.config)

    async def close(self) -> None:
        if self._client is not None:
            self._client = None
            await CLIENTS.release(self.config)

    # -- prompt ---------------------------------------------------------------------------------

    def request_body(self, text: str, params: GenerationParams) -> dict[str, Any]:
        """The reference's options in OpenAI's names (and an OpenAI request's own fields as they are)."""
        body: dict[str, Any] = {
            **self.config.extra_body,
            **dict(params.upstream_extra),
            "model": self.config.upstream_model,
            "messages": params.conversation(text),
            "temperature": params.temperature,
            "top_p": params.top_p,
            self.config.max_tokens_param: params.max_tokens,
            "frequency_penalty": params.frequency_penalty,
            "presence_penalty": params.presence_penalty,
            "stream": self.config.stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.json_output and "response_format" not in body:
            body["response_format"] = {"type": "json_object"}
        if self.config.stream and self.config.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    async def prepare(self, text: str, params: GenerationParams) -> PreparedPrompt:
        body = self.request_body(text, params)
        estimate = estimate_prompt_tokens(body["messages"])
        if estimate >= self.spec.max_tokens:
            raise PlutosError(
                "input_too_long",
                f"Input exceeds the model's context of {self.spec.max_tokens} tokens.",
                {"maxTokens": self.spec.max_tokens, "promptTokens": estimate},
            )
        return PreparedPrompt(text=text, params=params, prompt_tokens=estimate, payload=orjson.dumps(body))

    # -- generation -----------------------------------------------------------------------------

    def _deadline(self, params: GenerationParams) -> float:
        own = asyncio.get_running_loop().time() + self.config.total_timeout
        return own if params.deadline is None else min(own, params.deadline)

    async def stream(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncIterator[str]:
        async with closing_stream(self._batches(prompt, state)) as batches:
            async for batch in batches:
                for piece in batch:
                    yield piece

    async def generate(self, prompt: PreparedPrompt, state: GenerationState) -> str:
        # The whole answer at once, by a plain coroutine: no async generator (each costs a
        # first-iteration hook, a close and a resumption per layer per read) on /process.
        response, request_id, deadline = await self._accepted(prompt, state)
        completed = False
        try:
            if is_event_stream(response.headers, self.config.stream):
                reader = _SseReader(self, state, request_id, deadline)
                while await self._next_pieces(response, reader) is not None:
                    pass
                reader.end()
            else:
                piece = await self._read_whole(response, state, deadline, request_id)
                if piece:
                    state.text_parts.append(piece)
            completed = True
        except BaseException as exc:
            _note_failure(state, exc)
            raise
        finally:
            _done_with(response, completed)
        return state.text

    async def _batches(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncIterator[list[str]]:
        """The pieces of each network read, already added to ``state`` (so billed even if the
        caller stops before taking them)."""
        response, request_id, deadline = await self._accepted(prompt, state)
        completed = False
        try:
            if is_event_stream(response.headers, self.config.stream):
                reader = _SseReader(self, state, request_id, deadline)
                while (pieces := await self._next_pieces(response, reader)) is not None:
                    yield pieces
                reader.end()
            else:
                piece = await self._read_whole(response, state, deadline, request_id)
                if piece:
                    state.text_parts.append(piece)
                    yield [piece]
            completed = True
        except BaseException as exc:  # incl. GeneratorExit: closed early by whoever iterates
            _note_failure(state, exc)
            raise
        finally:
            _done_with(response, completed)

    async def _accepted(self, prompt: PreparedPrompt, state: GenerationState) -> tuple[Response, str | None, float]:
        """Send the request; the accepted response, the upstream's request id and the deadline."""
        deadline = self._deadline(prompt.params)
        assert isinstance(prompt.payload, bytes)
        # Nothing is billed until the upstream accepts the request.
        state.prompt_tokens = 0
        response = await self._open(prompt.payload, deadline)
        state.prompt_tokens = prompt.prompt_tokens
        return response, response.headers.get("x-request-id"), deadline

    async def _open(self, body: bytes, deadline: float) -> Response:
        """POST the request; returns the accepted (200) response, unread. Retries as documented."""
        headers = self._headers
        call = current_call.get(None)
        if call is not None:
            # Lets the upstream's logs be matched with ours. Not x-request-id: some servers
            # (llama-cpp-python's) reject one that is not a UUID.
            headers = {**headers, "x-client-request-id": call.request_id}
        if not tracing.enabled:
            return await self._open_attempts(body, deadline, headers, call)
        span = client_span(
            "POST /chat/completions",
            {"http.request.method": "POST", "url.full": self.url, "plutos.model": self.spec.id},
        )
        headers = inject(dict(headers), span)  # the upstream continues this trace
        try:
            response = await self._open_attempts(body, deadline, headers, call)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status)
        span.end()
        return response

    async def _open_attempts(self, body: bytes, deadline: float, headers: dict[str, str], call: Any) -> Response:
        assert self._client is not None, "backend not started"
        loop = asyncio.get_running_loop()
        attempt = 0
        observed = self._observed
        while True:
            if deadline - loop.time() <= 0:
                raise self._timeout()
            retry_after: float | None = None
            sent = time.perf_counter()
            try:
                response = await self._client.post(
                    "/chat/completions",
                    body,
                    headers,
                    connect_timeout=self.config.connect_timeout,  # pool wait + connect
                    read_timeout=self.config.read_timeout,
                    deadline=deadline,
                )
            except ConnectError as exc:
                observed.error("connect")
                error = self._unavailable(f"The upstream for model '{self.spec.id}' cannot be reached.")
                log.warning("upstream %s unreachable (attempt %d): %s", self.url, attempt + 1, exc)
                retryable = True
            except TimeoutError:  # the read timeout or the caller's deadline
                observed.error("timeout")
                raise self._timeout() from None
            except HttpClientError as exc:
                # Closed or reset before any response: typically a keep-alive connection the server
                # dropped as we reused it. Nothing was answered, so trying again is safe.
                observed.error("connection")
                log.warning("upstream %s failed before answering (attempt %d): %s", self.url, attempt + 1, exc)
                error = self._upstream_error("The upstream connection failed.")
                retryable = True
            else:
                took = time.perf_counter() - sent
                observed.answered(response.status, took)
                if call is not None:
                    call.upstream_seconds += took
                if response.status == 200:
                    return response
                error, retryable, retry_after = await self._rejected(response, deadline)
            if not retryable or attempt >= self.config.max_retries:
                raise error
            observed.retry()
            delay = min(self.config.retry_backoff_max, self.config.retry_backoff * 2**attempt)
            delay *= random.uniform(0.5, 1.0)
            if retry_after is not None:
                if retry_after > self.config.max_retry_after:
                    raise error
                delay = max(delay, retry_after)
            if loop.time() + delay >= deadline:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    def _wait(self, deadline: float) -> float:
        """How long the next read may wait: the read timeout, or less if the deadline is nearer."""
        wait = min(self.config.read_timeout, deadline - asyncio.get_running_loop().time())
        if wait <= 0:
            raise TimeoutError()
        return wait

    async def _rejected(self, response: Response, deadline: float) -> tuple[PlutosError, bool, float | None]:
        """A non-200 answer: the error to give, whether to retry, and its Retry-After."""
        status = response.status
        request_id = response.headers.get("x-request-id")
        try:
            raw = await response.read(min(2.0, self._wait(deadline)), limit=64 * 1024)
            message = raw[:500].decode("utf-8", "replace")
        except (HttpClientError, TimeoutError):
            message = ""
        finally:
            response.close()
        log.warning("upstream %s answered %d (request %s): %s", self.url, status, request_id, message)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            error = self._unavailable(
                f"The upstream for model '{self.spec.id}' is rate limiting; try again later.",
                status,
                request_id,
                retry_after,
            )
        else:
            error = self._upstream_error(f"The upstream answered HTTP {status}.", status, request_id)
        return error, status in RETRYABLE_STATUSES, retry_after

    async def _next_pieces(self, response: Response, reader: _SseReader) -> list[str] | None:
        """The content pieces of the next network read(s) that bring any, or None at the end."""
        while True:
            try:
                chunk = await response.read_chunk(self._wait(reader.deadline))
            except TimeoutError:
                if reader.done:
                    return None  # the answer is whole; the connection is just not reused
                raise self._timeout() from None
            except HttpClientError as exc:
                log.warning("upstream %s stream broke after %d chunks: %s", self.url, reader.counted, exc)
                raise self._upstream_error(
                    "The upstream connection broke during generation.", 200, reader.request_id
                ) from None
            if not chunk:
                return None
            if reader.done:
                continue  # reading to the end lets the connection go back to the pool
            pieces = reader.feed(chunk)
            if pieces:
                return pieces

    async def _read_whole(
        self, response: Response, state: GenerationState, deadline: float, request_id: str | None
    ) -> str:
        parts: list[bytes] = []
        try:
            while piece := await response.read_chunk(self._wait(deadline)):
                parts.append(piece)
        except TimeoutError:
            raise self._timeout() from None
        except HttpClientError as exc:
            log.warning("upstream %s answer broke: %s", self.url, exc)
            raise self._upstream_error("The upstream connection broke during generation.", 200, request_id) from None
        answer = self._json(b"".join(parts), request_id)
        try:
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            if isinstance(text, str) and NUL in text:
                text = text.replace(NUL, "")
            finish = choice.get("finish_reason") or "stop"
            tool_calls = choice["message"].get("tool_calls")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._upstream_error("The upstream's answer has no choices.", 200, request_id) from None
        if isinstance(tool_calls, list) and tool_calls and all(isinstance(c, dict) for c in tool_calls):
            state.tool_calls = tool_calls
        if not isinstance(text, str):
            raise self._upstream_error("The upstream's answer is not text.", 200, request_id)
        state.completion_tokens = estimate_tokens(text)
        if isinstance(answer.get("usage"), dict):
            self._apply_usage(answer["usage"], state)
        state.finish_reason = _FINISH_REASONS.get(finish, "stop")
        return text

    @staticmethod
    def _apply_usage(usage: dict[str, Any], state: GenerationState) -> None:
        """The upstream's token counts where they are whole, non-negative numbers (anything else
        keeps the gateway's own count). Counts beyond what the request could use are bounded
        when billed (:meth:`server.services.generation.Generation.bound_usage`)."""
        prompt = _token_count(usage.get("prompt_tokens"))
        completion = _token_count(usage.get("completion_tokens"))
        if prompt is not None:
            state.prompt_tokens = prompt
        if completion is not None:
            state.completion_tokens = completion

    def _json_many(self, datas: list[bytes], request_id: str | None) -> Iterable[dict[str, Any]]:
        """Each of ``datas`` parsed as a JSON object; one parser call for all of a read's events.

        If that fails, one at a time and lazily: the events before a bad one still count."""
        if len(datas) > 1:
            try:
                values = orjson.loads(b"[" + b",".join(datas) + b"]")
            except orjson.JSONDecodeError:
                values = None
            if isinstance(values, list) and len(values) == len(datas) and all(isinstance(v, dict) for v in values):
                return values
        return (self._json(data, request_id) for data in datas)

    def _json(self, data: bytes, request_id: str | None) -> dict[str, Any]:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("upstream %s sent invalid JSON: %r", self.url, data[:200])
            raise self._upstream_error("The upstream sent invalid JSON.", 200, request_id) from None
        if not isinstance(value, dict):
            raise self._upstream_error("The upstream sent an unexpected JSON value.", 200, request_id)
        return value

    # -- errors ---------------------------------------------------------------------------------

    def _details(self, status: int | None, request_id: str | None) -> dict[str, Any]:
        details: dict[str, Any] = {"model": self.spec.id}
        if status is not None:
            details["upstreamStatus"] = status
        if request_id:
            details["upstreamRequestId"] = request_id
        return details

    def _upstream_error(self, message: str, status: int | None = None, request_id: str | None = None) -> PlutosError:
        return PlutosError("upstream_error", message, self._details(status, request_id))

    def _unavailable(
        self, message: str, status: int | None = None, request_id: str | None = None, retry_after: float | None = None
    ) -> PlutosError:
        cap = self.config.max_retry_after
        return PlutosError(
            "service_unavailable",
            message,
            self._details(status, request_id),
            # What the caller is told to wait: the upstream's figure, at most max_retry_after.
            retry_after=None if retry_after is None else max(1, math.ceil(min(retry_after, cap))),
        )

    def _timeout(self) -> PlutosError:
        return PlutosError(
            "timeout", f"The upstream for model '{self.spec.id}' did not answer in time.", {"model": self.spec.id}
        )


_DELAY_SECONDS = re.compile(r"[0-9]{1,30}")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds, per RFC 9110 §10.2.3: ``delay-seconds`` (digits only) or an
    HTTP date. Anything else (``inf``, ``nan``, ``-5``, ``1e9``, ``abc``, a malformed date) is
    invalid and ignored: None. Finite, never negative; callers cap it (``max_retry_after``)."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _token_count(value: Any) -> int | None:
    """A token count from an upstream's JSON: a non-negative integer (``12`` or ``12.0``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def _note_failure(state: GenerationState, exc: BaseException) -> None:
    """How a generation that raised ``exc`` ended, unless already known."""
    if isinstance(exc, PlutosError):
        state.finish_reason = "error"
    elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)) and state.finish_reason is None:
        # Cancelled, or closed early by whoever iterates: the upstream request is closed.
        state.finish_reason = "cancelled"


def _done_with(response: Response, completed: bool) -> None:
    if completed and response.at_eof():
        response.release()  # read to the end: the connection goes back to the pool
    else:
        response.close()  # cancelled or broken: the upstream sees the request closed


class _SseReader:
    """Server-sent events → content pieces, one network read at a time; each piece is added to
    ``state.text_parts`` as it is parsed, and the token counts in ``state`` kept current.

    Events are parsed by :func:`sse_data` (the standard's rules: any line ending, data over several
    lines, comments); each event's data is one JSON chunk, ``[DONE]`` ends the answer, and an
    event named ``error`` is the upstream failing."""

    __slots__ = ("backend", "counted", "deadline", "done", "finish", "parser", "request_id", "state", "tools", "usage")

    def __init__(
        self, backend: OpenAICompatibleBackend, state: GenerationState, request_id: str | None, deadline: float
    ) -> None:
        self.backend = backend
        self.state = state
        self.request_id = request_id
        self.deadline = deadline
        self.parser = SseParser()
        self.counted = 0
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.tools: dict[int, dict[str, Any]] = {}  # tool calls by index, fragments joined
        self.done = False  # [DONE] seen: the rest of the body is only read to reuse the connection

    def feed(self, chunk: bytes) -> list[str]:
        """The new pieces in ``chunk`` (with what was left of the previous one)."""
        events = self.parser.feed(chunk)
        if not events:
            return []
        state, backend, request_id = self.state, self.backend, self.request_id
        parts = state.text_parts
        first = len(parts)
        # The payloads of this read's complete events, up to ``[DONE]``.
        datas = []
        failed: bytes | None = None
        for name, data in events:
            if name == b"error":  # counted after the events before it
                failed = data
                break
            if data.strip() == b"[DONE]":
                self.finish = "[DONE]"
                self.done = True
                self.deadline = min(self.deadline, asyncio.get_running_loop().time() + DRAIN_SECONDS)
                break
            datas.append(data)
        for data, event in zip(datas, backend._json_many(datas, request_id), strict=True):
            if event.get("error"):
                log.warning("upstream %s sent an error event: %s", backend.url, data[:500])
                raise backend._upstream_error("The upstream failed during generation.", 200, request_id)
            choices = event.get("choices") or []
            if not isinstance(choices, list):
                raise backend._upstream_error("The upstream sent an unexpected chunk.", 200, request_id)
            for choice in choices:
                if not isinstance(choice, dict):
                    raise backend._upstream_error("The upstream sent an unexpected chunk.", 200, request_id)
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if content and isinstance(content, str) and NUL in content:
                    content = content.replace(NUL, "")  # the store cannot keep U+0000 (server/interceptors/text.py)
                if content and isinstance(content, str):
                    self.counted += 1
                    if self.usage is None:
                        state.completion_tokens = self.counted
                    parts.append(content)
                calls = delta.get("tool_calls") if isinstance(delta, dict) else None
                if calls and isinstance(calls, list):
                    self._add_tool_calls(calls)
                reason = choice.get("finish_reason")
                if reason:
                    self.finish = reason
                    state.finish_reason = _FINISH_REASONS.get(reason, "stop")
            found = event.get("usage")
            if isinstance(found, dict):
                self.usage = found
                backend._apply_usage(found, state)
        if failed is not None:
            log.warning("upstream %s sent an error event: %s", backend.url, failed[:500])
            raise backend._upstream_error("The upstream failed during generation.", 200, request_id)
        return parts[first:] if len(parts) > first else []

    def _add_tool_calls(self, calls: list[Any]) -> None:
        """Join streamed tool-call fragments: per ``index``, ``id``/``type`` as given, the
        function's ``name`` and ``arguments`` strings concatenated."""
        for call in calls:
            if not isinstance(call, dict):
                raise self.backend._upstream_error("The upstream sent an unexpected chunk.", 200, self.request_id)
            index = call.get("index", len(self.tools))
            whole = self.tools.setdefault(index if isinstance(index, int) else len(self.tools), {})
            for key, value in call.items():
                if key == "index":
                    continue
                if key == "function" and isinstance(value, dict):
                    function = whole.setdefault("function", {})
                    for name, part in value.items():
                        if isinstance(part, str) and isinstance(function.get(name), str):
                            function[name] += part
                        else:
                            function[name] = part
                else:
                    whole[key] = value
        self.state.tool_calls = [self.tools[i] for i in sorted(self.tools)]

    def end(self) -> None:
        """The body is over: it must have finished the answer."""
        if self.finish is None:
            raise self.backend._upstream_error(
                "The upstream's stream ended before the answer did.", 200, self.request_id
            )
        if self.state.finish_reason is None:
            self.state.finish_reason = "stop"
