"""Operations on the session platform: /metrics, the Grafana dashboard's metric names, /health and
/ready (and the gRPC health service), the per-request log line. Drain and TLS have their own files."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette

from gateway.app import RunningPlatform, start_platform
from server.call_state import CallState
from server.keys import CreatedKey
from server.observability.health import Readiness, ready_route
from server.observability.logs import ACCESS_LOGGER, JsonFormatter, RequestLog, TextFormatter
from tests import conftest
from tests.conftest import MODEL, GrpcClients, free_port

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
PROCESS = "/plutos.v1.ProcessingService/Process"


def root(platform: RunningPlatform) -> str:
    return f"http://127.0.0.1:{platform.http_port}"


async def scrape(platform: RunningPlatform) -> str:
    async with httpx.AsyncClient(base_url=root(platform), timeout=30) as client:
        r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_process_call_is_counted(http: httpx.AsyncClient, platform: RunningPlatform) -> None:
    r = await http.post("/process", json={"input": "Say hi", "model": MODEL, "options": {"maxTokens": 3}})
    assert r.status_code == 200, r.text
    bad = await http.post("/process", json={"input": "x", "model": "no-such-model-" + r.json()["id"]})
    assert bad.status_code == 400
    text = await scrape(platform)
    assert (sample(text, "plutos_rpc_requests_total", method=PROCESS, code="OK", model=MODEL) or 0) >= 1
    # An unknown model name is a bounded label, never the caller's text.
    assert (sample(text, "plutos_rpc_requests_total", method=PROCESS, code="INVALID_ARGUMENT", model="other") or 0) >= 1
    assert r.json()["id"] not in text
    assert (sample(text, "plutos_rpc_request_duration_seconds_count", method=PROCESS, model=MODEL) or 0) >= 1
    assert (sample(text, "plutos_http_requests_total", route="/v1/process", method="POST", status="200") or 0) >= 1
    assert (sample(text, "plutos_tokens_total", model=MODEL, type="completion") or 0) >= 1
    assert (sample(text, "plutos_cost_usd_total", model=MODEL) or 0) > 0
    assert (sample(text, "plutos_auth_cache_total", result="hit") or 0) + (
        sample(text, "plutos_auth_cache_total", result="miss") or 0
    ) >= 1
    assert (sample(text, "plutos_limiter_decisions_total", outcome="allowed") or 0) >= 1
    assert (sample(text, "plutos_store_commit_batch_size_count") or 0) >= 1
    assert sample(text, "plutos_webhook_outbox_pending") is not None
    assert sample(text, "plutos_streams_open") is not None
    assert "process_cpu_seconds_total" in text or "python_gc_objects_collected_total" in text


async def test_refused_keys_are_counted_by_reason(anon: httpx.AsyncClient, platform: RunningPlatform) -> None:
    assert (await anon.get("/models")).status_code == 401
    assert (await anon.get("/models", headers={"Authorization": "Bearer pk_not_a_real_key"})).status_code == 401
    text = await scrape(platform)
    assert (sample(text, "plutos_auth_rejected_total", reason="missing") or 0) >= 1
    assert (sample(text, "plutos_auth_rejected_total", reason="invalid") or 0) >= 1
    assert "pk_not_a_real_key" not in text


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\bplutos_[a-z_]+", expr)}


async def test_every_metric_in_the_dashboard_is_exported(platform: RunningPlatform) -> None:
    text = await scrape(platform)
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    exported = set(families)
    for family, kind in families.items():
        if kind == "histogram":
            exported |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    missing = sorted(dashboard_metric_names() - exported)
    assert not missing, f"the dashboard queries metrics that are not exported: {missing}"


async def test_health_and_ready_need_no_key(platform: RunningPlatform) -> None:
    async with httpx.AsyncClient(base_url=root(platform), timeout=30) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "redis": "not configured", "model": "ok", "drain": "ok"},
    }


async def test_ready_answers_503_naming_the_failed_check(platform: RunningPlatform) -> None:
    draining = Readiness(platform.runtime)
    draining.draining = True
    app = Starlette(routes=[ready_route(draining)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.get("/ready")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    assert r.json()["checks"]["drain"] == "draining"
    assert r.json()["checks"]["store"] == "ok"


async def test_grpc_health_reports_serving(grpc_clients: GrpcClients) -> None:
    stub = health_pb2_grpc.HealthStub(grpc_clients.channel)
    for service in ("", "plutos.v1.ProcessingService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_one_json_line_per_request_without_the_key_or_the_input(http: httpx.AsyncClient, key: CreatedKey) -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    lines = _Lines()
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    secret_input = "my very private input 4711"
    try:
        r = await http.post("/process", json={"input": secret_input, "model": MODEL, "options": {"maxTokens": 2}})
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert r.status_code == 200
    mine = [json.loads(line) for line in lines.lines if r.headers["x-request-id"] in line]
    assert len(mine) == 1, lines.lines
    entry = mine[0]
    assert entry["method"] == PROCESS and entry["code"] == "OK" and entry["model"] == MODEL
    assert entry["account_id"] and entry["key_id"] == key.id and entry["key_prefix"] == key.prefix
    assert entry["completion_tokens"] >= 1 and entry["cost_usd"] > 0 and entry["latency_ms"] > 0
    assert {"time", "level", "request_id", "prompt_tokens", "upstream_ms", "cache", "error"} <= set(entry)
    assert key.secret not in lines.lines[0] and secret_input not in lines.lines[0]


def test_log_bodies_adds_input_and_output_and_text_is_readable() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    lines = _Lines()
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)

    class Request:
        input = "hello there"

    state = CallState(request_id="req_1", method=PROCESS, output="general kenobi")
    try:
        RequestLog(log_bodies=True).write(state, PROCESS, MODEL, "OK", 0.0, Request())
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    entry = json.loads(lines.lines[0])
    assert entry["input"] == "hello there" and entry["output"] == "general kenobi"
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, "Process OK", None, None)
    record.request_id = "req_1"
    assert TextFormatter().format(record).endswith("plutos.access: Process OK request_id=req_1")


async def test_metrics_port_serves_operations_apart_from_the_api(tmp_path: Path) -> None:
    settings = conftest.test_settings(tmp_path, models=[], metrics_port=free_port())
    running = await start_platform(settings)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            ops = f"http://127.0.0.1:{running.ops_port}"
            assert (await client.get(f"{ops}/metrics")).status_code == 200
            assert (await client.get(f"{ops}/ready")).json()["status"] == "ready"
            api = await client.get(f"http://127.0.0.1:{running.http_port}/metrics")
            assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    finally:
        await running.stop(grace=1)


async def test_ready_names_an_unreachable_store_and_redis() -> None:
    from server.limiter.redis_backend import RedisLimiter
    from server.store.database import create_engine

    engine = create_engine("postgresql+asyncpg://plutos:secret-pw@127.0.0.1:1/nothing")  # nothing listens on port 1
    limiter = RedisLimiter("redis://127.0.0.1:1/0", timeout=0.5)
    runtime = SimpleNamespace(engine=engine, limiter=limiter, catalogue=SimpleNamespace(backends={}))
    try:
        ok, checks = await Readiness(runtime).check()  # type: ignore[arg-type]
    finally:
        await limiter.client.aclose(close_connection_pool=True)
        await engine.dispose()
    assert not ok
    assert checks["store"].startswith("failed: ") and checks["redis"].startswith("failed: ")
    assert "secret-pw" not in str(checks)
    assert checks["model"] == "ok" and checks["drain"] == "ok"


async def test_requests_the_bridge_refuses_get_a_log_line_and_are_counted(platform: RunningPlatform) -> None:
    """Malformed JSON, a body over the limit, an unknown route, a wrong method and a request that is
    not HTTP never reach the service: the bridge writes their request line and counts them, with
    bounded labels (a route template, ``unmatched`` or ``unparsed``; never the path sent)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    lines = _Lines()
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    marker = f"nowhere-{time.time_ns()}"
    limit = platform.runtime.settings.max_body_bytes
    try:
        async with httpx.AsyncClient(base_url=root(platform), timeout=30) as client:
            answers = {
                "malformed": await client.post(
                    "/v1/process", content=b'{"input": ', headers={"Content-Type": "application/json"}
                ),
                "too_large": await client.post(
                    "/v1/process", content=b" " * (limit + 1), headers={"Content-Type": "application/json"}
                ),
                "unmatched": await client.get(f"/v1/{marker}"),
                "method": await client.request("PUT", "/v1/process"),
                "odd_method": await client.request("BREW", f"/v1/{marker}"),
            }
        reader, writer = await asyncio.open_connection("127.0.0.1", platform.http_port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        raw = await reader.read()
        writer.close()
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), raw
    answers_ids = {name: r.headers["x-request-id"] for name, r in answers.items()}
    answers_ids["unparsed"] = json.loads(body)["error"]["requestId"]
    expected = {  # name -> (status, route, http_method, error code)
        "malformed": (400, "/v1/process", "POST", "invalid_parameters"),
        "too_large": (answers["too_large"].status_code, "/v1/process", "POST", "input_too_long"),
        "unmatched": (404, "unmatched", "GET", "not_found"),
        "method": (405, "/v1/process", "PUT", "method_not_allowed"),
        "odd_method": (400, "unparsed", "other", "invalid_parameters"),  # httptools knows its methods
        "unparsed": (400, "unparsed", "other", "invalid_parameters"),
    }
    for name, (status, route, method, code) in expected.items():
        assert status < 500, (name, status)
        mine = [json.loads(line) for line in lines.lines if answers_ids[name] in line]
        assert len(mine) == 1, (name, lines.lines)
        entry = mine[0]
        assert (entry["status"], entry["route"], entry["http_method"], entry["error"]) == (status, route, method, code)
        assert entry["request_id"] == answers_ids[name] and entry["logger"] == ACCESS_LOGGER
        assert entry["key_id"] is None and entry["code"]  # the gRPC code of the error, as on other lines
    text = await scrape(platform)
    assert marker not in text
    counted = (("unmatched", "GET", "404"), ("/v1/process", "PUT", "405"), ("unparsed", "other", "400"))
    for route, method, status_label in counted:
        assert (sample(text, "plutos_http_requests_total", route=route, method=method, status=status_label) or 0) >= 1
    assert (sample(text, "plutos_http_requests_total", route="/v1/process", method="POST", status="400") or 0) >= 1


async def test_a_stream_closed_after_its_answer_was_stored_is_ok_and_before_it_cancelled() -> None:
    """SDKs close the connection as soon as the final event arrives, sometimes before the handler
    has returned (a new user saw half of the Python SDK's streams logged CANCELLED): a stream whose
    record was stored completed counts OK; one closed before that still counts CANCELLED."""
    from prometheus_client import REGISTRY

    from server.call_state import call_state
    from server.interceptors.errors import ErrorInterceptor

    method = "/plutos.v1.ProcessingService/Stream"
    context = SimpleNamespace(
        invocation_metadata=lambda: (),
        send_initial_metadata=lambda md: asyncio.sleep(0),
        set_trailing_metadata=lambda md: None,
    )

    def handler(stored: bool) -> Any:
        async def stream(request: object, ctx: object) -> AsyncIterator[str]:
            yield "chunk"
            if stored:
                call_state().completed = True  # what Generation.save does for a completed record
            yield "complete"
            yield "never read"

        return stream

    def count(code: str) -> float:
        labels = {"method": method, "code": code, "model": ""}
        return REGISTRY.get_sample_value("plutos_rpc_requests_total", labels) or 0.0

    interceptor = ErrorInterceptor(metrics=True)
    for stored, code in ((True, "OK"), (False, "CANCELLED")):
        before = count(code)
        wrapped = await interceptor.intercept(handler(stored), SimpleNamespace(), context, method)
        assert [await wrapped.__anext__(), await wrapped.__anext__()] == ["chunk", "complete"]
        await wrapped.aclose()  # the client left after the second message
        assert count(code) == before + 1
