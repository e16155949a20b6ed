"""The Redis limiter: exact across replicas, leases that outlive no crash, and Redis going away.

Each test module run starts its own ``redis-server`` on free loopback ports (the binary comes with
``scripts/test-services.sh``), so tests can kill it and never touch a shared Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plutos.v1 import models_pb2, processing_pb2

from gateway.app import RunningPlatform
from server.config import Plan
from server.keys import create_key
from server.limiter import Concurrency, MemoryLimiter, QuotaAsk, Window
from server.limiter.base import Limiter, LimiterUnavailable, Reservation, Slot
from server.limiter.policy import account_subject
from server.limiter.redis_backend import RedisLimiter
from tests.conftest import MODEL, free_port, models_stub, processing_stub
from tests.limits_support import (
    CHEAP,
    CHEAP_RESERVATION,
    KEEPALIVE_EXPIRY,
    bearer,
    cancel_at_a_stage,
    error_info,
    fresh_minute,
    http_client,
    in_one_minute,
    ledger_tokens,
    md,
    plan,
    platform_with,
    wait_until,
)
from tests.redis_support import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

# Greedy decoding (temperature 0): the answer runs the whole 200 tokens every time (checked), so no
# stream of the concurrency test can end early on a sampled end-of-text and free its slot.
SLOW_STREAM = {
    "input": "Write a long story about the sea.",
    "model": MODEL,
    "options": {"maxTokens": 200, "temperature": 0},
}
# A quota one and a half cheap reservations large: a burst admits two calls at most (0 and 70 reserved
# are below it, 140 is not), and whatever the timing it is used up after three or four real model
# calls (each uses ~35 tokens, at least its prompt's ~31) rather than forty.
QUOTA_PAIR = CHEAP_RESERVATION + CHEAP_RESERVATION // 2


@pytest.fixture(scope="module")
async def redis_platform(platform: RunningPlatform, redis_server: RedisServer) -> AsyncIterator[RunningPlatform]:
    async with platform_with(platform, plan("quota-edge", monthly_tokens=1500), redis_url=redis_server.url) as running:
        assert isinstance(running.runtime.limiter, RedisLimiter)
        yield running


# -- the limiter contract, on both backends -------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Limiter]:
    backend: Limiter = MemoryLimiter() if request.param == "memory" else RedisLimiter(redis_server.url)
    await backend.start()
    yield backend
    await backend.close()


def unique(name: str) -> str:
    return f"{{acct_{name}_{time.time_ns()}}}"


async def test_windows_admit_exactly_the_limit_under_a_burst(limiter: Limiter) -> None:
    rules = [Window(unique("w"), "minute", 60, 60), Window(unique("w"), "hour", 3600, 1000)]
    now = time.time()
    admissions = await asyncio.gather(*(limiter.acquire(rules, [], now=now) for _ in range(200)))
    admitted = [a for a in admissions if a.allowed]
    assert len(admitted) == 60
    assert sorted(a.windows[0].remaining for a in admitted) == list(range(60))
    assert all(a.windows[1].count <= 60 for a in admissions)
    # The next window starts from zero.
    later = await limiter.acquire(rules, [], now=rules[0].start(now) + 60)
    assert later.allowed and later.windows[0].count == 1 and later.windows[1].count in (1, 61)


async def test_concurrency_is_exact_and_release_is_idempotent(limiter: Limiter) -> None:
    subject = unique("c")
    admissions = await asyncio.gather(*(limiter.acquire([], [Concurrency(subject, 5)]) for _ in range(100)))
    slots = [a.slot for a in admissions if a.allowed]
    assert len(slots) == 5 and await limiter.in_flight(subject) == 5
    for slot in slots:
        assert slot is not None
        await limiter.release(slot)
        await limiter.release(slot)
    assert await limiter.in_flight(subject) == 0


async def test_token_reservations_pass_the_quota_by_less_than_one(limiter: Limiter) -> None:
    account = unique("q")

    async def seed(account_id: str, start: object) -> int:
        return 100

    checks = await asyncio.gather(*(limiter.reserve_tokens(account, 70, 1000, seed) for _ in range(50)))
    granted = [c.reservation for c in checks if c.allowed]
    # Admitted while used + reserved < quota: 100 + 12 * 70 = 940 admits a 13th; 1010 admits none.
    assert len(granted) == 13
    assert await limiter.tokens(account) == (100, 70 * len(granted))
    for reservation in granted:
        assert reservation is not None
        await limiter.settle_tokens(reservation, 30)
        await limiter.settle_tokens(reservation, 30)  # idempotent
    assert await limiter.tokens(account) == (100 + 30 * len(granted), 0)


async def test_a_slot_redis_could_not_take_back_is_released_once_it_answers(redis_server: RedisServer) -> None:
    subject = unique("giveback")
    limiter = RedisLimiter(redis_server.url)  # leases of 60 s: a leaked slot would outlive the test
    await limiter.start()
    try:
        admission = await limiter.acquire([], [Concurrency(subject, 5)])
        assert admission.slot is not None
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # Redis stops answering: a call times out
        try:
            with pytest.raises(LimiterUnavailable):
                await limiter.in_flight(subject)
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await limiter.release(admission.slot)  # in the cool-down after the failure: not sent now

        async def given_back() -> bool:
            with contextlib.suppress(LimiterUnavailable):
                return await limiter.in_flight(subject) == 0
            return False

        await wait_until(given_back, "the slot to be released once Redis answers", within=20)
    finally:
        await limiter.close()


# -- differential: the Redis scripts decide exactly as the in-memory limiter ----------------------

# One example: limits, then operations on both backends. ("admit", generating, tokens asked or
# None) | ("finish", which call in flight, tokens it used) | ("tick", seconds the clock moves on).
Op = tuple[str, int, int | None]
ADMIT_OP = st.tuples(st.just("admit"), st.sampled_from([1, 1, 0]), st.one_of(st.none(), st.integers(0, 60)))
OPS = st.lists(
    st.one_of(
        ADMIT_OP,
        ADMIT_OP,
        st.tuples(st.just("finish"), st.integers(0, 7), st.integers(0, 60)),
        st.tuples(st.just("tick"), st.sampled_from([0, 1, 20, 59, 61, 3600]), st.none()),
    ),
    min_size=1,
    max_size=40,
)


@dataclass(frozen=True)
class Rules:
    minute: int
    hour: int
    account_concurrency: int
    key_concurrency: int  # 0: the key has no limit of its own
    quota: int
    seed: int


RULES = st.builds(
    Rules,
    minute=st.integers(1, 12),
    hour=st.integers(1, 20),
    account_concurrency=st.integers(1, 4),
    key_concurrency=st.integers(0, 2),
    quota=st.integers(1, 200),
    seed=st.integers(0, 150),
)


async def play(limiter: Limiter, rules: Rules, ops: list[Op], account: str, start: float) -> list[object]:
    """Run ``ops`` on ``limiter``; everything it answered and its counters after each step."""
    subject, key = f"{{{account}}}", f"{{{account}}}:key:k"
    windows = [Window(subject, "minute", 60, rules.minute), Window(key, "hour", 3600, rules.hour)]
    concurrency = [Concurrency(subject, rules.account_concurrency)]
    if rules.key_concurrency:
        concurrency.append(Concurrency(key, rules.key_concurrency))

    async def seed(account_id: str, month_start: object) -> int:
        return rules.seed

    now = start
    held: list[tuple[Slot | None, Reservation | None]] = []
    seen: list[object] = []
    for op, arg, amount in ops:
        if op == "tick":
            now += arg
            continue
        if op == "finish":
            if held:
                slot, reservation = held.pop(arg % len(held))
                used = min(amount or 0, reservation.amount) if reservation is not None else 0
                await limiter.finish(slot, reservation, used)
        else:
            ask = None if amount is None else QuotaAsk(account, amount, rules.quota, seed)
            entry = await limiter.admit(windows, concurrency if arg else [], ask, now=now)
            a, q = entry.admission, entry.quota
            seen.append(
                (
                    a.allowed,
                    [(w.count, w.reset) for w in a.windows],
                    [n for _, n in a.in_flight],
                    a.slot is not None,
                    None if q is None else (q.allowed, q.used, q.reserved, q.reservation is not None),
                )
            )
            if a.slot is not None or (q is not None and q.reservation is not None):
                held.append((a.slot, q.reservation if q is not None else None))
        seen.append(
            (await limiter.in_flight(subject), await limiter.in_flight(key), await limiter.tokens(account, now=now))
        )
    for slot, reservation in held:
        await limiter.finish(slot, reservation, 0)
    seen.append((await limiter.in_flight(subject), await limiter.in_flight(key)))
    return seen


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "redis-py"])
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(rules=RULES, ops=OPS)
def test_redis_and_memory_limiters_decide_alike(
    redis_server: RedisServer, pipelined: bool, rules: Rules, ops: list[Op]
) -> None:
    """Random limits and calls (some generating, some asking for tokens), calls ending in any order
    and the clock moving across window boundaries: ADMIT and FINISH answer exactly as the
    in-memory limiter's acquire, reserve, settle and release do, call by call."""
    account = f"acct_diff_{time.time_ns()}"
    start = time.time() // 3600 * 3600 + 1800.5  # within the hour (and so the day) of the wall clock

    async def both() -> tuple[list[object], list[object]]:
        # No lease runs out during an example. Not pipelined: the redis-py path (TLS URLs).
        redis = RedisLimiter(redis_server.url, lease=86400.0, pipelined=pipelined)
        try:
            return await play(MemoryLimiter(), rules, ops, account, start), await play(
                redis, rules, ops, account, start
            )
        finally:
            await redis.close()

    memory, redis = asyncio.run(both())
    assert redis == memory


@pytest.mark.parametrize("how", ["finish", "finish_soon"])
async def test_a_call_that_ends_while_redis_is_stopped_is_settled_once_it_answers(
    redis_server: RedisServer, how: str
) -> None:
    account = unique("settle")[1:-1]
    subject = account_subject(account)
    limiter = RedisLimiter(redis_server.url)

    async def seed(account_id: str, start: object) -> int:
        return 100

    try:
        entry = await limiter.admit([], [Concurrency(subject, 1)], QuotaAsk(account, 50, 1000, seed))
        slot, check = entry.admission.slot, entry.quota
        assert slot is not None and check is not None and check.reservation is not None
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # FINISH times out (and may be sent twice)
        try:
            if how == "finish":
                await limiter.finish(slot, check.reservation, 30)
            else:  # what the interceptor uses: sent at once on the pipelined connection
                waiter = limiter.finish_soon(slot, check.reservation, 30)
                assert waiter is not None
                await waiter
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await limiter.finish(slot, check.reservation, 30)  # the same call ended again: no effect

        async def ended() -> bool:
            with contextlib.suppress(LimiterUnavailable):
                return await limiter.in_flight(subject) == 0 and not limiter._ending
            return False

        await wait_until(ended, "the call's end to reach Redis", within=20)
        assert await limiter.tokens(account) == (130, 0)  # settled once, however often it was sent
    finally:
        await limiter.close()


async def test_the_pipelined_connection_selects_the_database_of_the_url(redis_server: RedisServer) -> None:
    subject = unique("db")
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    limiter = RedisLimiter(url)
    try:
        assert limiter._pipe is not None  # ADMIT and FINISH go through it, not through redis-py
        admission = await limiter.acquire([Window(subject, "minute", 60, 5)], [Concurrency(subject, 1)])
        assert admission.allowed and admission.slot is not None
        async with aioredis.Redis.from_url(url) as db3, aioredis.Redis.from_url(redis_server.url) as db0:
            assert await db3.zcard(f"plutos:cc:{subject}") == 1
            assert await db0.exists(f"plutos:cc:{subject}") == 0
        await limiter.release(admission.slot)
        assert await limiter.in_flight(subject) == 0
    finally:
        await limiter.close()


# -- leases: a replica that dies cannot hold slots or reservations forever ------------------------


async def test_slots_and_reservations_of_a_crashed_replica_expire(redis_server: RedisServer) -> None:
    subject, account = unique("crash"), unique("crash")[1:-1]
    crashed = RedisLimiter(redis_server.url, lease=1.0)
    survivor = RedisLimiter(redis_server.url, lease=1.0)

    async def seed(account_id: str, start: object) -> int:
        return 0

    try:
        assert (await crashed.acquire([], [Concurrency(subject, 1)])).allowed
        assert (await crashed.reserve_tokens(account, 1000, 1000, seed)).allowed
        await crashed.close()  # dies without releasing anything
        assert not (await survivor.acquire([], [Concurrency(subject, 1)])).allowed
        assert not (await survivor.reserve_tokens(account, 1000, 1000, seed)).allowed

        async def slot_free() -> bool:
            return (await survivor.acquire([], [Concurrency(subject, 1)])).allowed

        async def quota_free() -> bool:
            return (await survivor.reserve_tokens(account, 1000, 1000, seed)).allowed

        await wait_until(slot_free, "the crashed replica's slot to expire", within=10)
        await wait_until(quota_free, "the crashed replica's reservation to expire", within=10)
    finally:
        await survivor.close()


async def test_leases_of_long_calls_are_renewed(redis_server: RedisServer) -> None:
    subject = unique("long")
    limiter = RedisLimiter(redis_server.url, lease=1.0)
    await limiter.start()
    try:
        admission = await limiter.acquire([], [Concurrency(subject, 1)])
        assert admission.slot is not None
        await asyncio.sleep(3.0)  # three leases long: renewal keeps the slot
        assert await limiter.in_flight(subject) == 1
        assert not (await limiter.acquire([], [Concurrency(subject, 1)])).allowed
        await limiter.release(admission.slot)
        assert await limiter.in_flight(subject) == 0
    finally:
        await limiter.close()


# -- one process on Redis, end to end --------------------------------------------------------------


async def test_exactly_60_of_200_over_rest_with_redis(redis_platform: RunningPlatform) -> None:
    key = await create_key(redis_platform.runtime.sessions, plan="free")
    await fresh_minute(redis_platform)
    async with http_client(redis_platform) as client:
        replies = await asyncio.gather(*(client.get("/models", headers=bearer(key.secret)) for _ in range(200)))
    ok = [r for r in replies if r.status_code == 200]
    assert len(ok) == 60 and sum(r.status_code == 429 for r in replies) == 140
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in ok) == list(range(60))


async def test_cancelled_calls_leave_no_slot_or_reservation_in_redis(
    platform: RunningPlatform, redis_server: RedisServer
) -> None:
    """Calls cancelled at every stage (at once, while admitted and waiting for the model, mid-stream,
    by deadline) end exactly once in Redis: no slot is left, nothing stays reserved, and the month's
    counter holds exactly what the ledger billed (streams cut off mid-way are billed what they used)."""
    burst = plan("burst-quota", concurrent=5, monthly_tokens=10**9)
    async with platform_with(platform, burst, redis_url=redis_server.url) as running:
        key = await create_key(running.runtime.sessions, plan="burst-quota")
        limiter = running.runtime.limiter
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        try:
            stub = processing_stub(channel)
            meta = md(key.secret)
            opts = processing_pb2.ProcessOptions(max_tokens=50)
            stream_req = processing_pb2.StreamRequest(input="Tell a story.", model=MODEL, options=opts)
            unary_req = processing_pb2.ProcessRequest(input="Tell a story.", model=MODEL, options=opts)

            for wave in range(8):
                await asyncio.gather(
                    *(cancel_at_a_stage(stub, meta, stream_req, unary_req, wave * 10 + j) for j in range(10))
                )

            async def settled() -> bool:
                tokens = await limiter.tokens(key.account_id)
                return (
                    await limiter.in_flight(account_subject(key.account_id)) == 0
                    and tokens is not None
                    and tokens == (await ledger_tokens(running, key.account_id), 0)
                )

            await wait_until(settled, "every cancelled call to end once in Redis")
        finally:
            await channel.close(None)


async def test_quota_counter_is_reseeded_from_the_ledger_when_redis_loses_it(
    redis_platform: RunningPlatform, redis_server: RedisServer
) -> None:
    key = await create_key(redis_platform.runtime.sessions, plan="quota-edge")
    async with http_client(redis_platform) as client:
        assert (await client.post("/process", json=CHEAP, headers=bearer(key.secret))).status_code == 200
        used = await redis_platform.runtime.limiter.tokens(key.account_id)
        assert used is not None and used[0] > 0
        async with aioredis.Redis.from_url(redis_server.url) as raw:
            await raw.delete(*[k async for k in raw.scan_iter(match=f"plutos:q:{{{key.account_id}}}*")])
        assert await redis_platform.runtime.limiter.tokens(key.account_id) is None
        assert (await client.post("/process", json=CHEAP, headers=bearer(key.secret))).status_code == 200
        again = await redis_platform.runtime.limiter.tokens(key.account_id)
        assert again is not None and again[0] > used[0]


# -- two `plutos serve` replicas sharing one Redis -------------------------------------------------


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1"


def start_replica(env: dict[str, str], log: Path) -> Replica:
    """`plutos serve` on free ports, as its own process; its output goes to ``log``."""
    http_port, grpc_port = free_port(), free_port()
    command = ["serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *command], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Replica(process, http_port, grpc_port, log)


def replica_config(tmp: Path, plans: list[Plan]) -> Path:
    lines = []
    for p in plans:
        lines += [
            f"[plans.{p.name}]",
            f"requests_per_minute = {p.requests_per_minute}",
            f"requests_per_hour = {p.requests_per_hour}",
            f"requests_per_day = {p.requests_per_day}",
            f"concurrent_requests = {p.concurrent_requests}",
            f"monthly_tokens = {p.monthly_tokens}",
            "",
        ]
    path = tmp / "replicas.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass
class Replicas:
    servers: list[Replica]
    env: dict[str, str]  # what the replicas run with (store, Redis, config with the test plans)

    def create_key(self, plan_name: str) -> tuple[str, str]:
        """Create a key with the CLI, as an operator would: (secret, account id)."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "keys", "create", "--plan", plan_name, "--json"],
            env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        return str(created["key"]), str(created["accountId"])

    def diagnostics(self) -> list[tuple[str, str]]:
        """The end of each replica's output, for the report of a failed test."""
        out = []
        for r in self.servers:
            if r.process.poll() is None:
                r.process.send_signal(signal.SIGUSR1)  # the replica prints its threads' stacks
        time.sleep(0.5)
        for r in self.servers:
            text = r.log.read_text(errors="replace") if r.log.exists() else "(no log)"
            out.append((f"replica on port {r.http_port} ({r.log.name}, last 20,000 chars)", text[-20_000:]))
        return out

    def clients(self, connections: int = 100) -> list[httpx.AsyncClient]:
        limits = httpx.Limits(max_connections=connections, keepalive_expiry=KEEPALIVE_EXPIRY)
        return [httpx.AsyncClient(base_url=r.base_url, timeout=120, limits=limits) for r in self.servers]


@pytest.fixture(scope="module")
async def replicas(
    platform: RunningPlatform, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Replicas]:
    plans = [
        *platform.runtime.settings.plans.values(),
        plan("quota-edge", monthly_tokens=1500),
        plan("quota-pair", monthly_tokens=QUOTA_PAIR),
    ]
    tmp = tmp_path_factory.mktemp("replicas")
    config = replica_config(tmp, plans)
    env = {
        **os.environ,
        "PLUTOS_CONFIG": str(config),
        "PLUTOS_DATABASE_URL": platform.runtime.settings.database_url,
        "PLUTOS_REDIS_URL": redis_server.url,
    }
    started: list[Replica] = []
    try:
        for i in range(2):
            started.append(start_replica(env, tmp / f"replica-{i}.log"))
        async with httpx.AsyncClient() as probe:
            for replica in started:

                async def up(r: Replica = replica) -> bool:
                    assert r.process.poll() is None, "a replica exited"
                    try:
                        return (await probe.get(f"{r.base_url}/models")).status_code == 401
                    except httpx.TransportError:
                        return False

                await wait_until(up, "a replica to serve", within=180)
        yield Replicas(started, env)
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                replica.process.wait(20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(10)


async def test_two_replicas_enforce_one_rest_limit(replicas: Replicas) -> None:
    clients = replicas.clients(connections=200)

    async def burst() -> list[httpx.Response]:
        secret, _ = replicas.create_key("free")
        return await asyncio.gather(*(clients[i % 2].get("/models", headers=bearer(secret)) for i in range(200)))

    try:
        replies = await in_one_minute(burst)
    finally:
        for c in clients:
            await c.aclose()
    ok = [r for r in replies if r.status_code == 200]
    assert len(ok) == 60 and sum(r.status_code == 429 for r in replies) == 140
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in ok) == list(range(60))
    assert len({r.headers["X-RateLimit-Reset"] for r in replies}) == 1


async def test_two_replicas_enforce_one_grpc_limit(replicas: Replicas) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{r.grpc_port}") for r in replicas.servers]
    stubs = [models_stub(c) for c in channels]

    async def one(i: int, secret: str) -> grpc.StatusCode:
        try:
            await stubs[i % 2].ListModels(models_pb2.ListModelsRequest(), metadata=md(secret))
        except grpc.aio.AioRpcError as err:
            assert error_info(err)[0] == "rate_limit_exceeded"
            return err.code()
        return grpc.StatusCode.OK

    async def burst() -> list[grpc.StatusCode]:
        secret, _ = replicas.create_key("free")
        return await asyncio.gather(*(one(i, secret) for i in range(200)))

    try:
        codes = await in_one_minute(burst)
    finally:
        for c in channels:
            await c.close(None)
    assert codes.count(grpc.StatusCode.OK) == 60 and codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 140


async def test_two_replicas_share_the_concurrency_limit(replicas: Replicas) -> None:
    secret, account_id = replicas.create_key("free")
    clients = replicas.clients()
    probe = RedisLimiter(replicas.env["PLUTOS_REDIS_URL"])
    subject = account_subject(account_id)
    try:
        # A stream's headers come with its first chunk and each replica's model runs one generation
        # at a time: the five are opened in tasks and counted by the slots they hold in Redis.
        async def run(client: httpx.AsyncClient) -> int:
            async with client.stream("POST", "/stream", json=SLOW_STREAM, headers=bearer(secret)) as r:
                async for _ in r.aiter_bytes():
                    pass
                return r.status_code

        async def open_five() -> list[asyncio.Task[int]]:
            opened = [asyncio.create_task(run(clients[i % 2])) for i in range(5)]

            async def five_held() -> bool:
                return await probe.in_flight(subject) == 5

            await wait_until(five_held, "five slots held across the replicas")
            return opened

        async def close(opened: list[asyncio.Task[int]]) -> None:
            for task in opened:
                task.cancel()  # disconnect mid-stream
            for task in opened:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        async def all_free() -> bool:
            return await probe.in_flight(subject) == 0

        opened = await open_five()
        try:
            assert not any(task.done() for task in opened)
            for c in clients:  # a sixth on either replica is refused
                sixth = await c.post("/process", json=CHEAP, headers=bearer(secret))
                assert sixth.status_code == 429
                assert sixth.json()["error"]["details"]["window"] == "concurrent"
        finally:
            await close(opened)
        await wait_until(all_free, "slots to be released")
        again = await open_five()
        try:
            assert not any(task.done() for task in again)
        finally:
            await close(again)
        await wait_until(all_free, "slots to be released")
    finally:
        await probe.close()
        for c in clients:
            await c.aclose()


async def test_two_replicas_overshoot_the_quota_by_less_than_one_reservation(
    platform: RunningPlatform, replicas: Replicas
) -> None:
    """Bursts of 24 calls split over both replicas until the quota refuses them all: the month ends
    at least at the quota and less than one reservation past it, and the shared counter in Redis
    holds exactly what the ledger billed, with nothing left reserved (each call settled once).

    Were each replica counting on its own, the first burst would admit two calls on each (140
    tokens) and the second one more on each (210 ≥ QUOTA_PAIR + CHEAP_RESERVATION)."""
    secret, account_id = replicas.create_key("quota-pair")
    clients = replicas.clients(connections=24)
    probe = RedisLimiter(replicas.env["PLUTOS_REDIS_URL"])
    try:
        for _ in range(8):
            replies = await asyncio.gather(
                *(clients[i % 2].post("/process", json=CHEAP, headers=bearer(secret)) for i in range(24))
            )
            codes = [r.status_code for r in replies]
            assert set(codes) <= {200, 429}, codes
            if 200 not in codes:
                break
        else:
            pytest.fail("the quota never ran out")
        assert {r.json()["error"]["code"] for r in replies} == {"insufficient_quota"}
        used = await ledger_tokens(platform, account_id)
        assert QUOTA_PAIR <= used < QUOTA_PAIR + CHEAP_RESERVATION, used
        assert await probe.tokens(account_id) == (used, 0)
    finally:
        await probe.close()
        for c in clients:
            await c.aclose()


# -- Redis goes away mid-run ------------------------------------------------------------------------


async def test_redis_down_answers_503_and_recovers(platform: RunningPlatform) -> None:
    server = RedisServer(free_port())
    server.start()
    try:
        async with (
            platform_with(platform, redis_url=server.url) as closed,
            platform_with(platform, redis_url=server.url, limiter_fail_open=True) as open_,
        ):
            key = await create_key(closed.runtime.sessions, plan="pro")
            h = bearer(key.secret)
            async with http_client(closed) as c_closed, http_client(open_) as c_open:
                assert (await c_closed.get("/models", headers=h)).status_code == 200
                assert (await c_open.get("/models", headers=h)).status_code == 200
                # A stream that holds a slot when Redis dies finishes normally.
                running_stream = c_closed.stream(
                    "POST", "/stream", json={**CHEAP, "options": {"maxTokens": 60}}, headers=h
                )
                stream_response = await running_stream.__aenter__()
                assert stream_response.status_code == 200

                server.kill()

                body = (await stream_response.aread()).decode()
                await running_stream.__aexit__(None, None, None)
                assert "event: complete" in body
                for method, path, payload in (
                    ("GET", "/models", None),
                    ("POST", "/process", CHEAP),
                    ("POST", "/stream", CHEAP),
                ):
                    r = await c_closed.request(method, path, json=payload, headers=h)
                    assert r.status_code == 503, r.text
                    error = r.json()["error"]
                    assert error["code"] == "service_unavailable" and error["details"] == {"retryAfter": 1}
                    assert r.headers["Retry-After"] == "1" and r.headers["X-RateLimit-Remaining"] == "0"
                async with grpc.aio.insecure_channel(f"127.0.0.1:{closed.grpc_port}") as channel:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await models_stub(channel).ListModels(models_pb2.ListModelsRequest(), metadata=md(key.secret))
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert error_info(caught.value) == ("service_unavailable", 1)
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await processing_stub(channel).Process(
                            processing_pb2.ProcessRequest(input="Hi", model=MODEL), metadata=md(key.secret)
                        )
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                # Fail-open: served, uncounted, without figures.
                r = await c_open.post("/process", json=CHEAP, headers=h)
                assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers

                server.start()

                async def recovered() -> bool:
                    return (await c_closed.get("/models", headers=h)).status_code == 200

                await wait_until(recovered, "the service to recover with Redis", within=30)
                r = await c_closed.post("/process", json=CHEAP, headers=h)
                assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "300"
                r = await c_open.get("/models", headers=h)
                assert r.status_code == 200 and "X-RateLimit-Remaining" in r.headers
    finally:
        server.kill()
