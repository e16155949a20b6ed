"""The model backend interface.

A backend streams text for one input and keeps :class:`GenerationState` up to date as it goes, so
whoever called it can bill exactly what was produced even when the call is cancelled half-way.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Options with the reference's defaults applied."""

    temperature: float = 0.7
    max_tokens: int = 1000
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    system_prompt: str | None = None
    stop: tuple[str, ...] = ()
    # When the caller must have its answer, on the event loop's clock (loop.time()); None: no limit.
    # Backends that call out (upstreams) must not outlive it.
    deadline: float | None = None
    # A whole conversation to prompt with instead of system_prompt + the input: OpenAI message
    # objects, ``content`` a string (or None); local models read role and content, upstreams get
    # them as they are.
    messages: tuple[dict[str, Any], ...] = ()
    # Sampling seed (local models: the same seed, prompt and options give the same output).
    seed: int | None = None
    # Valid JSON output (OpenAI's response_format json_object): a JSON grammar on local models.
    json_output: bool = False
    # OpenAI request fields an openai-compatible upstream gets as they are (user, response_format,
    # tools, tool_choice, ...); local models refuse what they cannot honour before this is built.
    upstream_extra: tuple[tuple[str, Any], ...] = ()
    # The call's request id: upstreams get it (x-client-request-id) so their logs match ours.
    request_id: str | None = None

    def conversation(self, text: str) -> list[dict[str, Any]]:
        """The chat messages to prompt with: ``messages``, or the system prompt and ``text``."""
        if self.messages:
            return list(self.messages)
        conversation: list[dict[str, Any]] = []
        if self.system_prompt:
            conversation.append({"role": "system", "content": self.system_prompt})
        conversation.append({"role": "user", "content": text})
        return conversation


@dataclass(slots=True)
class GenerationState:
    """What a generation has produced so far; final once the stream ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    text_parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None  # stop | length | tool_calls | cancelled | error
    # The tool calls an upstream model made (OpenAI's objects, streamed fragments joined), if any.
    tool_calls: list[dict[str, Any]] | None = None
    # Seconds upstreams took to answer (status and headers), summed over attempts (the request log's upstream_ms).
    upstream_seconds: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A prompt ready to run. ``prompt_tokens`` is exact for local models, an estimate upstream."""

    text: str
    params: GenerationParams
    prompt_tokens: int
    payload: object = None  # backend-specific (token ids, request body, ...)


class Backend(abc.ABC):
    """One model (or upstream) that can generate text."""

    supports_streaming: bool = True
    # Takes OpenAI request fields as they are (GenerationParams.upstream_extra: tools, ...).
    takes_openai_fields: bool = False

    @abc.abstractmethod
    async def prepare(self, text: str, params: GenerationParams) -> PreparedPrompt:
        """Build and measure the prompt for ``text``.

        Raises ``PlutosError('input_too_long')`` when it cannot fit the model's context."""

    @abc.abstractmethod
    def stream(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[str, None]:
        """Yield text pieces as they are generated, keeping ``state`` current. Closing the
        iterator early stops generation."""

    async def stream_batches(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[list[str], None]:
        """:meth:`stream`'s pieces, in lists of those that came together (an upstream's network
        read): the same pieces in the same order, one step per list for whoever iterates it (a
        stream's hot path). Closing it early stops generation. This default: one piece a list."""
        async with aclosing(self.stream(prompt, state)) as pieces:
            async for piece in pieces:
                yield [piece]

    async def generate(self, prompt: PreparedPrompt, state: GenerationState) -> str:
        """Run to completion; returns the whole output."""
        async with aclosing(self.stream(prompt, state)) as pieces:
            async for _ in pieces:
                pass
        return state.text

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load weights / open connections. Called once before serving."""

    @property
    def ready(self) -> bool:
        """Whether it can serve now (weights loaded); readiness reports it."""
        return True

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
