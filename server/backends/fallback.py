"""Fallback models: a catalogue entry with ``fallbacks = ["other-id", ...]`` tries those entries'
backends, in order, when its own fails before producing any output.

Only failures of the upstream itself move on to the next model (``upstream_error``,
``service_unavailable``); a caller's mistake (``input_too_long``), a deadline (``timeout``) or a
cancellation does not. Once a piece of output has been streamed, the model that produced it is
kept: a later failure is the caller's error. The record and the bill keep the requested model's
id and price (the caller chose that model; the fallback is the operator's business).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

from core.errors import PlutosError
from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt
from server.observability.metrics import FALLBACKS

log = logging.getLogger("plutos.backends.fallback")

FALLBACK_CODES = frozenset({"upstream_error", "service_unavailable"})


class FallbackBackend(Backend):
    """The primary backend, then each fallback, behind one Backend. Owns none of them."""

    def __init__(self, model_id: str, primary: Backend, fallbacks: list[tuple[str, Backend]]) -> None:
        self.model_id = model_id
        self.primary = primary
        self.fallbacks = fallbacks
        self.supports_streaming = primary.supports_streaming
        self.takes_openai_fields = primary.takes_openai_fields and all(b.takes_openai_fields for _, b in fallbacks)

    async def prepare(self, text: str, params: GenerationParams) -> PreparedPrompt:
        return await self.primary.prepare(text, params)

    async def stream(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[str, None]:
        chain: list[tuple[str, Backend]] = [(self.model_id, self.primary), *self.fallbacks]
        first_error: PlutosError | None = None
        for position, (model_id, backend) in enumerate(chain):
            if position > 0:
                try:
                    prompt = await backend.prepare(prompt.text, prompt.params)
                except PlutosError as err:
                    log.warning("fallback %s for %s cannot take the input: %s", model_id, self.model_id, err.code)
                    continue
                state.prompt_tokens = prompt.prompt_tokens
                state.completion_tokens = 0
                state.finish_reason = None
                log.info("model %s: falling back to %s", self.model_id, model_id)
                FALLBACKS.labels(self.model_id, model_id).inc()
            produced = False
            try:
                async with aclosing(backend.stream(prompt, state)) as pieces:
                    async for piece in pieces:
                        produced = True
                        yield piece
                return
            except PlutosError as err:
                if produced or err.code not in FALLBACK_CODES:
                    raise
                log.warning("model %s failed before any output (%s)", model_id, err.code)
                first_error = first_error or err
        assert first_error is not None
        raise first_error
