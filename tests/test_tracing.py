"""OpenTelemetry: one /v1/process through an upstream is one trace — the bridge's HTTP span (whose
parent is the caller's ``traceparent``), the RPC's server span under it (with the request id), and
under that the upstream call and the store write; the upstream receives ``traceparent``. Spans go
to the SDK's in-memory exporter; the upstream is the fault injector's plain ``ok`` model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from plutos.v1 import processing_pb2

from core import tracing
from gateway.app import RunningPlatform, start_platform
from server.config import _parse_model
from server.keys import CreatedKey, create_key
from tests import conftest
from tests.conftest import processing_stub
from tests.fault_upstream import FaultUpstream

MODEL = "traced-upstream"
RPC = "plutos.v1.ProcessingService/Process"


@dataclass
class Traced:
    platform: RunningPlatform
    exporter: InMemorySpanExporter
    faults: FaultUpstream
    key: CreatedKey


@pytest.fixture(scope="module")
async def traced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    faults = FaultUpstream()
    await faults.start()
    entry = {"id": MODEL, "backend": "openai-compatible", "base_url": faults.base_url, "upstream_model": "ok"}
    spec = _parse_model(entry)
    platform = await start_platform(conftest.test_settings(tmp_path_factory.mktemp("traced"), models=[spec]))
    try:
        key = await create_key(platform.runtime.sessions, plan="enterprise", name="tracing")
        yield Traced(platform, exporter, faults, key)
    finally:
        await platform.stop(grace=1)
        await faults.stop()
        tracing.disable()


async def spans_of(exporter: InMemorySpanExporter, trace_id: str, names: set[str]) -> list[ReadableSpan]:
    """The finished spans of ``trace_id`` once every name in ``names`` is among them (the HTTP
    span ends just after the response is sent)."""
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
        if names <= {s.name for s in spans} or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.05)


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


async def test_a_rest_process_through_an_upstream_is_one_trace(traced: Traced) -> None:
    trace_id, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    text = f"trace me {time.time()}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced.platform.http_port}/v1", timeout=60) as client:
        r = await client.post(
            "/process",
            json={"input": text, "model": MODEL},
            headers={"Authorization": f"Bearer {traced.key.secret}", "traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
    assert r.status_code == 200, r.text
    spans = await spans_of(traced.exporter, trace_id, {RPC, "POST /chat/completions", "store.write"})
    http = [s for s in spans if s.kind == SpanKind.SERVER and s.name != RPC]
    assert len(http) == 1, [(s.name, s.kind) for s in spans]
    rpc, upstream, store = one(spans, RPC), one(spans, "POST /chat/completions"), one(spans, "store.write")
    assert http[0].parent is not None and format(http[0].parent.span_id, "016x") == caller_span
    assert rpc.parent is not None and rpc.parent.span_id == http[0].context.span_id
    assert upstream.kind == SpanKind.CLIENT
    assert upstream.parent is not None and upstream.parent.span_id == rpc.context.span_id
    assert store.parent is not None and store.parent.span_id == rpc.context.span_id
    assert rpc.attributes is not None and rpc.attributes["plutos.request_id"] == r.headers["x-request-id"]
    assert rpc.attributes["rpc.grpc.status_code"] == "OK"
    # The key lookup (a cache miss: a new key) is a SQL span in the same trace.
    sql = [x for x in spans if x.attributes and any(k.startswith("db.") for k in x.attributes)]
    assert sql, [(x.name, dict(x.attributes or {})) for x in spans]
    # The upstream was called with this trace and the upstream span as its parent.
    (call,) = traced.faults.calls_for(text)
    _, sent_trace, sent_parent, _ = call.headers["traceparent"].split("-")
    assert sent_trace == trace_id and sent_parent == format(upstream.context.span_id, "016x")


async def test_a_grpc_callers_traceparent_is_the_parent(traced: Traced) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.platform.grpc_port}") as channel:
        await processing_stub(channel).Process(
            processing_pb2.ProcessRequest(input="trace me over gRPC", model=MODEL),
            metadata=(
                ("authorization", f"Bearer {traced.key.secret}"),
                ("traceparent", f"00-{trace_id}-{caller_span}-01"),
            ),
        )
    spans = await spans_of(traced.exporter, trace_id, {RPC, "POST /chat/completions"})
    rpc = one(spans, RPC)
    assert rpc.parent is not None and format(rpc.parent.span_id, "016x") == caller_span
    assert one(spans, "POST /chat/completions").parent.span_id == rpc.context.span_id  # type: ignore[union-attr]


def test_traces_are_off_unless_otel_variables_ask() -> None:
    assert not tracing.wanted({})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
