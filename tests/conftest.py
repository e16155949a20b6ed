"""Fixtures: a real platform (gRPC server + REST bridge on ephemeral loopback ports, a real store,
the real embedded model) shared by the session, and keys, HTTP and gRPC clients for it.

The store is a fresh SQLite file, or the PostgreSQL database named by PLUTOS_TEST_DATABASE_URL
(emptied first)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from grpc_status import rpc_status
from plutos.v1 import (
    admin_pb2_grpc,
    keys_pb2_grpc,
    models_pb2_grpc,
    openai_pb2_grpc,
    processing_pb2_grpc,
    usage_pb2_grpc,
    webhooks_pb2_grpc,
)
from sqlalchemy import delete

from gateway.app import RunningPlatform, start_platform
from server.config import Settings, load_settings, validate_tables
from server.keys import CreatedKey, create_key
from server.store.database import create_engine
from server.store.models import Base

# Fixtures for any test module that asks for them: the browser tests' (browser, page, origin), a
# module's own redis-server (redis_server), webhook receiver (receiver) and fault injector (faults).
pytest_plugins = ["tests.browser_support", "tests.redis_support", "tests.webhook_receiver", "tests.fault_upstream"]

MODEL = "smollm2-135m-instruct"
_IN_CI = os.environ.get("CI", "").lower() in ("true", "1")
# Servers the tests SIGTERM close their ports at once (the default keeps /ready at 503 for 5 s first);
# tests/test_drain.py takes this out of its server's environment to test the default.
os.environ.setdefault("PLUTOS_DRAIN_DELAY_SECONDS", "0")


def _refresh_sdk_stubs() -> None:
    """The Python SDK's plutos_ai._gen is derived from gen/python, not committed (clients/python/
    scripts/gen.py; `make protos` runs it): after a merge that changed gen/python, re-derive it before
    a test imports both copies (a stale one is a different "plutos/v1/x.proto" in the same pool)."""
    script = Path(__file__).resolve().parent.parent / "clients" / "python" / "scripts" / "gen.py"
    spec = importlib.util.spec_from_file_location("_plutos_ai_gen", script)
    if spec is None or spec.loader is None:
        return
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if gen.available() and gen.OUT.exists() and gen.main(["--check"]) != 0:
            gen.main([])


_refresh_sdk_stubs()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test shows the output of the server processes it used (fixtures with ``diagnostics()``)."""
    report = yield
    if report.skipped and _IN_CI and not hasattr(report, "wasxfail"):
        # CI must never go green by skipping: a test that skips because a tool (Redis, Node, Go,
        # grpcurl, chromium, ...) is missing fails there instead, with the skip's reason.
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (a missing tool must be installed by the Makefile): {reason}"
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            diagnostics = getattr(value, "diagnostics", None)
            if callable(diagnostics):
                for title, text in diagnostics():
                    report.sections.append((title, text))
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: runs only against the SQLite store")


async def reset_database(url: str) -> None:
    """Drop every table (and Alembic's) so migrations run from scratch."""
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    await engine.dispose()


# Every platform a test starts shares this webhook policy (they may share one database, and any of
# their dispatchers may deliver any event): loopback receivers allowed, fast bounded retries.
TEST_WEBHOOKS = {
    "allow_private_urls": True,
    "retry_schedule": [0.2, 0.4, 0.8],
    "retry_jitter": 0.1,
    "timeout": 5.0,
    "lease": 6.0,
    "poll_interval": 0.1,
}


def test_settings(tmp_path: Path, **overrides: Any) -> Settings:
    url = os.environ.get("PLUTOS_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'plutos.db'}"
    base = load_settings(env={})
    config = base.config.model_copy(update={"webhooks": validate_tables({"webhooks": TEST_WEBHOOKS}).webhooks})
    return dataclasses.replace(
        base,
        http_host="127.0.0.1",
        http_port=0,
        grpc_host="127.0.0.1",
        grpc_port=0,
        database_url=url,
        # The REST tests run over either bridge transport: PLUTOS_TEST_BRIDGE_TRANSPORT=grpc (make
        # test-postgres) sends them through the loopback gRPC channel, the default calls in process.
        **{"config": config, "bridge_transport": os.environ.get("PLUTOS_TEST_BRIDGE_TRANSPORT", "local"), **overrides},
    )


@pytest.fixture(scope="session")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningPlatform]:
    settings = test_settings(tmp_path_factory.mktemp("store"))
    if settings.database_url.startswith("postgresql"):
        await reset_database(settings.database_url)
    running = await start_platform(settings)
    yield running
    await running.stop(grace=1)


@pytest.fixture(scope="session")
def base_url(platform: RunningPlatform) -> str:
    return f"http://127.0.0.1:{platform.http_port}/v1"


def free_port() -> int:
    """A free loopback TCP port (for a helper server a test starts and stops itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def new_key(platform: RunningPlatform, plan: str = "enterprise", **kwargs: Any) -> CreatedKey:
    return await create_key(platform.runtime.sessions, plan=plan, **kwargs)


@pytest.fixture(scope="session")
async def key(platform: RunningPlatform) -> CreatedKey:
    """An enterprise key (high limits) for tests that are not about limits."""
    return await new_key(platform, name="tests")


@pytest.fixture(scope="session")
async def http(base_url: str, key: CreatedKey) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=120
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def anon(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that sends no key."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        yield client


# Stubs over a grpc.aio channel. mypy-protobuf types XServiceStub(channel) as the blocking stub; over a
# grpc.aio.Channel its methods return awaitable calls, which it types as XServiceAsyncStub (a class of
# the .pyi only, hence the casts by name).
def processing_stub(channel: grpc.aio.Channel) -> processing_pb2_grpc.ProcessingServiceAsyncStub:
    return cast("processing_pb2_grpc.ProcessingServiceAsyncStub", processing_pb2_grpc.ProcessingServiceStub(channel))


def models_stub(channel: grpc.aio.Channel) -> models_pb2_grpc.ModelsServiceAsyncStub:
    return cast("models_pb2_grpc.ModelsServiceAsyncStub", models_pb2_grpc.ModelsServiceStub(channel))


def usage_stub(channel: grpc.aio.Channel) -> usage_pb2_grpc.UsageServiceAsyncStub:
    return cast("usage_pb2_grpc.UsageServiceAsyncStub", usage_pb2_grpc.UsageServiceStub(channel))


def webhooks_stub(channel: grpc.aio.Channel) -> webhooks_pb2_grpc.WebhooksServiceAsyncStub:
    return cast("webhooks_pb2_grpc.WebhooksServiceAsyncStub", webhooks_pb2_grpc.WebhooksServiceStub(channel))


def keys_stub(channel: grpc.aio.Channel) -> keys_pb2_grpc.KeysServiceAsyncStub:
    return cast("keys_pb2_grpc.KeysServiceAsyncStub", keys_pb2_grpc.KeysServiceStub(channel))


def admin_stub(channel: grpc.aio.Channel) -> admin_pb2_grpc.AdminServiceAsyncStub:
    return cast("admin_pb2_grpc.AdminServiceAsyncStub", admin_pb2_grpc.AdminServiceStub(channel))


def openai_stub(channel: grpc.aio.Channel) -> openai_pb2_grpc.OpenAIServiceAsyncStub:
    return cast("openai_pb2_grpc.OpenAIServiceAsyncStub", openai_pb2_grpc.OpenAIServiceStub(channel))


def rich_status(err: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """``rpc_status.from_call`` of a grpc.aio error: the google.rpc.Status in its trailing metadata,
    or None (ValueError if it disagrees with the call's code or message). AioRpcError has the
    grpc.Call methods from_call reads; grpc-stubs types from_call for grpc.Call only."""
    status: status_pb2.Status | None = rpc_status.from_call(cast(grpc.Call, err))
    return status


def error_trailers(err: grpc.aio.AioRpcError) -> tuple[tuple[str, str | bytes], ...]:
    """A grpc.aio error's trailing metadata as (key, value) pairs, in order. grpc-stubs types it as
    grpc.RpcError's tuple of _Metadatum; grpc.aio gives its Metadata (which iterates as pairs)."""
    return tuple(cast(grpc.aio.Metadata, err.trailing_metadata()))


@dataclasses.dataclass
class GrpcClients:
    channel: grpc.aio.Channel
    processing: processing_pb2_grpc.ProcessingServiceAsyncStub
    models: models_pb2_grpc.ModelsServiceAsyncStub
    usage: usage_pb2_grpc.UsageServiceAsyncStub
    webhooks: webhooks_pb2_grpc.WebhooksServiceAsyncStub
    keys: keys_pb2_grpc.KeysServiceAsyncStub
    admin: admin_pb2_grpc.AdminServiceAsyncStub


@pytest.fixture(scope="session")
async def grpc_clients(platform: RunningPlatform) -> AsyncIterator[GrpcClients]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{platform.grpc_port}")
    yield GrpcClients(
        channel=channel,
        processing=processing_stub(channel),
        models=models_stub(channel),
        usage=usage_stub(channel),
        webhooks=webhooks_stub(channel),
        keys=keys_stub(channel),
        admin=admin_stub(channel),
    )
    await channel.close(None)


@pytest.fixture(scope="session")
def auth_md(key: CreatedKey) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key.secret}"),)


@contextlib.asynccontextmanager
async def seeded_usage_daily(platform: RunningPlatform, rows: list[Any]) -> AsyncIterator[None]:
    """``usage_daily`` rows written straight into the store for one test, removed after it: every
    other roll-up row has its ledger rows, which ``test_daily_rollup_matches_the_ledger`` checks
    across the whole (possibly shared) database."""
    async with platform.runtime.sessions.begin() as session:
        session.add_all(rows)
    try:
        yield
    finally:
        async with platform.runtime.sessions.begin() as session:
            for row in rows:
                await session.execute(
                    delete(type(row)).where(
                        type(row).account_id == row.account_id, type(row).day == row.day, type(row).model == row.model
                    )
                )
