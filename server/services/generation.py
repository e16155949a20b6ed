"""One input run through a backend, stored and billed whatever the outcome.

The one generation path of every surface: ``/v1/process`` and ``/v1/stream`` (ProcessingService),
``/openai/v1/chat/completions`` and ``/openai/v1/completions`` (OpenAIService) each translate their
request into a :class:`Generation` and its output into their answer, and nothing else;
:meth:`Generation.run` (unary) and :meth:`Generation.batches` (streamed) do the rest — the response
cache's look-up and store, the backend call, the record and its ledger entry (which settle the
call's quota reservation in the limits interceptor and fire the webhooks through the store writer's
hooks) — the same way on success, failure and cancellation. Each ``/batch`` item is a Generation too,
written with its batch in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from google.protobuf import timestamp_pb2
from plutos.v1 import processing_pb2

from core.errors import PlutosError, echo
from core.ids import new_id
from core.tracing import internal_span
from core.tracing import state as tracing
from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt
from server.call_state import Caller, call_state, current_call
from server.config import ModelSpec
from server.observability.metrics import USAGE_CLAMPED, count_usage, model_label
from server.options import (
    PROMPT_OVERHEAD_TOKENS,
    messages_token_bound,
    options_to_record,
    prompt_token_bound,
    require_text,
)
from server.response_cache import CachedAnswer, cache_key, cache_mode
from server.runtime import Runtime
from server.store.models import COST_UNITS_PER_USD, LedgerEntry, ProcessRecord, new_row, usd_to_units, utcnow

_THOUSAND = Decimal(1000)
log = logging.getLogger("plutos.usage")


def cost_of(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """Exact USD cost from the catalogue's per-1K prices."""
    return (Decimal(prompt_tokens) * spec.input_price + Decimal(completion_tokens) * spec.output_price) / _THOUSAND


# (input price, output price) per 1K tokens -> cost units per token of each, when both are whole.
_UNITS_PER_TOKEN: dict[tuple[Decimal, Decimal], tuple[int, int] | None] = {}


def cost_units_of(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> int:
    """``usd_to_units(cost_of(...))``: integer arithmetic when the prices are whole cost units per
    token (any price with at most 7 decimals per 1K tokens), the exact decimal path otherwise."""
    key = (spec.input_price, spec.output_price)
    if key in _UNITS_PER_TOKEN:
        per_token = _UNITS_PER_TOKEN[key]
    else:
        scaled = [price * COST_UNITS_PER_USD / _THOUSAND for price in key]
        per_token = _UNITS_PER_TOKEN[key] = (
            (int(scaled[0]), int(scaled[1])) if all(v == int(v) for v in scaled) else None
        )
    if per_token is None:
        return usd_to_units(cost_of(spec, prompt_tokens, completion_tokens))
    return prompt_tokens * per_token[0] + completion_tokens * per_token[1]


def resolve_model(runtime: Runtime, who: Caller, model_id: str, field: str = "model") -> tuple[ModelSpec, Backend]:
    """The catalogue entry and backend for ``model_id``; ``invalid_parameters`` if empty,
    ``invalid_model`` if unknown, ``permission_denied`` if the caller's key may not use it."""
    require_text(model_id, field)
    spec, backend = runtime.catalogue.resolve(model_id)
    if not who.allows_model(model_id):
        raise PlutosError(
            "permission_denied", f"This API key may not use model '{echo(model_id)}'.", {"model": model_id}
        )
    return spec, backend


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """Whole seconds, so JSON shows ``2024-01-01T12:00:00Z`` as in the reference."""
    return timestamp_pb2.Timestamp(seconds=int(value.timestamp()))


@dataclass(slots=True)
class CacheUse:
    """The response cache's part in one call: the entry's key, and the entry when it answers."""

    key: str
    hit: CachedAnswer | None = None


class Generation:
    def __init__(
        self,
        runtime: Runtime,
        caller: Caller,
        spec: ModelSpec,
        backend: Backend,
        *,
        kind: str,
        text: str,
        params: GenerationParams,
        batch_id: str | None = None,
        batch_index: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.caller = caller
        self.spec = spec
        self.backend = backend
        self.kind = kind
        self.text = text
        self.params = params
        self.batch_id = batch_id
        self.batch_index = batch_index
        self.id = new_id("proc")
        self.state = GenerationState()
        self.created_at = utcnow()
        self._started = time.perf_counter()
        self.prompt: PreparedPrompt | None = None
        self.recorded = False
        self.cached = False  # answered from the response cache: no model ran
        self.call = current_call.get(None)  # captured now: rows may be built after the call ended

        self._processing_time: int | None = None

    @property
    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self._started) * 1000)

    @property
    def processing_time(self) -> int:
        """``processingTime`` (ms): from the call's start to its outcome being recorded — fixed when
        the record is built, so the answer and the stored record show the same figure."""
        if self._processing_time is None:
            self._processing_time = self.elapsed_ms
        return self._processing_time

    async def prepare(self) -> PreparedPrompt:
        """Ready the prompt for the model (tokenized, within the model's context). From here on a
        record is stored whatever happens: its id is announced (:meth:`announce`)."""
        self.prompt = await self.backend.prepare(self.text, self.params)
        self.state.prompt_tokens = self.prompt.prompt_tokens
        self.announce()
        return self.prompt

    def announce(self) -> None:
        """Send this generation's record id as the call's ``x-process-id`` response metadata (REST:
        the ``X-Process-Id`` header), the one place it is set: once a record is certain to be
        stored (the model is about to run, or a response-cache entry answers), whatever path the
        call takes — /v1/process, /v1/stream, /openai/v1, a cache hit. The header leaves with the
        answer or the error, so a client can ``GET /v1/process/{id}`` even after a failure or an
        early disconnect. A batch item does not: the batch is one call with many records."""
        if self.batch_id is None:
            call_state().response_metadata["x-process-id"] = self.id

    def bound_usage(self) -> None:
        """Hold the reported token counts to what this request could have used: the prompt to
        :func:`prompt_token_bound`, the completion to ``maxTokens``. An upstream may report anything
        (``prompt_tokens: 3000000000`` for 8 characters); what exceeds the bound is never billed —
        it is clamped, logged and counted (``plutos_usage_clamped_total``), so the bill, the quota
        (reserved with the same bound) and the stored record stay true. Called before the usage is
        answered or stored, so both show the same figures."""
        s = self.state
        quick = len(self.text) if not self.params.messages else self.spec.max_tokens  # a chat: its own bound
        if s.prompt_tokens > min(quick + PROMPT_OVERHEAD_TOKENS, self.spec.max_tokens) or (
            s.completion_tokens > self.params.max_tokens
        ):
            self._clamp(s)

    def prompt_bound(self) -> int:
        """The most prompt tokens this request can be: :func:`prompt_token_bound` of the input, or
        for a chat of its whole conversation (each message's JSON bytes plus the template allowance)."""
        if self.params.messages:
            return messages_token_bound(self.params.messages, self.spec.max_tokens)
        return prompt_token_bound(self.text, self.params.system_prompt, self.spec.max_tokens)

    def _clamp(self, s: GenerationState) -> None:
        prompt_bound = self.prompt_bound()
        for field_name, bound in (("prompt_tokens", prompt_bound), ("completion_tokens", self.params.max_tokens)):
            reported = getattr(s, field_name)
            if reported > bound:
                log.warning(
                    "model %s reported %s=%d, beyond the request's bound %d: billed %d (record %s)",
                    self.spec.id,
                    field_name,
                    reported,
                    bound,
                    bound,
                    self.id,
                )
                USAGE_CLAMPED.labels(model_label(self.spec.id), field_name.removesuffix("_tokens")).inc()
                setattr(s, field_name, bound)

    def usage(self) -> processing_pb2.Usage:
        self.bound_usage()
        s = self.state
        return processing_pb2.Usage(
            prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens, total_tokens=s.total_tokens
        )

    def answer_from(self, answer: CachedAnswer) -> None:
        """Take a response-cache entry as this generation's output (no model runs); its record is
        stored like any other, so its id is announced (:meth:`announce`)."""
        self.cached = True
        self.state.prompt_tokens = answer.prompt_tokens
        self.state.completion_tokens = answer.completion_tokens
        self.state.text_parts = [answer.output]
        self.state.finish_reason = answer.finish_reason
        self.announce()

    def as_cache_entry(self, pieces: tuple[str, ...] = ()) -> CachedAnswer:
        s = self.state
        finish = "length" if s.finish_reason == "length" else "stop"
        return CachedAnswer(s.text, s.prompt_tokens, s.completion_tokens, pieces, finish)

    def rows(self, status: str, error_code: str | None = None) -> list[Any]:
        """The record and, when anything ran, its ledger entry."""
        self.recorded = True
        self.bound_usage()
        s = self.state
        if self.call is not None:
            self.call.upstream_seconds += s.upstream_seconds  # for the request log line
        record = new_row(
            ProcessRecord,
            id=self.id,
            account_id=self.caller.account_id,
            key_id=self.caller.key_id,
            kind=self.kind,
            batch_id=self.batch_id,
            batch_index=self.batch_index,
            model=self.spec.id,
            input=self.text,
            options=options_to_record(self.params),
            output=s.text,
            prompt_tokens=s.prompt_tokens,
            completion_tokens=s.completion_tokens,
            status=status,
            error_code=error_code,
            created_at=self.created_at,
            processing_time_ms=self.processing_time,
        )
        rows: list[Any] = [record]
        if self.cached:
            # A cache hit is a request (rate limits, /v1/usage), billed nothing unless the plan says so.
            record.__dict__["cached"] = True
            billed = self.caller.plan.bill_cache_hits
            rows.append(self._ledger_entry(s.prompt_tokens if billed else 0, s.completion_tokens if billed else 0))
            rows[-1].__dict__["cached"] = 1
        elif self.prompt is not None:  # the model was (about to be) called: bill what it produced
            rows.append(self._ledger_entry(s.prompt_tokens, s.completion_tokens))
        return rows

    def _ledger_entry(self, prompt_tokens: int, completion_tokens: int) -> LedgerEntry:
        """The ledger row billing these tokens; the call's totals and the usage metrics count them."""
        cost_units = cost_units_of(self.spec, prompt_tokens, completion_tokens)
        call = self.call
        if call is not None:
            call.tokens_used += prompt_tokens + completion_tokens
            call.prompt_tokens += prompt_tokens
            call.completion_tokens += completion_tokens
            call.cost_units += cost_units
            if self.runtime.settings.log_bodies:
                call.output = self.state.text
        count_usage(self.spec.id, prompt_tokens, completion_tokens, cost_units / COST_UNITS_PER_USD)
        return new_row(
            LedgerEntry,
            account_id=self.caller.account_id,
            key_id=self.caller.key_id,
            record_id=self.id,
            model=self.spec.id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_units=cost_units,
            counts_as_request=0 if (self.batch_index or 0) > 0 else 1,
            created_at=self.created_at,
        )

    async def look_up(self, requested: str | None) -> CacheUse | None:
        """The response cache's part in this call for the requested ``cache`` mode (None: not
        asked, i.e. "bypass"; then None), and its entry if it answers; sets ``x-cache``.

        Raises ``invalid_parameters`` (``options.cache``) for a mode other than use/refresh/bypass."""
        mode = cache_mode(requested)
        if mode == "bypass":
            return None
        use = CacheUse(cache_key(self.caller.account_id, self.spec.id, self.text, self.params))
        if mode == "use":
            use.hit = await self.runtime.response_cache.get(self.caller.account_id, use.key)
        call_state().response_metadata["x-cache"] = "HIT" if use.hit is not None else "MISS"
        return use

    async def keep(self, use: CacheUse | None, pieces: tuple[str, ...] = ()) -> None:
        """Store this generation's answer (and a stream's pieces) in the response cache, if it takes
        part — not an answer that calls tools (the entry keeps text, usage and finish reason only)."""
        if use is not None and not self.state.tool_calls:
            await self.runtime.response_cache.put(self.caller.account_id, use.key, self.as_cache_entry(pieces))

    async def run(self, cache: str | None = None) -> None:
        """Answer from the response cache (``cache``: the requested mode, see :meth:`look_up`) or
        prepare and generate to the end; then store and bill, and keep a fresh answer in the cache.
        A failure is stored ``failed`` (and raised), a cancellation ``cancelled``; what was produced
        is billed either way."""
        use = await self.look_up(cache)
        if use is not None and use.hit is not None:
            self.answer_from(use.hit)
            await self.save()
            return
        await self.prepare()  # from here on a record is stored whatever happens
        try:
            await self.backend.generate(self.prompt, self.state)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self.save_in_background("cancelled")
            raise
        except PlutosError as err:
            await self.save("failed", err.code)
            raise
        except Exception:
            # A bug, not the caller's fault: what the model did is still stored and billed.
            await self.save("failed", "internal_error")
            raise
        await self.save()
        await self.keep(use)

    async def batches(self, cache: str | None = None) -> AsyncGenerator[list[str], None]:
        """The output as the model produces it, in lists of the pieces that came together
        (:meth:`Backend.stream_batches`: one step per upstream read) — or, answered from the
        response cache (``cache`` as for :meth:`run`), the pieces it was streamed in, in one list;
        stored and billed once the stream ends, however it ends (a closed or cancelled stream is
        ``cancelled``, a failure ``failed``); a fresh answer is then kept in the cache.

        Raises ``invalid_model`` for a model without streaming."""
        if not self.spec.supports_streaming:
            raise PlutosError("invalid_model", f"Model '{self.spec.id}' does not support streaming.")
        use = await self.look_up(cache)
        hit = use.hit if use is not None else None
        recorded: list[str] = []  # a miss's pieces, for the cache entry
        if hit is not None:
            self.answer_from(hit)  # announces the record's id
        else:
            await self.prepare()  # from here on a record is stored whatever happens; its id goes out up front
        # The response's headers (initial metadata) leave with the first message, once it is
        # known: an error before it (an upstream's 429 or 500) is then a plain error status —
        # REST gets its real HTTP status, Retry-After and JSON envelope, not 200 + an error event.
        status, error_code = "cancelled", None
        try:
            if hit is not None:
                yield list(hit.chunks())
            else:
                # A cancelled call closes the backend's stream (and an upstream request) at once.
                async with aclosing(self.backend.stream_batches(self.prompt, self.state)) as batches:  # type: ignore[arg-type]
                    async for batch in batches:
                        if use is not None:
                            recorded.extend(batch)
                        yield batch
            status = "completed"
        except PlutosError as err:
            status, error_code = "failed", err.code
            raise
        except Exception:
            status, error_code = "failed", "internal_error"
            raise
        finally:
            if status != "completed":
                self.save_in_background(status, error_code)
        await self.save()
        if hit is None:
            await self.keep(use, tuple(recorded))

    async def save(self, status: str = "completed", error_code: str | None = None) -> None:
        """Store the record and its ledger entry. ``internal_error`` (naming the record's id) if
        the store refused the record and kept its salvaged form (failed, billed, no text), so the
        answer matches what ``GET /v1/process/{id}`` shows."""
        if tracing.enabled:
            with internal_span("store.write"):
                refused = await self.runtime.writer.write(*self.rows(status, error_code))
        else:
            refused = await self.runtime.writer.write(*self.rows(status, error_code))
        if refused:
            raise self.not_stored_error()
        if status == "completed" and self.call is not None:
            self.call.completed = True

    def not_stored_error(self) -> PlutosError:
        return PlutosError(
            "internal_error",
            "The result could not be stored; it is recorded as failed (its tokens are billed).",
            {"id": self.id},
        )

    def save_in_background(self, status: str, error_code: str | None = None) -> None:
        """For paths where the caller is gone (cancellation): queue the write, do not wait."""
        if not self.recorded:
            self.runtime.writer.submit(*self.rows(status, error_code))
