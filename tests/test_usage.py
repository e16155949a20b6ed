"""The usage ledger and GET /v1/usage: one entry per billable call, exact sums, date ranges,
only the caller's account, the reference's shape, and 400s for bad periods."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from server.store.database import create_engine
from server.store.migrate import upgrade
from server.store.models import LedgerEntry, ProcessRecord, UsageDaily, utcnow
from tests.conftest import MODEL, new_key

SHORT = {"maxTokens": 3}


def client_for(base_url: str, key: CreatedKey) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=120)


async def ledger_of(platform: RunningPlatform, account_id: str) -> list[LedgerEntry]:
    async with platform.runtime.sessions() as session:
        rows = await session.execute(select(LedgerEntry).where(LedgerEntry.account_id == account_id))
        return list(rows.scalars())


def entry(
    key: CreatedKey,
    at: datetime,
    model: str = "model-a",
    *,
    tokens: tuple[int, int] = (10, 5),
    cost: str = "0.001",
    request: int = 1,
) -> LedgerEntry:
    return LedgerEntry(
        account_id=key.account_id,
        key_id=key.id,
        record_id="proc_direct",
        model=model,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost=Decimal(cost),
        counts_as_request=request,
        created_at=at,
    )


async def test_usage_has_the_reference_shape_and_default_period(platform: RunningPlatform, base_url: str) -> None:
    key = await new_key(platform, plan="free")
    async with client_for(base_url, key) as client:
        await client.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})
        r = await client.get("/usage")
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["period", "usage", "limits"]
    # The reference's fields in its order; cachedRequests (response-cache hits) is our addition.
    assert list(body["usage"]) == ["totalRequests", "totalTokens", "totalCost", "requestsByModel", "cachedRequests"]
    # The reference's three limits, then (an addition) the plan's monthly token quota.
    assert list(body["limits"]) == ["requestsPerMinute", "requestsPerHour", "requestsPerDay", "monthlyTokens"]
    assert body["limits"] == {
        "requestsPerMinute": 60,
        "requestsPerHour": 1000,
        "requestsPerDay": 5000,
        "monthlyTokens": 1_000_000,
    }
    today = utcnow().date()
    assert body["period"] == {
        "start": f"{today.replace(day=1).isoformat()}T00:00:00Z",
        "end": f"{today.isoformat()}T23:59:59Z",
    }
    usage = body["usage"]
    assert usage["totalRequests"] == 1
    assert isinstance(usage["totalTokens"], int) and usage["totalTokens"] > 0
    assert isinstance(usage["totalCost"], float) and usage["totalCost"] > 0
    assert usage["requestsByModel"] == {MODEL: 1}


async def test_every_billable_call_writes_one_ledger_entry_and_usage_sums_them_exactly(
    platform: RunningPlatform, base_url: str
) -> None:
    key = await new_key(platform)
    async with client_for(base_url, key) as client:
        process = (await client.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})).json()
        batch = (await client.post("/batch", json={"inputs": ["a", "b", "c"], "model": MODEL, "options": SHORT})).json()
        async with client.stream("POST", "/stream", json={"input": "Yo", "model": MODEL, "options": SHORT}) as s:
            raw = b"".join([c async for c in s.aiter_raw()])
        stream_id = re.search(rb'"id":\s*"(proc_[0-9a-f]{16})"', raw)
        assert stream_id is not None
        usage = (await client.get("/usage")).json()["usage"]

    entries = await ledger_of(platform, key.account_id)
    async with platform.runtime.sessions() as session:
        batch_ids = set(
            (await session.execute(select(ProcessRecord.id).where(ProcessRecord.batch_id == batch["id"]))).scalars()
        )
    by_record: dict[str, list[LedgerEntry]] = {}
    for e in entries:
        by_record.setdefault(e.record_id, []).append(e)
    expected_records = {process["id"], stream_id.group(1).decode(), *batch_ids}
    assert set(by_record) == expected_records and len(batch_ids) == 3
    assert all(len(v) == 1 for v in by_record.values())  # exactly one entry per billable call
    assert sum(e.counts_as_request for e in entries) == 3  # process, batch (once), stream

    spec = platform.runtime.catalogue.specs[MODEL]
    exact_cost = sum(
        ((e.prompt_tokens * spec.input_price + e.completion_tokens * spec.output_price) / 1000 for e in entries),
        Decimal(0),
    )
    assert sum((e.cost for e in entries), Decimal(0)) == exact_cost
    assert usage == {
        "totalRequests": 3,
        "totalTokens": sum(e.prompt_tokens + e.completion_tokens for e in entries),
        "totalCost": float(exact_cost),
        "requestsByModel": {MODEL: 3},
        "cachedRequests": 0,
    }
    assert usage["totalTokens"] == (
        process["usage"]["totalTokens"]
        + batch["totalUsage"]["totalTokens"]
        + sum(e.prompt_tokens + e.completion_tokens for e in by_record[stream_id.group(1).decode()])
    )


async def test_batch_whose_first_input_is_invalid_still_counts_one_request(
    platform: RunningPlatform, base_url: str
) -> None:
    key = await new_key(platform)
    async with client_for(base_url, key) as client:
        r = await client.post("/batch", json={"inputs": ["", "Hi", "Yo"], "model": MODEL, "options": SHORT})
        assert r.status_code == 200
        assert r.json()["results"][0]["error"]["code"] == "invalid_parameters"
        usage = (await client.get("/usage")).json()["usage"]
    entries = await ledger_of(platform, key.account_id)
    assert len(entries) == 2  # the empty input never reached the model: not billed
    assert usage["totalRequests"] == 1
    assert usage["totalTokens"] == r.json()["totalUsage"]["totalTokens"]


async def test_cancelled_stream_is_billed_for_the_tokens_produced(platform: RunningPlatform, base_url: str) -> None:
    key = await new_key(platform)
    body = {"input": "Tell me a long story about a lighthouse.", "model": MODEL, "options": {"maxTokens": 400}}
    async with client_for(base_url, key) as client:
        async with client.stream("POST", "/stream", json=body) as response:
            async for chunk in response.aiter_raw():
                if b"partial" in chunk:
                    break  # the client goes away after the first chunk
        deadline = time.monotonic() + 30
        entries: list[LedgerEntry] = []
        while time.monotonic() < deadline and not entries:
            entries = await ledger_of(platform, key.account_id)
            await asyncio.sleep(0.05)
        usage = (await client.get("/usage")).json()["usage"]
    (billed,) = entries
    async with platform.runtime.sessions() as session:
        record = await session.get(ProcessRecord, billed.record_id)
    assert record is not None and record.status == "cancelled"
    assert 0 < billed.completion_tokens == record.completion_tokens < 400
    assert usage["totalTokens"] == billed.prompt_tokens + billed.completion_tokens
    assert usage["totalRequests"] == 1


async def test_cost_sums_exactly(platform: RunningPlatform, base_url: str) -> None:
    """10,000 entries of $0.00003 cost exactly $0.3 (float addition would drift)."""
    key = await new_key(platform)
    at = datetime(2025, 6, 15, 12, tzinfo=UTC)
    await platform.runtime.writer.write(*[entry(key, at, cost="0.00003", tokens=(1, 0)) for _ in range(10_000)])
    assert sum([0.00003] * 10_000) != 0.3  # what the test guards against
    async with client_for(base_url, key) as client:
        usage = (await client.get("/usage", params={"start_date": "2025-06-01", "end_date": "2025-06-30"})).json()
    assert usage["usage"]["totalCost"] == 0.3
    assert usage["usage"]["totalRequests"] == 10_000
    async with platform.runtime.sessions() as session:
        ledger_units = (
            await session.execute(
                select(func.sum(LedgerEntry.cost_units)).where(LedgerEntry.account_id == key.account_id)
            )
        ).scalar_one()
        daily_units = (
            await session.execute(select(UsageDaily.cost_units).where(UsageDaily.account_id == key.account_id))
        ).scalar_one()
    assert int(ledger_units) == int(daily_units) == 3 * 10**9  # 0.3 USD in 10^-10 USD units


async def test_date_ranges_per_model_and_only_the_callers_account(platform: RunningPlatform, base_url: str) -> None:
    key, other = await new_key(platform), await new_key(platform)
    day = datetime(2025, 2, 1, tzinfo=UTC)
    rows = [
        entry(key, day - timedelta(microseconds=1), "model-a"),  # 2025-01-31 23:59:59.999999
        entry(key, day, "model-a"),  # 2025-02-01 00:00:00
        entry(key, day + timedelta(days=14, hours=13), "model-b", tokens=(100, 50), cost="0.0123456789"),
        entry(key, day + timedelta(days=14, hours=14), "model-b", tokens=(7, 0), cost="0", request=0),
        entry(key, datetime(2025, 3, 1, tzinfo=UTC) - timedelta(microseconds=1), "model-a"),  # Feb 28, last µs
        entry(key, datetime(2025, 3, 1, tzinfo=UTC), "model-b"),
        # Another account, same days and models: never counted for `key`.
        *[entry(other, day + timedelta(days=d), m, tokens=(1000, 1000), cost="5") for d in range(28) for m in "ab"],
    ]
    await platform.runtime.writer.write(*rows)

    async def usage(start: str | None, end: str | None) -> dict[str, Any]:
        params = {k: v for k, v in (("start_date", start), ("end_date", end)) if v}
        async with client_for(base_url, key) as client:
            r = await client.get("/usage", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    feb = await usage("2025-02-01", "2025-02-28")
    assert feb["period"] == {"start": "2025-02-01T00:00:00Z", "end": "2025-02-28T23:59:59Z"}
    assert feb["usage"] == {
        "totalRequests": 3,  # the request=0 entry adds tokens only (a batch's later item)
        "totalTokens": 15 + 150 + 7 + 15,
        "totalCost": float(Decimal("0.001") + Decimal("0.0123456789") + Decimal("0.001")),
        "requestsByModel": {"model-a": 2, "model-b": 1},
        "cachedRequests": 0,
    }
    jan31 = await usage("2025-01-31", "2025-01-31")
    assert jan31["usage"] == {
        "totalRequests": 1,
        "totalTokens": 15,
        "totalCost": 0.001,
        "requestsByModel": {"model-a": 1},
        "cachedRequests": 0,
    }
    assert (await usage("2025-02-15", "2025-02-15"))["usage"]["requestsByModel"] == {"model-b": 1}
    whole = await usage("2025-01-01", "2025-03-31")
    assert whole["usage"]["totalRequests"] == 5
    assert whole["usage"]["requestsByModel"] == {"model-a": 3, "model-b": 2}
    # end_date alone: from the first of that month.
    assert (await usage(None, "2025-03-05"))["period"]["start"] == "2025-03-01T00:00:00Z"
    empty = await usage("2024-01-01", "2024-01-31")
    assert empty["usage"] == {
        "totalRequests": 0,
        "totalTokens": 0,
        "totalCost": 0.0,
        "requestsByModel": {},
        "cachedRequests": 0,
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start_date": "2024-02-30"}, "start_date"),
        ({"start_date": "2024-1-01"}, "start_date"),
        ({"start_date": "20240101"}, "start_date"),
        ({"end_date": "tomorrow"}, "end_date"),
        ({"end_date": "2024-01-01T00:00:00Z"}, "end_date"),
        ({"start_date": "2024-03-02", "end_date": "2024-03-01"}, "end_date"),
        ({"start_date": "2023-01-01", "end_date": "2024-12-31"}, "end_date"),
        ({"start_date": "2000-01-01"}, "end_date"),  # to today: far longer than a year
    ],
)
async def test_bad_periods_are_400(http: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    r = await http.get("/usage", params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["details"]["field"] == field


async def test_a_full_year_is_allowed(http: httpx.AsyncClient) -> None:
    r = await http.get("/usage", params={"start_date": "2024-01-01", "end_date": "2024-12-31"})
    assert r.status_code == 200


@pytest.mark.sqlite_only
async def test_migration_converts_costs_and_backfills_daily_rollups(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(engine, "39fd9c5cf763")  # the schema before integer costs and roll-ups
        async with engine.begin() as conn:
            for i, (at, cost) in enumerate(
                [
                    ("2025-05-01 10:00:00.000000", "0.00003"),
                    ("2025-05-01 23:59:59.999999", "0.1234567891"),
                    ("2025-05-02 00:00:00.000000", "2"),
                ]
            ):
                await conn.execute(
                    text(
                        "INSERT INTO usage_ledger (account_id, key_id, record_id, model, prompt_tokens, "
                        "completion_tokens, cost, counts_as_request, created_at) "
                        "VALUES ('acct_1', 'key_1', :rid, 'm', 3, 4, :cost, 1, :at)"
                    ),
                    {"rid": f"proc_{i}", "cost": cost, "at": at},
                )
        await upgrade(engine)
        async with engine.connect() as conn:
            units = (await conn.execute(text("SELECT cost_units FROM usage_ledger ORDER BY id"))).scalars().all()
            daily = (
                await conn.execute(
                    text("SELECT day, requests, prompt_tokens, cost_units FROM usage_daily ORDER BY day")
                )
            ).all()
        assert list(units) == [300_000, 1_234_567_891, 20_000_000_000]
        assert [tuple(r) for r in daily] == [
            ("2025-05-01", 2, 6, 1_234_867_891),
            ("2025-05-02", 1, 3, 20_000_000_000),
        ]
    finally:
        await engine.dispose()


async def test_daily_rollup_matches_the_ledger(platform: RunningPlatform) -> None:
    """Across everything the suite wrote so far: usage_daily is exactly the ledger, grouped."""
    async with platform.runtime.sessions() as session:
        ledger = {
            (a, m): (int(r), int(t), int(c))
            for a, m, r, t, c in (
                await session.execute(
                    select(
                        LedgerEntry.account_id,
                        LedgerEntry.model,
                        func.sum(LedgerEntry.counts_as_request),
                        func.sum(LedgerEntry.prompt_tokens + LedgerEntry.completion_tokens),
                        func.sum(LedgerEntry.cost_units),
                    ).group_by(LedgerEntry.account_id, LedgerEntry.model)
                )
            ).all()
        }
        daily = {
            (a, m): (int(r), int(t), int(c))
            for a, m, r, t, c in (
                await session.execute(
                    select(
                        UsageDaily.account_id,
                        UsageDaily.model,
                        func.sum(UsageDaily.requests),
                        func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens),
                        func.sum(UsageDaily.cost_units),
                    ).group_by(UsageDaily.account_id, UsageDaily.model)
                )
            ).all()
        }
    assert ledger and ledger == daily


def test_cost_units_match_the_exact_decimal_cost() -> None:
    """The integer fast path gives exactly what the Decimal path gives, whatever the prices."""
    import random
    from types import SimpleNamespace

    from server.services.generation import cost_of, cost_units_of
    from server.store.models import usd_to_units

    prices = ["0", "0.01", "0.03", "0.0000001", "0.00000015", "1.5", "0.123456789", "2", "0.0005"]
    rng = random.Random(7)
    for i in prices:
        for o in prices:
            spec: Any = SimpleNamespace(input_price=Decimal(i), output_price=Decimal(o))
            for _ in range(50):
                p, c = rng.randint(0, 10**6), rng.randint(0, 10**6)
                assert cost_units_of(spec, p, c) == usd_to_units(cost_of(spec, p, c)), (i, o, p, c)
