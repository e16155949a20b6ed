"""SIGTERM drains a real ``plutos serve --workers 2``: readiness turns 503 at once, new connections
are refused after ``drain_delay_seconds`` (its default: the test leaves it unset), a stream running
across the signal completes, what it produced is committed, and the process exits 0. The upstream
is the fault injector's ``drip`` model (200 pieces, 50 ms apart), the store SQLite or
PLUTOS_TEST_DATABASE_URL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gateway.app import start_platform
from server.config import _parse_model
from server.keys import create_key
from server.store.database import create_engine
from server.store.models import ProcessRecord
from tests import conftest
from tests.conftest import free_port
from tests.fault_upstream import FaultUpstream
from tests.subprocess_support import run

PLUTOS = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture  # a fresh one per test (tests/fault_upstream.py's is the module's)
async def faults() -> AsyncIterator[FaultUpstream]:
    upstream = FaultUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


async def test_sigterm_lets_a_stream_finish_refuses_new_calls_and_exits_0(
    tmp_path: Path, faults: FaultUpstream
) -> None:
    database_url = os.environ.get("PLUTOS_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'drain.db'}"
    config = tmp_path / "plutos.toml"
    config.write_text(
        f"""
[server]
database_url = "{database_url}"
drain_seconds = 30.0
log_format = "json"

[[models]]
id = "drip-model"
backend = "openai-compatible"
base_url = "{faults.base_url}"
upstream_model = "drip"
pricing = {{ input_tokens = 0.001, output_tokens = 0.002 }}
"""
    )
    cli = [*PLUTOS, "--config", str(config)]
    code, out, err = await run(*cli, "keys", "create", "--plan", "enterprise", "--json")
    assert code == 0, err
    secret = json.loads(out)["key"]
    http_port, grpc_port = free_port(), free_port()
    # The default drain_delay_seconds (tests/conftest.py sets 0 for every other server).
    env = {k: v for k, v in os.environ.items() if k != "PLUTOS_DRAIN_DELAY_SECONDS"}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115, ASYNC230 - closed in finally
    server = await asyncio.create_subprocess_exec(
        *cli,
        "serve",
        "--workers",
        "2",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        stdout=log,
        stderr=log,
        env=env,
    )
    root = f"http://127.0.0.1:{http_port}"
    marker = f"drain test {time.time()}"
    try:
        async with httpx.AsyncClient(base_url=root, timeout=60) as client:
            async with asyncio.timeout(120):
                while True:
                    try:
                        if (await client.get("/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
            headers = {"Authorization": f"Bearer {secret}"}
            body = {"input": marker, "model": "drip-model", "options": {"maxTokens": 500}}
            events: list[str] = []
            async with client.stream("POST", "/v1/stream", json=body, headers=headers) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("event: "):
                        events.append(line[7:])
                        break
                # One scrape (answered by either worker) sees both workers: the stream is open in one.
                async with httpx.AsyncClient(base_url=root, timeout=10) as scraper:
                    scrape = (await scraper.get("/metrics")).text
                assert "\nplutos_streams_open 1.0\n" in scrape, scrape[:2000]
                server.send_signal(signal.SIGTERM)
                # Readiness fails at once (while the port still accepts, for drain_delay_seconds)...
                statuses: list[object] = []
                async with asyncio.timeout(20):
                    while True:
                        try:
                            async with httpx.AsyncClient(base_url=root, timeout=10) as probe:  # a new connection
                                statuses.append((await probe.get("/ready")).status_code)
                        except httpx.ConnectError:
                            statuses.append(0)  # ...then new connections are refused
                            break
                        except httpx.TransportError as err:
                            statuses.append(repr(err))
                        await asyncio.sleep(0.05)
                assert 503 in statuses, (statuses, (tmp_path / "serve.log").read_text()[-3000:])
                with pytest.raises(httpx.ConnectError):
                    await probe_process(root, headers, marker)
                async for line in lines:
                    if line.startswith("event: "):
                        events.append(line[7:])
            assert events[0] == "chunk" and events[-1] == "complete", events[-3:]
        async with asyncio.timeout(60):
            code = await server.wait()
        assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        log.close()
        if server.returncode is None:
            server.kill()
            await server.wait()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(ProcessRecord).where(ProcessRecord.input == marker))).all()
    finally:
        await engine.dispose()
    assert len(rows) == 1
    assert rows[0].status == "completed" and rows[0].completion_tokens > 0


async def probe_process(root: str, headers: dict[str, str], marker: str) -> None:
    async with httpx.AsyncClient(base_url=root, timeout=5) as client:
        await client.post("/v1/process", json={"input": marker + " late", "model": "drip-model"}, headers=headers)


async def test_calls_still_running_when_the_drain_ends_get_unavailable_and_are_billed(
    tmp_path: Path, faults: FaultUpstream
) -> None:
    spec = _parse_model(
        {"id": "drip-model", "backend": "openai-compatible", "base_url": faults.base_url, "upstream_model": "drip"}
    )
    settings = conftest.test_settings(tmp_path, models=[spec], bridge_transport="local")
    platform = await start_platform(settings)
    key = await create_key(platform.runtime.sessions, plan="enterprise", name="drain")
    marker = f"cut short by the drain {time.time()}"
    events: list[str] = []
    data: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}/v1", timeout=60) as client:
        body = {"input": marker, "model": "drip-model"}
        headers = {"Authorization": f"Bearer {key.secret}"}
        async with client.stream("POST", "/stream", json=body, headers=headers) as stream:
            lines = stream.aiter_lines()
            async for line in lines:
                if line.startswith("event: "):
                    break
            drain = asyncio.create_task(platform.drain(0.5))
            async for line in lines:
                if line.startswith("event: "):
                    events.append(line[7:])
                elif line.startswith("data: "):
                    data.append(line[6:])
        await drain
    assert events[-1] == "error", events[-3:]
    assert json.loads(data[-1])["error"]["code"] == "service_unavailable"
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(ProcessRecord).where(ProcessRecord.input == marker))).all()
    finally:
        await engine.dispose()
    assert len(rows) == 1 and rows[0].status == "cancelled" and rows[0].completion_tokens > 0
