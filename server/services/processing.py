"""ProcessingService: Process, GetProcess, Batch and Stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from plutos.v1 import processing_pb2, processing_pb2_grpc

from server.backends.base import Backend, closing_stream
from server.config import ModelSpec
from server.context import Caller, caller
from server.errors import PlutosError, invalid_parameter
from server.ids import new_id
from server.runtime import Runtime
from server.services.generation import Generation, resolve_model, timestamp
from server.services.options import options_from_record, params_from_options, require_text
from server.store.models import Batch, LedgerEntry, ProcessRecord, utcnow


def call_deadline(context: Any) -> float | None:
    """The caller's gRPC deadline on the loop's clock, handed to the backend so no upstream call
    outlives the caller; None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


class ProcessingService(processing_pb2_grpc.ProcessingServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _resolve(self, who: Caller, model_id: str) -> tuple[ModelSpec, Backend]:
        return resolve_model(self.runtime, who, model_id)

    def _generation(self, request: Any, kind: str, context: Any) -> Generation:
        who = caller()
        spec, backend = self._resolve(who, request.model)
        params = params_from_options(request.options, spec, call_deadline(context))
        require_text(request.input, "input")
        return Generation(self.runtime, who, spec, backend, kind=kind, text=request.input, params=params)

    async def Process(self, request: processing_pb2.ProcessRequest, context: Any) -> processing_pb2.ProcessResponse:
        with self.runtime.writer.expect():
            gen = self._generation(request, "process", context)
            await gen.run()
            return processing_pb2.ProcessResponse(
                id=gen.id,
                output=gen.state.text,
                model=gen.spec.id,
                usage=gen.usage(),
                created_at=timestamp(gen.created_at),
                processing_time=gen.elapsed_ms,
            )

    async def GetProcess(
        self, request: processing_pb2.GetProcessRequest, context: Any
    ) -> processing_pb2.GetProcessResponse:
        require_text(request.id, "id")
        async with self.runtime.sessions() as session:
            record = await session.get(ProcessRecord, request.id)
        # Another account's record is indistinguishable from a missing one.
        if record is None or record.account_id != caller().account_id:
            raise PlutosError("not_found", f"No processing result with id '{request.id}'.", {"id": request.id})
        return processing_pb2.GetProcessResponse(
            id=record.id,
            input=record.input,
            output=record.output,
            model=record.model,
            options=options_from_record(record.options),
            usage=processing_pb2.Usage(
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                total_tokens=record.prompt_tokens + record.completion_tokens,
            ),
            created_at=timestamp(record.created_at),
            processing_time=record.processing_time_ms,
            status=record.status,
        )

    async def Batch(self, request: processing_pb2.BatchRequest, context: Any) -> processing_pb2.BatchResponse:
        with self.runtime.writer.expect():
            who = caller()
            limit = self.runtime.settings.max_batch_inputs
            if not 1 <= len(request.inputs) <= limit:
                got = len(request.inputs)
                raise invalid_parameter("inputs", f"'inputs' must hold 1 to {limit} strings (got {got}).")
            spec, backend = self._resolve(who, request.model)
            params = params_from_options(request.options, spec, call_deadline(context))
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

            try:
                errors = await asyncio.gather(*(run_item(g) for g in gens))
            except asyncio.CancelledError:
                for gen in gens:
                    gen.save_in_background("cancelled")
                raise
            elapsed = int((time.perf_counter() - started) * 1000)
            rows: list[Any] = [
                Batch(
                    id=batch_id,
                    account_id=who.account_id,
                    key_id=who.key_id,
                    model=spec.id,
                    item_count=len(gens),
                    created_at=created_at,
                    processing_time_ms=elapsed,
                )
            ]
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
            await self.runtime.writer.write(*rows)
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
            async with closing_stream(gen.pieces(context)) as pieces:
                async for piece in pieces:
                    yield processing_pb2.StreamResponse(chunk=processing_pb2.StreamChunk(chunk="partial", output=piece))
            yield processing_pb2.StreamResponse(
                complete=processing_pb2.StreamComplete(
                    chunk="final",
                    output=gen.state.text,
                    usage=gen.usage(),
                    id=gen.id,
                    model=gen.spec.id,
                    created_at=timestamp(gen.created_at),
                    processing_time=gen.elapsed_ms,
                )
            )
