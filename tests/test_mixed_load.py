"""A bad day for the store, bounded: a real `plutos serve` (1 and 2 worker processes on one SQLite
file; PostgreSQL under `make test-postgres`) under a mixed load — /process, /stream, /batch,
webhooks created and deleted, deliveries to a real receiver, /usage and /models reads — for a few
seconds. Afterwards: no 5xx was answered (no "database is locked" reached a client), every answered
call has its record and exactly one ledger row, no ledger row lacks its record, and every record of
the account with a webhook was delivered (issue 16 item 1).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from server.store.database import create_engine, session_factory
from server.store.models import LedgerEntry, ProcessRecord, WebhookDelivery
from tests.conftest import MODEL
from tests.serve_support import plutos_json, serving_workers
from tests.webhook_receiver import Receiver

LOAD_SECONDS = 6.0
TINY = {"maxTokens": 1}


@dataclass
class Served:
    base_url: str
    database_url: str
    log: Path
    cfg: Path
    env: dict[str, str]
    answers: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    def diagnostics(self) -> list[tuple[str, str]]:
        return [("plutos serve", self.log.read_text(errors="replace")[-20_000:])]


STORES = ["sqlite-1-worker", "sqlite-2-workers"]
if (os.environ.get("PLUTOS_TEST_DATABASE_URL") or "").startswith("postgresql"):
    STORES = ["postgresql-2-workers"]


@pytest.fixture(params=STORES)
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    workers = 1 if "1-worker" in request.param else 2
    url = os.environ.get("PLUTOS_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'load.db'}"
    if not url.startswith("postgresql"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'load.db'}"
    cfg = tmp_path / "plutos.toml"
    cfg.write_text(
        "[webhooks]\nallow_private_urls = true\nretry_schedule = [0.2, 0.4, 0.8, 1.0, 1.0]\n"
        "timeout = 2.0\nlease = 5.0\npoll_interval = 0.1\n"
    )
    env = {**os.environ, "PLUTOS_DATABASE_URL": url}
    env.pop("PLUTOS_CONFIG", None)
    log = tmp_path / "serve.log"
    async with serving_workers(cfg, env, log, workers) as serving:
        yield Served(serving.base_url, url, log, cfg, env)


async def _loop(until: float, work: Callable[[int], Awaitable[None]]) -> None:
    n = 0
    while time.monotonic() < until:
        await work(n)
        n += 1


async def test_mixed_load_loses_nothing_and_answers_no_5xx(served: Served, receiver: Receiver) -> None:
    key_a = plutos_json(served.cfg, served.env, "keys", "create", "--plan", "enterprise", "--json")
    key_b = plutos_json(served.cfg, served.env, "keys", "create", "--plan", "enterprise", "--json")
    hook_path = receiver.new_path()
    answered: list[str] = []  # record ids of answered /process and /stream calls
    batches: dict[str, int] = {}  # answered batch id -> inputs
    models_latency: list[float] = []

    def seen(r: httpx.Response) -> None:
        served.answers[r.status_code] += 1
        if r.status_code >= 500 or "locked" in r.text:
            served.server_errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")

    def client(key: dict[str, Any]) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=served.base_url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=60
        )

    async with client(key_a) as a, client(key_b) as b:
        r = await a.post(
            "/webhooks",
            json={"url": receiver.url(hook_path), "events": ["processing.completed", "processing.failed"]},
        )
        assert r.status_code == 200, r.text
        until = time.monotonic() + LOAD_SECONDS

        async def process(n: int) -> None:
            r = await a.post("/process", json={"input": f"Say {n}", "model": MODEL, "options": TINY})
            seen(r)
            if r.status_code == 200:
                answered.append(r.json()["id"])

        async def stream(n: int) -> None:
            body = {"input": f"Story {n}", "model": MODEL, "options": TINY}
            async with a.stream("POST", "/stream", json=body) as r:
                text = (await r.aread()).decode()
            served.answers[r.status_code] += 1
            if r.status_code >= 500 or "event: error" in text:
                served.server_errors.append(f"stream: {r.status_code} {text[-300:]}")
            for block in text.split("\n\n"):
                if block.startswith("event: complete"):
                    answered.append(json.loads(block.split("data: ", 1)[1])["id"])

        async def batch(n: int) -> None:
            inputs = [f"Item {n}.{i}" for i in range(3)]
            r = await a.post("/batch", json={"inputs": inputs, "model": MODEL, "options": TINY})
            seen(r)
            if r.status_code == 200:
                batches[r.json()["id"]] = len(inputs)

        async def churn(n: int) -> None:
            r = await b.post("/webhooks", json={"url": receiver.url(f"/churn/{n}"), "events": ["processing.completed"]})
            seen(r)
            if r.status_code == 200:
                seen(await b.delete(f"/webhooks/{r.json()['id']}"))
            seen(await b.get("/webhooks"))

        async def reads(n: int) -> None:
            started = time.monotonic()
            r = await b.get("/models")
            models_latency.append(time.monotonic() - started)
            seen(r)
            seen(await b.get("/usage"))
            await asyncio.sleep(0.05)

        await asyncio.gather(
            *(_loop(until, process) for _ in range(3)),
            _loop(until, stream),
            _loop(until, batch),
            _loop(until, churn),
            _loop(until, reads),
        )

    assert not served.server_errors, served.server_errors
    assert answered and batches, served.answers
    # The store: every answered call's record, one ledger row each; no ledger row without a record.
    engine = create_engine(served.database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as s:
            records = {
                rid: (status, batch_id)
                for rid, status, batch_id in (
                    await s.execute(
                        select(ProcessRecord.id, ProcessRecord.status, ProcessRecord.batch_id).where(
                            ProcessRecord.account_id == key_a["accountId"]
                        )
                    )
                ).all()
            }
            billed = Counter(
                (
                    await s.execute(select(LedgerEntry.record_id).where(LedgerEntry.account_id == key_a["accountId"]))
                ).scalars()
            )
            delivery_count = (
                await s.execute(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.account_id == key_a["accountId"])
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert all(records.get(rid, ("missing",))[0] == "completed" for rid in answered)
    for batch_id, inputs in batches.items():
        assert sum(1 for _, bid in records.values() if bid == batch_id) == inputs
    assert set(billed) == set(records) and set(billed.values()) == {1}, "a record without one ledger row"
    assert delivery_count == len(records)  # one event per record, written with it
    # Every record's event reaches the receiver (at least once; receivers dedupe by webhook-id).
    delivered = await receiver.wait_for(hook_path, len(records), timeout=40)
    assert sorted({d.json()["data"]["id"] for d in delivered.values()}) == sorted(records)
    print(
        f"\n{served.answers} answers, {len(records)} records, max GET /models "
        f"{max(models_latency) * 1000:.0f} ms (not asserted)"
    )
