"""ProcessingService: Process, GetProcess, Batch and Stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

from plutos.v1 import processing_pb2, processing_pb2_grpc
from sqlalchemy import select

from core.errors import PlutosError, echo, invalid_parameter
from core.ids import new_id
from server.backends.base import Backend
from server.call_state import Caller, call_state, caller
from server.config import ModelSpec
from server.options import options_from_record, params_from_options, require_text
from server.response_cache import CachedAnswer, cache_key, cache_mode
from server.runtime import Runtime
from server.services.generation import Generation, timestamp
from server.services.pages import limit_of, newest_first
from server.services.usage import date_filter
from server.store.models import Batch, LedgerEntry, ProcessRecord, utcnow

log = logging.getLogger("plutos.processing")


INT32_MAX = 2**31 - 1


def int32(value: int) -> int:
    """``value`` held to a protobuf int32 field's range (0 to 2**31 - 1 for counts and durations)."""
    return min(max(int(value), 0), INT32_MAX)


def call_deadline(context: Any) -> float | None:
    """The caller's gRPC deadline on the loop's clock, handed to the backend so no upstream call
    outlives the caller; None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


def _chunk(piece: str) -> processing_pb2.StreamResponse:
    return processing_pb2.StreamResponse(chunk=processing_pb2.StreamChunk(chunk="partial", output=piece))


@dataclass(slots=True)
class _CacheUse:
    key: str
    hit: CachedAnswer | None = None


RECORD_STATUSES = ("completed", "failed", "cancelled")
_LISTED_COLUMNS = (
    ProcessRecord.id,
    ProcessRecord.kind,
    ProcessRecord.model,
    ProcessRecord.status,
    ProcessRecord.input,
    ProcessRecord.output,
    ProcessRecord.prompt_tokens,
    ProcessRecord.completion_tokens,
    ProcessRecord.created_at,
    ProcessRecord.processing_time_ms,
    ProcessRecord.batch_id,
    ProcessRecord.batch_index,
    ProcessRecord.error_code,
    ProcessRecord.cached,
)


def _record_message(record: Any) -> processing_pb2.ProcessRecord:
    """A ``_LISTED_COLUMNS`` row (attribute access by column name) as its message."""
    msg = processing_pb2.ProcessRecord(
        id=record.id,
        kind=record.kind,
        model=record.model,
        status=record.status,
        input=record.input,
        output=record.output,
        usage=processing_pb2.Usage(
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            total_tokens=record.prompt_tokens + record.completion_tokens,
        ),
        created_at=timestamp(record.created_at),
        processing_time=record.processing_time_ms,
        cached=bool(record.cached),
    )
    if record.batch_id is not None:
        msg.batch_id = record.batch_id
        msg.batch_index = record.batch_index or 0
    if record.error_code is not None:
        msg.error_code = record.error_code
    return msg


class ProcessingService(processing_pb2_grpc.ProcessingServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _resolve(self, who: Caller, model_id: str) -> tuple[ModelSpec, Backend]:
        require_text(model_id, "model")
        spec, backend = self.runtime.catalogue.resolve(model_id)
        if not who.allows_model(model_id):
            raise PlutosError(
                "permission_denied", f"This API key may not use model '{echo(model_id)}'.", {"model": model_id}
            )
        return spec, backend

    def _generation(self, request: Any, kind: str, context: Any) -> Generation:
        who = caller()
        spec, backend = self._resolve(who, request.model)
        params = params_from_options(request.options, spec, call_deadline(context), request_id=call_state().request_id)
        require_text(request.input, "input")
        return Generation(self.runtime, who, spec, backend, kind=kind, text=request.input, params=params)

    async def _look_up(self, gen: Generation, options: processing_pb2.ProcessOptions) -> _CacheUse | None:
        """The response cache's part in this call (None: "bypass"), and its entry if it answers.
        ``options.cache``, else the key's default (``cacheDefault``), else "bypass"."""
        mode = cache_mode(options.cache if options.HasField("cache") else gen.caller.cache_default)
        if mode == "bypass":
            return None
        use = _CacheUse(cache_key(gen.caller.account_id, gen.spec.id, gen.text, gen.params))
        if mode == "use":
            use.hit = await self.runtime.response_cache.get(gen.caller.account_id, use.key)
        call_state().response_metadata["x-cache"] = "HIT" if use.hit is not None else "MISS"
        return use

    async def _keep(self, gen: Generation, use: _CacheUse | None, pieces: tuple[str, ...] = ()) -> None:
        if use is not None:
            await self.runtime.response_cache.put(gen.caller.account_id, use.key, gen.as_cache_entry(pieces))

    async def Process(self, request: processing_pb2.ProcessRequest, context: Any) -> processing_pb2.ProcessResponse:
        with self.runtime.writer.expect():
            gen = self._generation(request, "process", context)
            cache = await self._look_up(gen, request.options)
            if cache is not None and cache.hit is not None:
                gen.answer_from(cache.hit)
                await gen.save()
                return self._process_response(gen)
            await gen.run()
            await self._keep(gen, cache)
            return self._process_response(gen)

    @staticmethod
    def _process_response(gen: Generation) -> processing_pb2.ProcessResponse:
        return processing_pb2.ProcessResponse(
            id=gen.id,
            output=gen.state.text,
            model=gen.spec.id,
            usage=gen.usage(),
            created_at=timestamp(gen.created_at),
            processing_time=gen.processing_time,
        )

    async def GetProcess(
        self, request: processing_pb2.GetProcessRequest, context: Any
    ) -> processing_pb2.GetProcessResponse:
        require_text(request.id, "id")
        async with self.runtime.sessions() as session:
            record = await session.get(ProcessRecord, request.id)
        # Another account's record is indistinguishable from a missing one.
        if record is None or record.account_id != caller().account_id:
            raise PlutosError("not_found", f"No processing result with id '{echo(request.id)}'.", {"id": request.id})
        return processing_pb2.GetProcessResponse(
            id=record.id,
            input=record.input,
            output=record.output,
            model=record.model,
            options=options_from_record(record.options),
            # int32 fields: a count no request can reach (stored before usage was bounded) is
            # shown at the field's limit rather than making the record unreadable.
            usage=processing_pb2.Usage(
                prompt_tokens=int32(record.prompt_tokens),
                completion_tokens=int32(record.completion_tokens),
                total_tokens=int32(record.prompt_tokens + record.completion_tokens),
            ),
            created_at=timestamp(record.created_at),
            processing_time=int32(record.processing_time_ms),
            status=record.status,
            cached=bool(record.cached),
        )

    async def ListProcesses(
        self, request: processing_pb2.ListProcessesRequest, context: Any
    ) -> processing_pb2.ListProcessesResponse:
        """The caller's records, newest first; one range scan of ix_process_records_account_created_id."""
        who = caller()
        filters = []
        if request.model:
            filters.append(ProcessRecord.model == request.model)
        if request.status:
            if request.status not in RECORD_STATUSES:
                raise PlutosError(
                    "invalid_parameters",
                    f"'status' must be one of {', '.join(RECORD_STATUSES)} (got '{request.status}').",
                    {"field": "status", "allowed": list(RECORD_STATUSES)},
                )
            filters.append(ProcessRecord.status == request.status)
        first, last = date_filter(request.start_date, request.end_date, utcnow().date())
        if first is not None:
            filters.append(ProcessRecord.created_at >= datetime.combine(first, dtime.min, tzinfo=UTC))
        if last is not None:
            filters.append(ProcessRecord.created_at < datetime.combine(last + timedelta(days=1), dtime.min, tzinfo=UTC))
        query = select(*_LISTED_COLUMNS)  # plain rows: half the time of ORM objects per page
        async with self.runtime.sessions() as session:
            page = await newest_first(
                session,
                ProcessRecord,
                [ProcessRecord.account_id == who.account_id],
                limit=limit_of(request),
                after=request.after,
                filters=filters,
                query=query,
            )
        return processing_pb2.ListProcessesResponse(data=[_record_message(r) for r in page.rows], **page.ids())

    async def Batch(self, request: processing_pb2.BatchRequest, context: Any) -> processing_pb2.BatchResponse:
        with self.runtime.writer.expect():
            who = caller()
            limit = self.runtime.settings.max_batch_inputs
            if not 1 <= len(request.inputs) <= limit:
                got = len(request.inputs)
                raise invalid_parameter("inputs", f"'inputs' must hold 1 to {limit} strings (got {got}).")
            spec, backend = self._resolve(who, request.model)
            params = params_from_options(
                request.options, spec, call_deadline(context), request_id=call_state().request_id
            )
            batch_id = new_id("batch")
            created_at = utcnow()
            started = time.perf_counter()
            gens = [
                Generation(
                    self.runtime,
                    who,
                    spec,
                    backend,
                    kind="batch",
                    text=text,
                    params=params,
                    batch_id=batch_id,
                    batch_index=i,
                )
                for i, text in enumerate(request.inputs)
            ]
            bound = asyncio.Semaphore(self.runtime.settings.batch_concurrency)

            async def run_item(gen: Generation) -> PlutosError | None:
                async with bound:
                    try:
                        require_text(gen.text, "input")
                        await gen.prepare()
                        await gen.backend.generate(gen.prompt, gen.state)  # type: ignore[arg-type]
                        return None
                    except PlutosError as err:
                        return err
                    except Exception:
                        # One item's bug stays that item's: the others are answered, stored and billed.
                        log.exception("batch %s item %s failed", batch_id, gen.batch_index)
                        return PlutosError("internal_error", "Internal server error.")

            def batch_row() -> Batch:
                return Batch(
                    id=batch_id,
                    account_id=who.account_id,
                    key_id=who.key_id,
                    model=spec.id,
                    item_count=len(gens),
                    created_at=created_at,
                    processing_time_ms=int((time.perf_counter() - started) * 1000),
                )

            try:
                errors = await asyncio.gather(*(run_item(g) for g in gens))
            except asyncio.CancelledError:
                # The batch row with its items, in one write: no item points at a missing batch.
                self.runtime.writer.submit(
                    batch_row(), *(row for gen in gens if not gen.recorded for row in gen.rows("cancelled"))
                )
                raise
            rows: list[Any] = [batch_row()]
            elapsed = rows[0].processing_time_ms
            results = []
            total = processing_pb2.Usage()
            for gen, err in zip(gens, errors, strict=True):
                rows.extend(gen.rows("failed" if err else "completed", err.code if err else None))
                usage = gen.usage()
                total.prompt_tokens += usage.prompt_tokens
                total.completion_tokens += usage.completion_tokens
                total.total_tokens += usage.total_tokens
                result = processing_pb2.BatchResult(input=gen.text, output=gen.state.text, usage=usage)
                if err is not None:
                    result.error.code = err.code
                    result.error.message = err.message
                results.append(result)
            # The batch is one request, counted on its first billed item (an item that never reached
            # the model, e.g. an empty input, has no ledger entry).
            for n, entry in enumerate(r for r in rows if isinstance(r, LedgerEntry)):
                entry.counts_as_request = 1 if n == 0 else 0
            refused = await self.runtime.writer.write(*rows)
            if refused:  # the store kept a salvaged record for these items: they answer as failed
                for gen, result in zip(gens, results, strict=True):
                    if any(r.id == gen.id for r in refused if isinstance(r, ProcessRecord)):
                        err = gen.not_stored_error()
                        result.output = ""
                        result.error.code = err.code
                        result.error.message = err.message
            return processing_pb2.BatchResponse(
                id=batch_id,
                results=results,
                total_usage=total,
                created_at=timestamp(created_at),
                processing_time=elapsed,
            )

    async def Stream(
        self, request: processing_pb2.StreamRequest, context: Any
    ) -> AsyncIterator[processing_pb2.StreamResponse]:
        with self.runtime.writer.expect():  # the generator's own: closing it leaves the block
            gen = self._generation(request, "stream", context)
            if not gen.spec.supports_streaming:
                raise PlutosError("invalid_model", f"Model '{gen.spec.id}' does not support streaming.")
            cache = await self._look_up(gen, request.options)
            recorded: list[str] = []  # a miss's pieces, for the cache entry
            hit = cache.hit if cache is not None else None
            if hit is not None:
                gen.answer_from(hit)
            # A hit is sent as the chunks it was streamed in. The record's id went out up front
            # (Generation.announce) and the record is stored however the stream ends (Generation.batches).
            # In lists of the pieces that came together: one step per upstream read.
            async with aclosing(gen.batches(hit.chunks() if hit is not None else None)) as batches:
                async for batch in batches:
                    if cache is not None and hit is None:
                        recorded.extend(batch)
                    for piece in batch:
                        yield _chunk(piece)
            if not gen.cached:
                await self._keep(gen, cache, tuple(recorded))
            yield processing_pb2.StreamResponse(
                complete=processing_pb2.StreamComplete(
                    chunk="final",
                    output=gen.state.text,
                    usage=gen.usage(),
                    id=gen.id,
                    model=gen.spec.id,
                    created_at=timestamp(gen.created_at),
                    processing_time=gen.processing_time,
                )
            )
