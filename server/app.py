"""Process assembly: the grpc.aio server and the REST bridge on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from plutos.v1 import (
    models_pb2,
    models_pb2_grpc,
    openai_pb2,
    openai_pb2_grpc,
    processing_pb2,
    processing_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from starlette.routing import BaseRoute

from bridge.app import create_app
from bridge.surfaces import docs_route, openapi_route
from server.config import Settings
from server.dashboard import dashboard_routes
from server.gctune import tune_gc
from server.interceptors import AuthInterceptor, ErrorInterceptor, InterceptorChain, LimitsInterceptor
from server.limits.quota import ledger_seed
from server.local_channel import LocalChannel
from server.runtime import Runtime
from server.services.models import ModelsService
from server.services.openai import OpenAIService
from server.services.processing import ProcessingService
from server.services.usage import UsageService
from server.services.webhooks import WebhooksService

log = logging.getLogger("plutos")

SERVICE_NAMES = [
    processing_pb2.DESCRIPTOR.services_by_name["ProcessingService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelsService"].full_name,
    usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhooksService"].full_name,
    openai_pb2.DESCRIPTOR.services_by_name["OpenAIService"].full_name,
]

GRPC_OPTIONS = [
    ("grpc.so_reuseport", 1),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

# The bridge's channel to its own server on loopback: no retries (the bridge maps every failure
# to an envelope itself, and a retried /process would run the model twice), no bandwidth probing.
BRIDGE_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 0),
    ("grpc.http2.bdp_probe", 0),
]


def build_services(runtime: Runtime) -> tuple[InterceptorChain, list[tuple[Callable[[Any, Any], None], Any]]]:
    """The interceptor chain and the servicers, with the generated function that registers each."""
    chain = InterceptorChain(
        [
            ErrorInterceptor(),
            AuthInterceptor(runtime.authenticator),
            LimitsInterceptor(
                runtime.limiter,
                runtime.settings,
                ledger_seed(runtime.sessions),
                fail_open=runtime.settings.limiter_fail_open,
            ),
        ]
    )
    servicers: list[tuple[Callable[[Any, Any], None], Any]] = [
        (processing_pb2_grpc.add_ProcessingServiceServicer_to_server, ProcessingService(runtime)),
        (models_pb2_grpc.add_ModelsServiceServicer_to_server, ModelsService(runtime)),
        (usage_pb2_grpc.add_UsageServiceServicer_to_server, UsageService(runtime)),
        (webhooks_pb2_grpc.add_WebhooksServiceServicer_to_server, WebhooksService(runtime)),
        (openai_pb2_grpc.add_OpenAIServiceServicer_to_server, OpenAIService(runtime)),
    ]
    return chain, servicers


def non_api_routes(runtime: Runtime) -> list[BaseRoute]:
    """HTTP surfaces beside the RPCs' generated routes (static files, scrapes, derived documents),
    one entry per surface; the bridge mounts them after the API's routes."""
    return [
        openapi_route(),  # GET /v1/openapi.json, derived from the bridge's bindings and the proto comments
        docs_route(),  # GET /docs: the API reference page rendering it (Swagger UI, offline)
        *dashboard_routes(),  # the browser dashboard at /dashboard (static files), / redirects there
    ]


def build_grpc_server(
    chain: InterceptorChain, servicers: list[tuple[Callable[[Any, Any], None], Any]]
) -> grpc.aio.Server:
    server = grpc.aio.server(interceptors=[chain], options=GRPC_OPTIONS)
    for add_to_server, servicer in servicers:
        add_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    server.health = health_servicer  # type: ignore[attr-defined]
    return server


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening socket several worker processes can share (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections (with proto 0 it does not, and
    # Nagle + delayed ACKs add ~40 ms to every small REST response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@dataclass
class RunningPlatform:
    runtime: Runtime
    grpc_server: grpc.aio.Server
    http_server: uvicorn.Server
    channel: grpc.aio.Channel | LocalChannel
    http_task: asyncio.Task[None]
    grpc_port: int
    http_port: int
    # The in-process transport to this server's handlers (``channel`` when bridge_transport is local).
    local_channel: LocalChannel

    async def stop(self, grace: float = 5.0) -> None:
        self.http_server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.http_task, grace + 1)
        await self.grpc_server.stop(grace)
        await self.channel.close(None)
        await self.local_channel.close(grace)
        await self.runtime.close()


async def start_platform(settings: Settings, *, migrate: bool = True) -> RunningPlatform:
    """Start everything on the running loop; returns once both ports accept connections."""
    runtime = Runtime.create(settings)
    await runtime.start(migrate=migrate)
    chain, servicers = build_services(runtime)
    server = build_grpc_server(chain, servicers)
    grpc_port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if grpc_port == 0:
        raise RuntimeError(f"cannot listen for gRPC on {settings.grpc_host}:{settings.grpc_port}")
    await server.start()
    for name in SERVICE_NAMES:
        await server.health.set(name, health_pb2.HealthCheckResponse.SERVING)  # type: ignore[attr-defined]
    await server.health.set("", health_pb2.HealthCheckResponse.SERVING)  # type: ignore[attr-defined]

    target = f"{'[::1]' if ':' in settings.grpc_host else '127.0.0.1'}:{grpc_port}"
    if settings.grpc_host not in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
        target = f"{settings.grpc_host}:{grpc_port}"
    local = LocalChannel(chain, servicers)  # the same handlers and interceptors, called in process
    channel: grpc.aio.Channel | LocalChannel = local
    if settings.bridge_transport == "grpc":
        channel = grpc.aio.insecure_channel(target, options=BRIDGE_CHANNEL_OPTIONS)
    app = create_app(
        channel,
        max_body_bytes=settings.max_body_bytes,
        keepalive_seconds=settings.sse_keepalive_seconds,
        extra_routes=non_api_routes(runtime),
    )
    sock = reuseport_socket(settings.http_host, settings.http_port)
    http_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
        proxy_headers=False,  # client addresses are not used; saves a middleware
    )
    http_server = uvicorn.Server(config)
    http_task = asyncio.create_task(http_server.serve(sockets=[sock]))
    while not http_server.started:
        if http_task.done():
            http_task.result()
        await asyncio.sleep(0.01)
    return RunningPlatform(runtime, server, http_server, channel, http_task, grpc_port, http_port, local)


async def serve_forever(settings: Settings, *, migrate: bool = True, announce: Any = None) -> None:
    platform = await start_platform(settings, migrate=migrate)
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"[plutos] serving REST on http://{settings.http_host}:{platform.http_port}/v1 "
        f"and gRPC on {settings.grpc_host}:{platform.grpc_port} (REST bridge: "
        + ("over loopback gRPC)" if settings.bridge_transport == "grpc" else "in process)"),
        flush=True,
    )
    host = settings.http_host if settings.http_host not in ("0.0.0.0", "::", "") else "localhost"
    print(f"[plutos] dashboard: http://{host}:{platform.http_port}/dashboard/", flush=True)
    if announce is not None:
        announce(platform)
    await stop.wait()
    print("[plutos] shutting down", flush=True)
    await platform.stop()
