"""The ``openai-compatible`` backend: a catalogue entry served by an upstream ``/chat/completions``.

Works with OpenAI, vLLM, Ollama, llama.cpp's server and llama-cpp-python's server. Every entry
pointing at the same ``base_url`` shares one connection pool (keep-alive,
:mod:`server.backends.client_pool`) of :mod:`server.backends.http_client`, a small asyncio +
httptools HTTP/1.1 client: on this path it costs a fraction of aiohttp's CPU per call, and aiohttp a
tenth of httpx's (bench/UPSTREAM_RESULTS.md). Its settings: :mod:`server.backends.upstream_config`;
its streamed answers: :mod:`server.backends.upstream_sse`; the errors a caller can meet, and the
one table mapping the HTTP client's errors to them: :mod:`server.backends.upstream_errors`.

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
import logging
import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson
from opentelemetry.trace import Status, StatusCode

from core.errors import PlutosError
from core.tracing import client_span, inject
from core.tracing import state as tracing
from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt
from server.backends.client_pool import CLIENTS
from server.backends.http_client import HttpPool, Response
from server.backends.upstream_config import UpstreamConfig
from server.backends.upstream_errors import (
    CLIENT_ERRORS,
    READING,
    SENDING,
    UpstreamErrors,
    mapped,
    parse_retry_after,
)
from server.backends.upstream_json import FINISH_REASONS, NUL, apply_usage, json_object
from server.backends.upstream_sse import SseReader, is_event_stream
from server.config import ModelSpec
from server.observability.metrics import UpstreamMetrics

log = logging.getLogger("plutos.backends.openai")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per four characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return (
        sum(estimate_tokens(m.get("content") or "") + MESSAGE_OVERHEAD_TOKENS for m in messages) + REPLY_PRIMING_TOKENS
    )


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
        self.errors = UpstreamErrors(spec.id, self.url, self.config.max_retry_after)

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
        # orjson's bytes keep the 4 KiB buffer they were written in; this exact-size copy is what a
        # stream holds for its whole length (0.5 µs; 4 KiB less per open stream).
        payload = bytes(memoryview(orjson.dumps(body)))
        return PreparedPrompt(text=text, params=params, prompt_tokens=estimate, payload=payload)

    # -- generation -----------------------------------------------------------------------------

    def _deadline(self, params: GenerationParams) -> float:
        own = asyncio.get_running_loop().time() + self.config.total_timeout
        return own if params.deadline is None else min(own, params.deadline)

    async def stream(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[str, None]:
        async with aclosing(self.stream_batches(prompt, state)) as batches:
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
                reader = SseReader(self.errors, state, request_id, deadline)
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

    async def stream_batches(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[list[str], None]:
        """The pieces of each network read, already added to ``state`` (so billed even if the
        caller stops before taking them)."""
        response, request_id, deadline = await self._accepted(prompt, state)
        completed = False
        try:
            if is_event_stream(response.headers, self.config.stream):
                reader = SseReader(self.errors, state, request_id, deadline)
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
        response = await self._open(prompt.payload, deadline, prompt.params.request_id, state)
        state.prompt_tokens = prompt.prompt_tokens
        return response, response.headers.get("x-request-id"), deadline

    async def _open(self, body: bytes, deadline: float, request_id: str | None, state: GenerationState) -> Response:
        """POST the request; returns the accepted (200) response, unread. Retries as documented."""
        headers = self._headers
        if request_id is not None:
            # Lets the upstream's logs be matched with ours. Not x-request-id: some servers
            # (llama-cpp-python's) reject one that is not a UUID.
            headers = {**headers, "x-client-request-id": request_id}
        if not tracing.enabled:
            return await self._open_attempts(body, deadline, headers, state)
        span = client_span(
            "POST /chat/completions",
            {"http.request.method": "POST", "url.full": self.url, "plutos.model": self.spec.id},
        )
        headers = inject(dict(headers), span)  # the upstream continues this trace
        try:
            response = await self._open_attempts(body, deadline, headers, state)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status)
        span.end()
        return response

    async def _open_attempts(
        self, body: bytes, deadline: float, headers: dict[str, str], state: GenerationState
    ) -> Response:
        assert self._client is not None, "backend not started"
        loop = asyncio.get_running_loop()
        attempt = 0
        observed = self._observed
        while True:
            if deadline - loop.time() <= 0:
                raise self.errors.timeout()
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
            except CLIENT_ERRORS as exc:
                entry = mapped(SENDING, exc)
                observed.error(entry.metric)
                if entry.retryable:
                    log.warning(
                        "upstream %s failed before answering (%s, attempt %d): %r",
                        self.url,
                        entry.metric,
                        attempt + 1,
                        exc,
                    )
                error, retryable = self.errors.from_client_error(SENDING, exc), entry.retryable
            else:
                took = time.perf_counter() - sent
                observed.answered(response.status, took)
                state.upstream_seconds += took
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
        except CLIENT_ERRORS:
            message = ""
        finally:
            response.close()
        log.warning("upstream %s answered %d (request %s): %s", self.url, status, request_id, message)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            error = self.errors.unavailable(
                f"The upstream for model '{self.spec.id}' is rate limiting; try again later.",
                status,
                request_id,
                retry_after,
            )
        else:
            error = self.errors.upstream_error(f"The upstream answered HTTP {status}.", status, request_id)
        return error, status in RETRYABLE_STATUSES, retry_after

    async def _next_pieces(self, response: Response, reader: SseReader) -> list[str] | None:
        """The content pieces of the next network read(s) that bring any, or None at the end."""
        reader.raise_failure()  # the last read's pieces went out; now its failure
        while True:
            try:
                chunk = await response.read_chunk(self._wait(reader.deadline))
            except CLIENT_ERRORS as exc:
                if reader.done and isinstance(exc, TimeoutError):
                    return None  # the answer is whole; the connection is just not reused
                log.warning("upstream %s stream broke after %d chunks: %r", self.url, reader.counted, exc)
                raise self.errors.from_client_error(READING, exc, reader.request_id) from None
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
        except CLIENT_ERRORS as exc:
            log.warning("upstream %s answer broke: %r", self.url, exc)
            raise self.errors.from_client_error(READING, exc, request_id) from None
        answer = json_object(b"".join(parts), self.errors, request_id)
        try:
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            if isinstance(text, str) and NUL in text:
                text = text.replace(NUL, "")
            finish = choice.get("finish_reason") or "stop"
            tool_calls = choice["message"].get("tool_calls")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self.errors.upstream_error("The upstream's answer has no choices.", 200, request_id) from None
        if isinstance(tool_calls, list) and tool_calls and all(isinstance(c, dict) for c in tool_calls):
            state.tool_calls = tool_calls
        if not isinstance(text, str):
            raise self.errors.upstream_error("The upstream's answer is not text.", 200, request_id)
        state.completion_tokens = estimate_tokens(text)
        if isinstance(answer.get("usage"), dict):
            apply_usage(answer["usage"], state)
        state.finish_reason = FINISH_REASONS.get(finish, "stop")
        return text


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
