"""GET /v1/usage at 1,000,000 ledger rows across 1,000 accounts: daily roll-ups vs the ledger index.

For each store (a separate SQLite file, and the PostgreSQL database named by --pg-url), the script
builds the schema with the real migrations, bulk-inserts the ledger rows and their ``usage_daily``
roll-ups directly (the sums the write path would have made), checks the two agree, then times:

- the SQL of both designs for a 31-day period: the roll-up query GetUsage runs, and the same totals
  straight from ``usage_ledger`` through its (account_id, created_at) index;
- GET /v1/usage end to end (REST → bridge → gRPC → UsageService → store) on a real platform;
- the write path: ledger entries per second through the RecordWriter with and without the roll-up hook.

Accounts: one heavy account with 100,000 entries inside the queried 31 days (the worst case for the
index: every row is read), and 999 accounts sharing the other 900,000 over a year (~75 rows each in
any 31 days). Loopback only; bounded.

    python -m bench.usage_bench [--rows 1000000] [--pg-url URL | --no-pg] [--out bench/USAGE_RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.harness import store_bench_main
from gateway.app import start_platform
from server.config import load_settings
from server.keys import create_key
from server.store.database import create_engine, session_factory
from server.store.migrate import upgrade
from server.store.models import Base, LedgerEntry, UsageDaily
from server.store.usage_rollup import daily_totals, roll_up_usage
from server.store.writer import RecordWriter

MODELS = ("smollm2-135m-instruct", "model-b", "model-c")
HEAVY = "acct_bench_heavy"
TYPICAL = "acct_bench_0001"


def log(message: str) -> None:
    print(f"[usage-bench] {message}", flush=True)


@dataclasses.dataclass
class Row:
    account_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_units: int
    counts_as_request: int
    created_at: datetime


def generate(rows: int, accounts: int, today: date, seed: int = 7) -> list[Row]:
    rng = random.Random(seed)
    heavy = rows // 10
    end = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    out: list[Row] = []
    for i in range(rows):
        if i < heavy:
            account = HEAVY
            at = end - timedelta(seconds=rng.uniform(1, 31 * 86400 - 1))
        else:
            account = f"acct_bench_{1 + i % (accounts - 1):04d}"
            at = end - timedelta(seconds=rng.uniform(1, 365 * 86400))
        p, c = rng.randint(5, 500), rng.randint(0, 300)
        # The default model's prices: $0.0001 / $0.0002 per 1K tokens = 1,000 / 2,000 units a token.
        out.append(Row(account, MODELS[i % 3], p, c, p * 1000 + c * 2000, 0 if i % 5 == 4 else 1, at))
    return out


def rollups(rows: list[Row]) -> list[dict[str, Any]]:
    # The write path's own aggregation (Row has the LedgerEntry attributes it reads).
    return daily_totals(rows)  # type: ignore[arg-type]


async def reset(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    await upgrade(engine)
    await engine.dispose()


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def bulk_insert(url: str, rows: list[Row], daily: list[dict[str, Any]], accounts: list[str]) -> None:
    now = datetime.now(UTC)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(
                "INSERT INTO accounts (id, name, plan, created_at) VALUES (?, '', 'enterprise', ?)",
                [(a, _sqlite_time(now)) for a in accounts],
            )
            conn.executemany(
                "INSERT INTO usage_ledger (account_id, key_id, record_id, model, prompt_tokens, completion_tokens, "
                "cost_units, counts_as_request, created_at) VALUES (?, 'key_bench', 'proc_bench', ?, ?, ?, ?, ?, ?)",
                (
                    (
                        r.account_id,
                        r.model,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.cost_units,
                        r.counts_as_request,
                        _sqlite_time(r.created_at),
                    )
                    for r in rows
                ),
            )
            conn.executemany(
                "INSERT INTO usage_daily (account_id, day, model, requests, prompt_tokens, completion_tokens, "
                "cost_units) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d["account_id"],
                        d["day"].isoformat(),
                        d["model"],
                        d["requests"],
                        d["prompt_tokens"],
                        d["completion_tokens"],
                        d["cost_units"],
                    )
                    for d in daily
                ],
            )
        conn.execute("ANALYZE")
        conn.close()
        return
    import asyncpg

    pg = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await pg.copy_records_to_table(
            "accounts",
            records=[(a, "", "enterprise", now) for a in accounts],
            columns=["id", "name", "plan", "created_at"],
        )
        await pg.copy_records_to_table(
            "usage_ledger",
            records=[
                (
                    r.account_id,
                    "key_bench",
                    "proc_bench",
                    r.model,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cost_units,
                    r.counts_as_request,
                    r.created_at,
                )
                for r in rows
            ],
            columns=[
                "account_id",
                "key_id",
                "record_id",
                "model",
                "prompt_tokens",
                "completion_tokens",
                "cost_units",
                "counts_as_request",
                "created_at",
            ],
        )
        await pg.copy_records_to_table(
            "usage_daily",
            records=[
                (
                    d["account_id"],
                    d["day"],
                    d["model"],
                    d["requests"],
                    d["prompt_tokens"],
                    d["completion_tokens"],
                    d["cost_units"],
                )
                for d in daily
            ],
            columns=["account_id", "day", "model", "requests", "prompt_tokens", "completion_tokens", "cost_units"],
        )
        await pg.execute("ANALYZE")
    finally:
        await pg.close()


def rollup_query(account: str, first: date, last: date) -> Any:
    return (
        select(
            UsageDaily.model,
            func.sum(UsageDaily.requests),
            func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens),
            func.sum(UsageDaily.cost_units),
        )
        .where(UsageDaily.account_id == account, UsageDaily.day >= first, UsageDaily.day <= last)
        .group_by(UsageDaily.model)
    )


def ledger_query(account: str, first: date, last: date) -> Any:
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return (
        select(
            LedgerEntry.model,
            func.sum(LedgerEntry.counts_as_request),
            func.sum(LedgerEntry.prompt_tokens + LedgerEntry.completion_tokens),
            func.sum(LedgerEntry.cost_units),
        )
        .where(LedgerEntry.account_id == account, LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .group_by(LedgerEntry.model)
    )


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """Median and p95 milliseconds over ``repeat`` runs after two warm-ups."""
    for _ in range(2):
        await fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


async def writer_throughput(url: str, entries: int, with_rollup: bool) -> float:
    """Ledger entries per second through the group-commit writer (concurrent writers, like requests)."""
    engine = create_engine(url)
    writer = RecordWriter(session_factory(engine))
    if with_rollup:
        writer.add_hook(roll_up_usage)
    writer.start()
    now = datetime.now(UTC)

    def one(i: int) -> LedgerEntry:
        return LedgerEntry(
            account_id=f"acct_bench_{1 + i % 999:04d}",
            key_id="key_bench",
            record_id="proc_w",
            model=MODELS[i % 3],
            prompt_tokens=20,
            completion_tokens=10,
            cost_units=40_000,
            counts_as_request=1,
            created_at=now,
        )

    t0 = time.perf_counter()
    sem = asyncio.Semaphore(256)

    async def write(i: int) -> None:
        async with sem:
            await writer.write(one(i))

    await asyncio.gather(*(write(i) for i in range(entries)))
    elapsed = time.perf_counter() - t0
    await writer.close()
    await engine.dispose()
    return entries / elapsed


async def bench_store(name: str, url: str, rows: list[Row], daily: list[dict[str, Any]], repeat: int) -> list[str]:
    log(f"{name}: resetting schema ({url.split('@')[-1]})")
    await reset(url)
    accounts = sorted({r.account_id for r in rows})
    t0 = time.perf_counter()
    await bulk_insert(url, rows, daily, accounts)
    log(
        f"{name}: inserted {len(rows):,} ledger rows and {len(daily):,} roll-up rows in {time.perf_counter() - t0:.0f}s"
    )

    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=30), today
    engine = create_engine(url)
    sessions = session_factory(engine)
    lines = [
        f"### {name}",
        "",
        f"{len(rows):,} ledger rows, {len(daily):,} usage_daily rows, {len(accounts):,} accounts.",
        "",
    ]
    try:
        async with sessions() as session:
            for account in (HEAVY, TYPICAL):
                a = sorted(
                    tuple(int(x) for x in r[1:])
                    for r in (await session.execute(rollup_query(account, first, last))).all()
                )
                b = sorted(
                    tuple(int(x) for x in r[1:])
                    for r in (await session.execute(ledger_query(account, first, last))).all()
                )
                assert a == b, f"roll-ups disagree with the ledger for {account}: {a} != {b}"
            heavy_rows = (
                await session.execute(
                    select(func.count()).where(
                        LedgerEntry.account_id == HEAVY,
                        LedgerEntry.created_at >= datetime.combine(first, datetime.min.time(), tzinfo=UTC),
                    )
                )
            ).scalar_one()
            typical_rows = (
                await session.execute(
                    select(func.count()).where(
                        LedgerEntry.account_id == TYPICAL,
                        LedgerEntry.created_at >= datetime.combine(first, datetime.min.time(), tzinfo=UTC),
                    )
                )
            ).scalar_one()
        lines += [
            "SQL for a 31-day period (median / p95 ms; one connection, warm cache):",
            "",
            "| account | ledger rows in period | usage_daily (chosen) | usage_ledger index |",
            "|---|---:|---:|---:|",
        ]
        for account, count in ((HEAVY, heavy_rows), (TYPICAL, typical_rows)):
            results = []
            for query in (rollup_query, ledger_query):
                stmt = query(account, first, last)

                async def run(stmt: Any = stmt) -> None:
                    async with sessions() as session:
                        (await session.execute(stmt)).all()

                results.append(await timed(run, repeat))
            lines.append(
                f"| {account} | {count:,} | {results[0][0]:.2f} / {results[0][1]:.2f} | "
                f"{results[1][0]:.2f} / {results[1][1]:.2f} |"
            )
    finally:
        await engine.dispose()

    settings = dataclasses.replace(
        load_settings(env={}), database_url=url, http_port=0, grpc_port=0, http_host="127.0.0.1", grpc_host="127.0.0.1"
    )
    platform = await start_platform(settings)
    try:
        lines += [
            "",
            "GET /v1/usage?start_date=…&end_date=… (31 days), end to end over REST (median / p95 ms):",
            "",
            "| account | latency | totalRequests |",
            "|---|---:|---:|",
        ]
        base = f"http://127.0.0.1:{platform.http_port}/v1"
        params = {"start_date": first.isoformat(), "end_date": last.isoformat()}
        for account in (HEAVY, TYPICAL):
            key = await create_key(platform.runtime.sessions, plan="enterprise", account_id=account)
            async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key.secret}"}) as client:
                body = (await client.get("/usage", params=params)).json()

                async def call(client: httpx.AsyncClient = client) -> None:
                    r = await client.get("/usage", params=params)
                    assert r.status_code == 200

                median, p95 = await timed(call, repeat)
            lines.append(f"| {account} | {median:.2f} / {p95:.2f} | {body['usage']['totalRequests']:,} |")
    finally:
        await platform.stop(grace=1)

    lines += ["", "Write path (ledger entries/s through the group-commit RecordWriter, 256 concurrent writers):", ""]
    without = await writer_throughput(url, 20_000, with_rollup=False)
    with_hook = await writer_throughput(url, 20_000, with_rollup=True)
    lines += [
        f"- without roll-up: {without:,.0f}/s; with the usage_daily upsert in the same transaction: {with_hook:,.0f}/s",
        "",
    ]
    return lines


async def run(args: argparse.Namespace, sqlite_path: Path) -> str:
    today = datetime.now(UTC).date()
    t0 = time.perf_counter()
    rows = generate(args.rows, args.accounts, today)
    daily = rollups(rows)
    log(f"generated {len(rows):,} rows in {time.perf_counter() - t0:.0f}s")
    lines = await bench_store("SQLite", f"sqlite+aiosqlite:///{sqlite_path}", rows, daily, args.repeat)
    if not args.no_pg:
        lines += await bench_store("PostgreSQL", args.pg_url, rows, daily, args.repeat)
    return "\n".join(lines)


def main() -> None:
    store_bench_main(__doc__ or "", run, repeat=50, name="usage")


if __name__ == "__main__":
    main()
