"""OpenTelemetry traces: off by default; on when the standard ``OTEL_*`` variables ask for them
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or
``OTEL_TRACES_EXPORTER=otlp|console``; ``OTEL_SDK_DISABLED=true`` wins). The exporter, service name
(``OTEL_SERVICE_NAME``, default ``plutos``), resource attributes and sampler come from the SDK's own
reading of those variables.

One trace per request: the REST bridge's HTTP span (opentelemetry-instrumentation-asgi, which
accepts a W3C ``traceparent``), the RPC's server span (from the error interceptor; a gRPC caller's
``traceparent`` metadata is its parent), and under it the upstream call (a CLIENT span whose
``traceparent`` goes to the upstream) and the store write. The request id is a span attribute.

While off, the hot path pays one boolean test per hook (:data:`state.enabled`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode


class _State:
    __slots__ = ("enabled", "provider", "tracer")

    def __init__(self) -> None:
        self.enabled = False
        self.provider: Any = None
        self.tracer: trace.Tracer | None = None


state = _State()


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return exporter not in ("", "none")


def setup_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Start the SDK (batching exporter, global provider) if the environment asks; True if on."""
    env = os.environ if env is None else env
    if state.enabled or not wanted(env):
        return state.enabled
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "plutos")}))
    exporter: SpanExporter
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    enable(provider)
    return True


def enable(provider: Any) -> None:
    """Trace with ``provider`` (an SDK ``TracerProvider``; tests pass one with an in-memory exporter)."""
    state.provider = provider
    state.tracer = provider.get_tracer("plutos")
    state.enabled = True


def disable() -> None:
    state.enabled = False
    state.tracer = None
    state.provider = None


def shutdown() -> None:
    """Export what is pending (at exit)."""
    if state.provider is not None and hasattr(state.provider, "shutdown"):
        state.provider.shutdown()


def instrument_asgi(app: Any) -> Any:
    """The REST app inside OpenTelemetry's ASGI middleware (HTTP server spans, ``traceparent``)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app, tracer_provider=state.provider, exclude_spans=["receive", "send"])


def instrument_store(engine: Any) -> None:
    """SQL statements through SQLAlchemy as spans (opentelemetry-instrumentation-sqlalchemy), and
    Redis commands (opentelemetry-instrumentation-redis). The group-commit writer's SQLite inserts
    go through sqlite3 directly: the request's ``store.write`` span covers them."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, tracer_provider=state.provider)
    redis = RedisInstrumentor()
    if not redis.is_instrumented_by_opentelemetry:
        redis.instrument(tracer_provider=state.provider)


# -- the RPC span ---------------------------------------------------------------------------------


def start_rpc(method: str, metadata: Iterable[tuple[str, Any]] | None, request_id: str) -> tuple[Span, object]:
    """A SERVER span for one plutos.v1 call, made current; its parent is the caller's
    ``traceparent`` metadata, else the current context (the bridge's HTTP span, in process)."""
    assert state.tracer is not None
    carrier = {k: v for k, v in metadata or () if k in ("traceparent", "tracestate") and isinstance(v, str)}
    parent = propagate.extract(carrier) if carrier else None
    span = state.tracer.start_span(
        method.lstrip("/"),
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": method.lstrip("/").split("/")[0],
            "rpc.method": method.rsplit("/", 1)[-1],
            "plutos.request_id": request_id,
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    return span, token


def end_rpc(span: Span, token: object, code: str, error_code: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code)
    if error_code:
        span.set_attribute("plutos.error_code", error_code)
    if code not in ("OK", "CANCELLED"):
        span.set_status(Status(StatusCode.ERROR, error_code or code))
    span.end()
    with contextlib.suppress(Exception):  # a stream closed from another context
        otel_context.detach(token)  # type: ignore[arg-type]


def inject(headers: dict[str, str], span: Span | None = None) -> dict[str, str]:
    """``headers`` plus ``traceparent`` (and ``tracestate``) of ``span`` (default: the current one)."""
    propagate.inject(headers, context=trace.set_span_in_context(span) if span is not None else None)
    return headers


def client_span(name: str, attributes: dict[str, Any]) -> Span:
    """A CLIENT span (an upstream request) under the current span; the caller ends it."""
    assert state.tracer is not None
    return state.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def internal_span(name: str) -> Any:
    """A context manager: an INTERNAL span (e.g. the store write) under the current span."""
    assert state.tracer is not None
    return state.tracer.start_as_current_span(name)
