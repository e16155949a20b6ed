"""Webhook dispatch throughput: signed deliveries per second from the outbox to a loopback receiver.

N pending deliveries (a ~700-byte processing.completed payload, a whsec_ secret, so every send is
signed twice) are inserted into a fresh store; the real Dispatcher (claim → resolve/check → POST →
record the attempt) drains them into a receiver running in a separate process (uvicorn, answers 200).
The figure is N / time until every row is `delivered`. Loopback only; bounded.

    python -m bench.webhook_bench [--deliveries 5000] [--concurrency 16 64] [--pg-url URL | --no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bench.harness import DEFAULT_PG, ROOT, free_port, wait_port
from server.store.database import create_engine, session_factory
from server.store.migrate import upgrade
from server.store.models import Base, Webhook, WebhookDelivery
from server.webhook_delivery.dispatcher import Dispatcher
from server.webhook_delivery.events import payload
from server.webhook_delivery.settings import WebhookSettings

SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret-bench!").decode()


def log(message: str) -> None:
    print(f"[webhook-bench] {message}", flush=True)


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The receiver: read the body, answer 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.webhook_bench:receiver_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
    )
    try:
        wait_port(port, 10)
    except TimeoutError:
        proc.kill()
        raise RuntimeError("receiver did not start") from None
    return proc


async def fill(url: str, receiver_url: str, count: int) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    await upgrade(engine)
    now = datetime.now(UTC)
    data = {
        "id": "proc_0123456789abcdef",
        "type": "process",
        "status": "completed",
        "model": "smollm2-135m-instruct",
        "output": "The capital of France is Paris. " * 12,
        "usage": {"promptTokens": 31, "completionTokens": 100, "totalTokens": 131},
        "createdAt": "2026-01-01T12:00:00Z",
        "processingTime": 812,
    }
    body = payload("processing.completed", data, now)
    async with session_factory(engine).begin() as session:
        session.add(
            Webhook(
                id="wh_bench",
                account_id="acct_bench",
                url=receiver_url,
                events=["processing.completed"],
                secret=SECRET,
                created_at=now,
            )
        )
        await session.flush()
        rows = [
            {
                "id": f"msg_{i:016x}",
                "webhook_id": "wh_bench",
                "account_id": "acct_bench",
                "event": "processing.completed",
                "payload": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for i in range(count)
        ]
        await session.execute(insert(WebhookDelivery), rows)
    await engine.dispose()


async def drain(url: str, count: int, concurrency: int) -> tuple[float, int]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    config = WebhookSettings.from_table(
        {"allow_private_urls": True, "concurrency": concurrency, "poll_interval": 0.05, "timeout": 10.0, "lease": 30.0}
    )
    dispatcher = Dispatcher(sessions, config)
    t0 = time.perf_counter()
    dispatcher.start()
    delivered = 0
    try:
        for _ in range(6000):  # at most ~10 minutes
            await asyncio.sleep(0.1)
            async with sessions() as session:
                delivered = (
                    await session.execute(select(func.count()).where(WebhookDelivery.status == "delivered"))
                ).scalar_one()
            if delivered >= count:
                break
        elapsed = time.perf_counter() - t0
    finally:
        await dispatcher.close()
        await engine.dispose()
    return elapsed, int(delivered)


async def run(args: argparse.Namespace, sqlite_path: Path, receiver_url: str) -> list[str]:
    lines = [
        f"Webhook dispatch: {args.deliveries:,} signed deliveries from the outbox to a loopback receiver "
        "(separate process), real Dispatcher:",
        "",
        "| store | concurrency | seconds | deliveries/s |",
        "|---|---:|---:|---:|",
    ]
    stores = [("SQLite", f"sqlite+aiosqlite:///{sqlite_path}")]
    if not args.no_pg:
        stores.append(("PostgreSQL", args.pg_url))
    for name, url in stores:
        for concurrency in args.concurrency:
            await fill(url, receiver_url, args.deliveries)
            elapsed, delivered = await drain(url, args.deliveries, concurrency)
            assert delivered == args.deliveries, f"only {delivered} of {args.deliveries} delivered"
            log(f"{name} concurrency {concurrency}: {delivered} in {elapsed:.2f}s")
            lines.append(f"| {name} | {concurrency} | {elapsed:.2f} | {delivered / elapsed:,.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL database to wipe and use")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--out", help="append the figures to this Markdown file")
    args = parser.parse_args()
    port = free_port()
    receiver = start_receiver(port)
    try:
        with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
            lines = asyncio.run(run(args, Path(tmp) / "hooks.db", f"http://127.0.0.1:{port}/hook"))
    finally:
        receiver.terminate()
        receiver.wait(10)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
