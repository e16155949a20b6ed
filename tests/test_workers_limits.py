"""`plutos serve --workers 2` keeps a plan's limits exact across its workers: with no redis_url
configured, the supervisor starts a private in-memory Redis (gateway/private_redis.py) that both
workers use, so a burst spread over many connections (SO_REUSEPORT hands them to both workers) is
admitted exactly up to the plan's per-minute limit — not once per worker. A real `plutos serve`, a
real redis-server (Debian's, installed by scripts/test-services.sh)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_mixed_load import reserved_port

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 30


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is needed (scripts/test-services.sh installs it)")
        pytest.skip("redis-server is not installed")
    cfg = tmp_path / "plutos.toml"
    cfg.write_text(
        f"[plans.burst]\nrequests_per_minute = {LIMIT}\nrequests_per_hour = 100000\nrequests_per_day = 100000\n"
        "concurrent_requests = 1000\nmonthly_tokens = 1000000\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PLUTOS_REDIS_URL", "PLUTOS_CONFIG")}
    env["PLUTOS_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}"
    cli = [sys.executable, "-m", "gateway.cli", "--config", str(cfg)]
    created = subprocess.run(
        [*cli, "keys", "create", "--plan", "burst", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(created.stdout)["key"]
    http_sock, grpc_sock = reserved_port(), reserved_port()
    http_port, grpc_port = http_sock.getsockname()[1], grpc_sock.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cli, "serve", "--workers", "2", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while log.read_text(errors="replace").count("serving REST on") < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"plutos serve did not start: {log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{http_port}/v1", key, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        http_sock.close()
        grpc_sock.close()
    assert proc.returncode == 0, log.read_text(errors="replace")[-5000:]


async def test_two_workers_admit_exactly_one_limit(two_workers: tuple[str, str, Path]) -> None:
    base_url, key, log = two_workers
    assert "private in-memory Redis" in log.read_text(errors="replace")
    if time.time() % 60 > 45:  # the burst must fall inside one minute window
        await asyncio.sleep(61 - time.time() % 60)
    headers = {"Authorization": f"Bearer {key}"}

    async def one_connection(n: int) -> list[int]:
        # A client of its own: a connection of its own, which the kernel gives to either worker.
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
            return [(await client.get("/models")).status_code for _ in range(n)]

    codes = [c for batch in await asyncio.gather(*(one_connection(3) for _ in range(30))) for c in batch]
    assert codes.count(200) == LIMIT, codes
    assert codes.count(429) == 90 - LIMIT, codes
