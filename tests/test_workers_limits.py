"""`plutos serve --workers 2` keeps a plan's limits exact across its workers: with no redis_url
configured, the supervisor starts a private in-memory Redis (gateway/private_redis.py) that both
workers use, so a burst spread over many connections (SO_REUSEPORT hands them to both workers) is
admitted exactly up to the plan's per-minute limit — not once per worker. A real `plutos serve`, a
real redis-server (Debian's, installed by scripts/test-services.sh)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.limits_support import in_one_minute
from tests.serve_support import Serving, plutos_json, serving_workers

LIMIT = 30


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[tuple[Serving, Path, dict[str, str]]]:
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
    async with serving_workers(cfg, env, tmp_path / "serve.log", workers=2) as serving:
        yield serving, cfg, env
    assert serving.proc.returncode == 0, serving.log.read_text(errors="replace")[-5000:]


async def test_two_workers_admit_exactly_one_limit(two_workers: tuple[Serving, Path, dict[str, str]]) -> None:
    serving, cfg, env = two_workers
    assert "private in-memory Redis" in serving.log.read_text(errors="replace")

    async def burst() -> list[int]:
        key = plutos_json(cfg, env, "keys", "create", "--plan", "burst", "--json")["key"]
        headers = {"Authorization": f"Bearer {key}"}

        async def one_connection(n: int) -> list[int]:
            # A client of its own: a connection of its own, which the kernel gives to either worker.
            async with httpx.AsyncClient(base_url=serving.base_url, headers=headers, timeout=30) as client:
                return [(await client.get("/models")).status_code for _ in range(n)]

        return [c for batch in await asyncio.gather(*(one_connection(3) for _ in range(30))) for c in batch]

    codes = await in_one_minute(burst)  # the burst must fall inside one minute window
    assert codes.count(200) == LIMIT, codes
    assert codes.count(429) == 90 - LIMIT, codes
