"""Helpers for the limits, quota and permission tests: plans, platforms with custom plans, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
import httpx
from google.rpc import error_details_pb2
from sqlalchemy import func, select

from gateway.app import RunningPlatform, start_platform
from server.config import Plan
from server.limiter.policy import account_subject
from server.options import PROMPT_OVERHEAD_TOKENS
from server.store.models import LedgerEntry
from tests.conftest import MODEL, rich_status

T = TypeVar("T")

# A cheap generating call and the tokens the quota reserves for it (an upper bound on its usage).
CHEAP = {"input": "Hi", "model": MODEL, "options": {"maxTokens": 4}}
CHEAP_RESERVATION = len("Hi") + PROMPT_OVERHEAD_TOKENS + 4


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def md(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def plan(
    name: str,
    *,
    rpm: int = 1_000_000,
    rph: int = 10_000_000,
    rpd: int = 100_000_000,
    concurrent: int = 100,
    monthly_tokens: int = 0,
) -> Plan:
    return Plan(name, rpm, rph, rpd, concurrent, monthly_tokens)


@asynccontextmanager
async def platform_with(base: RunningPlatform, *plans: Plan, **overrides: Any) -> AsyncIterator[RunningPlatform]:
    """A second platform on the same store as ``base`` (so ``base``'s database set-up applies),
    with extra plans and its own limiter."""
    settings = base.runtime.settings
    running = await start_platform(
        dataclasses.replace(
            settings,
            http_port=0,
            grpc_port=0,
            plans={**settings.plans, **{p.name: p for p in plans}},
            **overrides,
        ),
        migrate=False,
    )
    try:
        yield running
    finally:
        await running.stop(grace=1)


# Idle connections are dropped well before uvicorn's 5 s keep-alive timeout: reusing one the
# server is closing at that very moment fails with ReadError, which a loaded machine makes likely.
KEEPALIVE_EXPIRY = 1.0


def http_client(running: RunningPlatform, connections: int = 256) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{running.http_port}/v1",
        timeout=120,
        limits=httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_EXPIRY
        ),
    )


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Poll ``check`` until it holds (releases happen just after a client has gone)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def fresh_minute(*platforms: RunningPlatform) -> Callable[[], float]:
    """Fixed windows are aligned to the clock: make sure a burst fits in one minute.

    The platforms' (in this process) limiters' clocks are moved to the start of the next minute (at
    most 60 s ahead of the wall clock, then running with it): no waiting. Returns the clock the
    windows now follow, for the test's own arithmetic on resets and retry-after. (Servers in other
    processes: ``in_one_minute``.)"""
    real = time.time()
    offset = (int(real) // 60 + 1) * 60 - real + 0.001

    def clock() -> float:
        return time.time() + offset

    for running in platforms:
        running.runtime.limiter.clock = clock
    return clock


async def in_one_minute(burst: Callable[[], Awaitable[T]]) -> T:
    """``burst()``'s result, from a run that fell inside one fixed minute window of the wall clock,
    for servers in other processes (whose clocks a test cannot move). A run that crossed a minute
    boundary is thrown away and ``burst`` runs again at once (it then starts just after the boundary):
    no waiting. ``burst`` must use a fresh subject (e.g. create its own key) on every run."""
    while True:
        window = time.time() // 60
        result = await burst()
        if time.time() // 60 == window:
            return result


async def in_flight(running: RunningPlatform, account_id: str) -> int:
    return await running.runtime.limiter.in_flight(account_subject(account_id))


async def no_slots_held(running: RunningPlatform, account_id: str) -> None:
    async def check() -> bool:
        return await in_flight(running, account_id) == 0

    await wait_until(check, f"the concurrency slots of {account_id} to be released")


def error_info(err: grpc.aio.AioRpcError) -> tuple[str, int | None]:
    """(ErrorInfo.reason, RetryInfo seconds or None) of a rich gRPC status."""
    status = rich_status(err)
    assert status is not None, err
    reason, retry = "", None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
        retry_info = error_details_pb2.RetryInfo()
        if detail.Unpack(retry_info):
            retry = retry_info.retry_delay.seconds
    return reason, retry


def metadata_dict(metadata: Any) -> dict[str, str]:
    return {k: v for k, v in (metadata or ()) if isinstance(v, str)}


async def ledger_tokens(running: RunningPlatform, account_id: str) -> int:
    async with running.runtime.sessions() as session:
        total = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.prompt_tokens + LedgerEntry.completion_tokens), 0)).where(
                LedgerEntry.account_id == account_id
            )
        )
    return int(total or 0)


async def cancel_at_a_stage(
    stub: Any, meta: tuple[tuple[str, str], ...], stream_req: Any, unary_req: Any, i: int
) -> None:
    """Call number ``i`` of a burst, ended by its client at one of five stages (``i % 5``): at once,
    while admitted and waiting for the model, mid-stream, a unary call while queued or running,
    and by a short deadline. gRPC errors of the cancelled call are expected and ignored."""
    kind = i % 5
    if kind == 0:  # cancelled at once
        stub.Stream(stream_req, metadata=meta).cancel()
    elif kind == 1:  # cancelled while admitted and waiting for the model, before reading
        call = stub.Stream(stream_req, metadata=meta)
        await asyncio.sleep(0.003 * (i % 11))
        call.cancel()
    elif kind == 2:  # mid-stream
        call = stub.Stream(stream_req, metadata=meta)
        try:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call.read()
        finally:
            call.cancel()
    elif kind == 3:  # unary, cancelled while queued or running
        call = stub.Process(unary_req, metadata=meta)
        await asyncio.sleep(0.005 * (i % 7))
        call.cancel()
    else:  # deadline
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.Process(unary_req, metadata=meta, timeout=0.01 * (1 + i % 5))
