"""Liveness and readiness: ``GET /health``, ``GET /ready`` and the gRPC health service.

``/health`` answers 200 ``{"status": "ok"}`` while the process answers at all. ``/ready`` runs the
checks — the store answers ``SELECT 1``, Redis answers ``PING`` (when the limiter uses it), every
local model is loaded, the process is not draining — and answers 200 ``{"status": "ready",
"checks": {...}}`` or 503 ``{"status": "unavailable", "checks": {...}}`` with the failed check's
reason (an exception's type, never its text: it may hold a URL with a password). Neither needs a key.

The gRPC health service (``grpc.health.v1.Health``) reports the same: a background task re-runs
the checks every ``interval`` seconds and sets SERVING / NOT_SERVING for the server ("") and every
service; draining sets NOT_SERVING at once, for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from grpc_health.v1 import health_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.observability.metrics import DRAINING

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger("plutos.health")

CHECK_TIMEOUT = 2.0  # seconds per check


class Readiness:
    """The readiness checks of one process, and its draining flag."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.draining = False
        self._health: Any = None  # grpc_health's aio HealthServicer, once the server has one
        self._services: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> tuple[bool, dict[str, str]]:
        """``(ready, {check: "ok" | reason})`` for store, redis, model and drain."""
        store, redis = await asyncio.gather(self._store(), self._redis())
        checks = {
            "store": store,
            "redis": redis,
            "model": self._models(),
            "drain": "draining" if self.draining else "ok",
        }
        return all(v in ("ok", "not configured") for v in checks.values()), checks

    async def _store(self) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                async with self.runtime.engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
        except Exception as err:
            return f"failed: {type(err).__name__}"
        return "ok"

    async def _redis(self) -> str:
        client = getattr(self.runtime.limiter, "client", None)
        if client is None:
            return "not configured"
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await client.ping()
        except Exception as err:
            return f"failed: {type(err).__name__}"
        return "ok"

    def _models(self) -> str:
        loading = sorted(model_id for model_id, b in self.runtime.catalogue.backends.items() if not b.ready)
        return f"loading: {', '.join(loading)}" if loading else "ok"

    # -- gRPC health --------------------------------------------------------------------------

    def watch(self, health_servicer: Any, services: list[str], interval: float = 5.0) -> None:
        """Keep the gRPC health service's statuses equal to :meth:`check`'s answer."""
        self._health = health_servicer
        self._services = ["", *services]
        self._task = asyncio.create_task(self._watch(interval), name="readiness-watch")

    async def _watch(self, interval: float) -> None:
        while not self.draining:
            ready, checks = await self.check()
            if self.draining:
                break
            status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in self._services:
                await self._health.set(name, status)
            if not ready:
                log.warning("not ready: %s", {k: v for k, v in checks.items() if v != "ok"})
            await asyncio.sleep(interval)

    async def start_draining(self) -> None:
        """Readiness fails from now on; the gRPC health service says NOT_SERVING."""
        self.draining = True
        DRAINING.set(1)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _json(obj: Any, status: int) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def health_route() -> Route:
    async def health(request: Request) -> Response:
        return _json({"status": "ok"}, 200)

    return Route("/health", health, methods=["GET"], name="health")


def ready_route(readiness: Readiness) -> Route:
    async def ready(request: Request) -> Response:
        ok, checks = await readiness.check()
        return _json({"status": "ready" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    return Route("/ready", ready, methods=["GET"], name="ready")
