"""GET /v1/process (request history: newest first, cursor pages, filters) and GET /v1/usage/daily,
over REST and gRPC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from plutos.v1 import processing_pb2, usage_pb2

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from server.store.models import Batch, ProcessRecord, UsageDaily, usd_to_units
from tests.conftest import MODEL, GrpcClients, new_key, seeded_usage_daily
from tests.limits_support import bearer, md

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def seed_records(platform: RunningPlatform, key: CreatedKey, n: int) -> list[str]:
    """``n`` records one second apart (the last is the newest); every 5th failed, every 7th on model "other",
    every 10th an item of one batch."""
    batch_id = f"batch_{key.account_id[-16:]}"
    rows: list[Any] = [
        Batch(id=batch_id, account_id=key.account_id, key_id=key.id, model=MODEL, item_count=n // 10, created_at=T0)
    ]
    rows += [
        ProcessRecord(
            id=f"proc_{key.account_id[-8:]}{i:08x}",
            account_id=key.account_id,
            key_id=key.id,
            kind="batch" if i % 10 == 0 else "process",
            batch_id=batch_id if i % 10 == 0 else None,
            batch_index=0 if i % 10 == 0 else None,
            model="other" if i % 7 == 0 else MODEL,
            input=f"input {i}",
            options={},
            output=f"output {i}",
            prompt_tokens=3,
            completion_tokens=i % 4,
            status="failed" if i % 5 == 0 else "completed",
            error_code="upstream_error" if i % 5 == 0 else None,
            created_at=T0 + timedelta(seconds=i),
            processing_time_ms=10,
        )
        for i in range(n)
    ]
    async with platform.runtime.sessions.begin() as session:
        session.add_all(rows)
    return [r.id for r in rows[1:]]


async def test_pages_through_250_records_newest_first(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    key = await new_key(platform, plan="pro")
    ids = await seed_records(platform, key, 250)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if after:
            params["after"] = after
        r = await anon.get("/process", params=params, headers=bearer(key.secret))
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen.extend(item["id"] for item in body["data"])
        assert body["lastId"] == body["data"][-1]["id"]
        if not body["hasMore"]:
            break
        after = body["lastId"]
    assert pages == 3 and seen == ids[::-1]

    first = (await anon.get("/process", params={"limit": 1}, headers=bearer(key.secret))).json()["data"][0]
    assert first["input"] == "input 249" and first["usage"] == {
        "promptTokens": 3,
        "completionTokens": 1,
        "totalTokens": 4,
    }
    assert first["createdAt"] == "2026-03-01T12:04:09Z" and "batchId" not in first
    batch_item = (await anon.get("/process", params={"limit": 1, "after": ids[241]}, headers=bearer(key.secret))).json()
    assert batch_item["data"][0]["batchId"] == f"batch_{key.account_id[-16:]}"
    assert batch_item["data"][0]["batchIndex"] == 0
    assert batch_item["data"][0]["errorCode"] == "upstream_error"


async def test_filters(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    key = await new_key(platform, plan="pro")
    await seed_records(platform, key, 70)
    h = bearer(key.secret)

    async def count(**params: str) -> int:
        r = await anon.get("/process", params={"limit": 100, **params}, headers=h)
        assert r.status_code == 200, r.text
        return len(r.json()["data"])

    assert await count(status="failed") == 14
    assert await count(model="other") == 10
    assert await count(model="other", status="failed") == 2  # 0, 35
    assert await count(start_date="2026-03-01", end_date="2026-03-01") == 70
    assert await count(start_date="2026-03-02") == 0
    assert await count(endDate="2026-02-28") == 0


async def test_bad_input_and_other_accounts(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    mine, theirs = await new_key(platform, plan="pro"), await new_key(platform, plan="pro")
    their_ids = await seed_records(platform, theirs, 3)
    h = bearer(mine.secret)
    assert (await anon.get("/process", headers=h)).json()["data"] == []
    refused: list[tuple[dict[str, str | int], str]] = [
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"status": "running"}, "status"),
        ({"start_date": "March"}, "start_date"),
        ({"after": their_ids[0]}, "after"),  # another account's id is no cursor
        ({"start_date": "2026-03-02", "end_date": "2026-03-01"}, "end_date"),
    ]
    for params, field in refused:
        r = await anon.get("/process", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"]["details"]["field"] == field
    r = await anon.get("/process", params={"limit": "ten"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_parameters"


async def test_a_real_call_appears_first(http: httpx.AsyncClient, grpc_clients: GrpcClients, auth_md: object) -> None:
    made = await http.post("/process", json={"input": "Hi", "model": MODEL, "options": {"maxTokens": 1}})
    assert made.status_code == 200
    r = await http.get("/process", params={"limit": 1})
    assert r.json()["data"][0]["id"] == made.json()["id"]
    assert r.json()["data"][0]["kind"] == "process" and r.json()["data"][0]["status"] == "completed"
    reply = await grpc_clients.processing.ListProcesses(
        processing_pb2.ListProcessesRequest(limit=1),
        metadata=auth_md,  # type: ignore[arg-type]
    )
    assert reply.data[0].id == made.json()["id"]


async def test_daily_usage_rows_and_exact_cost(
    platform: RunningPlatform, anon: httpx.AsyncClient, grpc_clients: GrpcClients
) -> None:
    key = await new_key(platform, plan="pro")
    rows = [
        (date(2026, 3, 1), MODEL, 2, 10, 5, "0.0000007"),
        (date(2026, 3, 1), "other", 1, 1, 1, "0.1"),
        (date(2026, 3, 3), MODEL, 4, 20, 10, "0.2"),
    ]
    seeded = [
        UsageDaily(
            account_id=key.account_id,
            day=day,
            model=model,
            requests=req,
            prompt_tokens=p,
            completion_tokens=c,
            cost_units=usd_to_units(Decimal(cost)),
        )
        for day, model, req, p, c, cost in rows
    ]
    async with seeded_usage_daily(platform, seeded):
        await check_daily_usage(anon, grpc_clients, key)


async def check_daily_usage(anon: httpx.AsyncClient, grpc_clients: GrpcClients, key: CreatedKey) -> None:
    h = bearer(key.secret)
    r = await anon.get("/usage/daily", params={"start_date": "2026-03-01", "end_date": "2026-03-31"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [
        {"date": "2026-03-01", "model": "other", "requests": 1, "promptTokens": 1, "completionTokens": 1,
         "totalTokens": 2, "cost": 0.1},
        {"date": "2026-03-01", "model": MODEL, "requests": 2, "promptTokens": 10, "completionTokens": 5,
         "totalTokens": 15, "cost": 7e-07},
        {"date": "2026-03-03", "model": MODEL, "requests": 4, "promptTokens": 20, "completionTokens": 10,
         "totalTokens": 30, "cost": 0.2},
    ]  # fmt: skip
    total = await anon.get("/usage", params={"start_date": "2026-03-01", "end_date": "2026-03-31"}, headers=h)
    assert total.json()["usage"]["totalCost"] == 0.3000007
    only = await anon.get("/usage/daily", params={"start_date": "2026-03-01", "model": "other"}, headers=h)
    assert [row["model"] for row in only.json()["data"]] == ["other"]
    bad = await anon.get("/usage/daily", params={"start_date": "2026-13-01"}, headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "start_date"
    reply = await grpc_clients.usage.GetDailyUsage(
        usage_pb2.GetDailyUsageRequest(start_date="2026-03-01", end_date="2026-03-02"), metadata=md(key.secret)
    )
    assert [(d.date, d.model, d.requests) for d in reply.data] == [("2026-03-01", "other", 1), ("2026-03-01", MODEL, 2)]
