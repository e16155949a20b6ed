"""Prometheus metrics: the families, the hot-path helpers and the ``/metrics`` scrape.

Counted where the work already happens (the error interceptor, the bridge's endpoints, the
limits interceptor, the authenticator, the upstream client, the group-commit writer, the webhook
dispatcher), with bounded labels only: RPC method, REST route template, status/code, model id from
the catalogue (anything else is ``other``), limiter outcome, upstream base URL from the config.
Never a key, an account, a request id or any input.

``serve --workers N`` runs prometheus-client's multiprocess mode: the parent sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, each worker writes its values to files there,
and a scrape answered by any worker aggregates all of them (gauges of things in flight sum the
live workers' values).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No ``*_created`` series: they double the exposition and dashboards do not use them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# From sub-millisecond gateway work (auth refusals, /models) to multi-second generations.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# -- requests -----------------------------------------------------------------------------------
RPC_REQUESTS = Counter(
    "plutos_rpc_requests",
    "Calls to plutos.v1 RPCs (gRPC callers and REST through the bridge), by method, gRPC code and model.",
    ["method", "code", "model"],
)
RPC_DURATION = Histogram(
    "plutos_rpc_request_duration_seconds",
    "Time from a call's start to its last message, by method and model.",
    ["method", "model"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "plutos_http_requests",
    "REST requests by route template, HTTP method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "plutos_http_request_duration_seconds",
    "Time to the response's status and headers (for SSE: to the stream's start), by route.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# -- streams ------------------------------------------------------------------------------------
STREAMS_OPEN = Gauge("plutos_streams_open", "Server streams in progress.", multiprocess_mode="livesum")
STREAM_FIRST_MESSAGE = Histogram(
    "plutos_stream_first_chunk_seconds",
    "Time from a stream's start to its first message, by model.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
STREAM_MESSAGES = Counter(
    "plutos_stream_chunks", "Stream messages sent (chunks and the final one), by model.", ["model"]
)
STREAMS_CANCELLED = Counter("plutos_streams_cancelled", "Streams the client cancelled before the end.", ["model"])

# -- usage --------------------------------------------------------------------------------------
TOKENS = Counter("plutos_tokens", "Tokens billed, by model and type (prompt | completion).", ["model", "type"])
USAGE_CLAMPED = Counter(
    "plutos_usage_clamped",
    "Token counts a backend reported beyond what the request could use (billed at that bound instead),"
    " by model and type (prompt | completion).",
    ["model", "type"],
)
COST = Counter("plutos_cost_usd", "Cost billed in USD, by model.", ["model"])
QUOTA_RESERVATIONS = Gauge(
    "plutos_quota_reservations_in_flight",
    "Monthly-quota token reservations held by calls in progress.",
    multiprocess_mode="livesum",
)
CONCURRENCY_SLOTS = Gauge(
    "plutos_concurrency_slots_in_flight",
    "Concurrency-limit slots held by calls in progress (released when a call ends, however it ends).",
    multiprocess_mode="livesum",
)

# -- limits and auth ----------------------------------------------------------------------------
LIMITER_DECISIONS = Counter(
    "plutos_limiter_decisions",
    "Rate-limit and quota decisions by outcome (allowed | minute | hour | day | concurrent | quota | unavailable).",
    ["outcome"],
)
LIMITER_ERRORS = Counter("plutos_limiter_errors", "Limiter backend (Redis) errors.")
AUTH_CACHE = Counter("plutos_auth_cache", "API key lookups by cache result (hit | miss).", ["result"])
AUTH_REJECTED = Counter(
    "plutos_auth_rejected", "Refused keys by reason (missing | malformed | invalid | expired | suspended).", ["reason"]
)

# -- upstreams ----------------------------------------------------------------------------------
UPSTREAM_REQUESTS = Counter(
    "plutos_upstream_requests", "Requests to upstreams by upstream and HTTP status.", ["upstream", "status"]
)
UPSTREAM_ERRORS = Counter(
    "plutos_upstream_errors",
    "Failed upstream attempts by kind (connect | timeout | connection | http_4xx | http_429 | http_5xx).",
    ["upstream", "kind"],
)
UPSTREAM_RETRIES = Counter("plutos_upstream_retries", "Upstream requests retried.", ["upstream"])
UPSTREAM_DURATION = Histogram(
    "plutos_upstream_request_duration_seconds",
    "Time from sending an upstream request to its status and headers.",
    ["upstream"],
    buckets=LATENCY_BUCKETS,
)
FALLBACKS = Counter(
    "plutos_fallbacks", "Fallback models taken, by requested model and fallback.", ["model", "fallback"]
)
UPSTREAM_CONNECTIONS = Gauge(
    "plutos_upstream_open_connections", "Open connections per upstream.", ["upstream"], multiprocess_mode="livesum"
)

# -- store and webhooks -------------------------------------------------------------------------
COMMIT_BATCH = Histogram(
    "plutos_store_commit_batch_size", "Requests' writes carried by one group commit.", buckets=BATCH_BUCKETS
)
COMMIT_DURATION = Histogram(
    "plutos_store_commit_duration_seconds", "Time one group commit takes.", buckets=LATENCY_BUCKETS
)
WEBHOOK_DELIVERIES = Counter(
    "plutos_webhook_deliveries", "Webhook delivery attempts by outcome (delivered | retry | failed).", ["outcome"]
)
OUTBOX_PENDING = Gauge(
    "plutos_webhook_outbox_pending", "Webhook deliveries waiting to be sent.", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST_AGE = Gauge(
    "plutos_webhook_outbox_oldest_pending_age_seconds",
    "Age of the oldest pending webhook delivery (0 when none).",
    multiprocess_mode="mostrecent",
)

# -- process ------------------------------------------------------------------------------------
DRAINING = Gauge("plutos_draining", "1 while the process drains after SIGTERM.", multiprocess_mode="max")


# Model ids of the catalogue (set at start-up); any other name a caller sends is counted as "other".
_known_models: frozenset[str] = frozenset()


def set_known_models(ids: Iterable[str]) -> None:
    """Add catalogue ids to the names counted as themselves (several platforms may share a process)."""
    global _known_models
    _known_models = _known_models | frozenset(ids)


def model_label(name: str) -> str:
    if not name or name in _known_models:
        return name
    return "other"


class RequestMetrics:
    """Per-(method, code, model) children of the request families, cached: one dict lookup per
    call instead of prometheus-client's locked ``labels()`` lookups."""

    __slots__ = ("_durations", "_totals")

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, code: str, model: str, seconds: float) -> None:
        total = self._totals.get((method, code, model))
        if total is None:
            total = self._totals[(method, code, model)] = RPC_REQUESTS.labels(method, code, model)
        total.inc()
        duration = self._durations.get((method, model))
        if duration is None:
            duration = self._durations[(method, model)] = RPC_DURATION.labels(method, model)
        duration.observe(seconds)


class HttpMetrics:
    """The same for the bridge's routes."""

    __slots__ = ("_durations", "_totals")

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        total = self._totals.get((route, method, status))
        if total is None:
            total = self._totals[(route, method, status)] = HTTP_REQUESTS.labels(route, method, str(status))
        total.inc()
        duration = self._durations.get((route, method))
        if duration is None:
            duration = self._durations[(route, method)] = HTTP_DURATION.labels(route, method)
        duration.observe(seconds)


class UpstreamMetrics:
    """One upstream's (label: its base URL) request, error, retry and latency children."""

    __slots__ = ("_duration", "_errors", "_retries", "_statuses", "upstream")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._statuses: dict[int, Any] = {}
        self._errors: dict[str, Any] = {}
        self._duration = UPSTREAM_DURATION.labels(upstream)
        self._retries = UPSTREAM_RETRIES.labels(upstream)

    def answered(self, status: int, seconds: float) -> None:
        child = self._statuses.get(status)
        if child is None:
            child = self._statuses[status] = UPSTREAM_REQUESTS.labels(self.upstream, str(status))
        child.inc()
        self._duration.observe(seconds)
        if status != 200:
            self.error("http_429" if status == 429 else ("http_5xx" if status >= 500 else "http_4xx"))

    def error(self, kind: str) -> None:
        child = self._errors.get(kind)
        if child is None:
            child = self._errors[kind] = UPSTREAM_ERRORS.labels(self.upstream, kind)
        child.inc()

    def retry(self) -> None:
        self._retries.inc()


REQUESTS = RequestMetrics()
HTTP = HttpMetrics()


_usage_children: dict[str, tuple[Any, Any, Any]] = {}


def count_usage(model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
    """Tokens and cost billed for ``model`` (a catalogue id)."""
    children = _usage_children.get(model)
    if children is None:
        children = _usage_children[model] = (
            TOKENS.labels(model, "prompt"),
            TOKENS.labels(model, "completion"),
            COST.labels(model),
        )
    children[0].inc(prompt_tokens)
    children[1].inc(completion_tokens)
    children[2].inc(cost_usd)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render() -> tuple[bytes, str]:
    """The exposition of this process, or of every worker in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def metrics_route(before_scrape: Callable[[], Awaitable[None]] | None = None) -> Route:
    """``GET /metrics``; ``before_scrape`` refreshes gauges read from the store (bounded in time)."""

    async def scrape(request: Request) -> Response:
        if before_scrape is not None:
            await before_scrape()
        body, content_type = render()
        return Response(body, media_type=content_type)

    return Route("/metrics", scrape, methods=["GET"], name="metrics")


def outbox_gauges(sessions: Any) -> Callable[[], Awaitable[None]]:
    """A ``before_scrape`` that sets the outbox gauges from the store (at most once a second, and
    never more than a second's wait: a slow store keeps the previous values)."""
    from sqlalchemy import func, select

    from server.store.models import WebhookDelivery, utcnow

    last = [0.0]

    async def refresh() -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        query = select(func.count(), func.min(WebhookDelivery.created_at)).where(WebhookDelivery.status == "pending")
        try:
            async with asyncio.timeout(1.0), sessions() as session:
                count, oldest = (await session.execute(query)).one()
        except Exception:
            return
        OUTBOX_PENDING.set(count)
        OUTBOX_OLDEST_AGE.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0)

    return refresh
