"""Process assembly: the grpc.aio server and the REST bridge on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from plutos.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
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
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bridge.app import create_app
from bridge.http_protocol import HttpLimits, bounded_protocol
from bridge.surfaces import docs_route, openapi_route
from bridge.transports.local import LocalChannel
from core.tracing import instrument_asgi as tracing_instrument_asgi
from core.tracing import instrument_store as tracing_instrument_store
from core.tracing import setup_from_env as setup_tracing_from_env
from core.tracing import shutdown as shutdown_tracing
from core.tracing import state as tracing
from server.config import Settings
from server.dashboard import dashboard_routes
from server.gctune import tune_gc
from server.interceptors import (
    AuthInterceptor,
    ErrorInterceptor,
    InterceptorChain,
    LimitsInterceptor,
    TextInterceptor,
)
from server.interceptors.idempotency import IdempotencyInterceptor, idempotent_methods
from server.limiter.quota import ledger_seed
from server.observability.health import Readiness, health_route, ready_route
from server.observability.logs import RequestLog, configure_logging, stop_logging, write_rejected
from server.observability.metrics import HTTP, metrics_route, outbox_gauges, set_known_models
from server.observability.tls import grpc_server_credentials, tls_enabled, uvicorn_ssl_options
from server.runtime import Runtime
from server.services.admin import AdminService
from server.services.keys import KeysService
from server.services.models import ModelsService
from server.services.openai import OpenAIService
from server.services.processing import ProcessingService
from server.services.usage import UsageService
from server.services.webhooks import WebhooksService

log = logging.getLogger("plutos")

# The generated modules of the public API (services, and the RPC options the interceptors read).
API_MODULES = [processing_pb2, models_pb2, usage_pb2, webhooks_pb2, keys_pb2, admin_pb2, openai_pb2]

SERVICE_NAMES = [
    processing_pb2.DESCRIPTOR.services_by_name["ProcessingService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelsService"].full_name,
    usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhooksService"].full_name,
    keys_pb2.DESCRIPTOR.services_by_name["KeysService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    openai_pb2.DESCRIPTOR.services_by_name["OpenAIService"].full_name,
]


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """The gRPC server's channel options: the same largest request as the REST body limit, and
    keepalive/idle/age limits so a connection that stops talking (half-sent frames, a vanished
    peer) does not hold memory forever."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    limits = settings.config.server
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.keepalive_time_ms", ms(limits.grpc_keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(limits.grpc_keepalive_timeout)),
        ("grpc.max_connection_idle_ms", ms(limits.grpc_max_connection_idle)),
        ("grpc.max_connection_age_ms", ms(limits.grpc_max_connection_age)),
        ("grpc.max_connection_age_grace_ms", ms(limits.grpc_max_connection_age_grace)),
        # Clients may ping (keepalive) at most every 10 s, also without calls in flight.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
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
    settings = runtime.settings
    request_log = RequestLog(settings.log_bodies) if settings.access_log else None
    chain = InterceptorChain(
        [
            ErrorInterceptor(request_log=request_log, metrics=settings.metrics_enabled, calls=runtime.idle_release),
            AuthInterceptor(runtime.authenticator),
            IdempotencyInterceptor(runtime.idempotency, idempotent_methods(API_MODULES)),
            LimitsInterceptor(
                runtime.limiter,
                runtime.settings,
                ledger_seed(runtime.sessions),
                fail_open=runtime.settings.limiter_fail_open,
            ),
            TextInterceptor(),
        ]
    )
    servicers: list[tuple[Callable[[Any, Any], None], Any]] = [
        (processing_pb2_grpc.add_ProcessingServiceServicer_to_server, ProcessingService(runtime)),
        (models_pb2_grpc.add_ModelsServiceServicer_to_server, ModelsService(runtime)),
        (usage_pb2_grpc.add_UsageServiceServicer_to_server, UsageService(runtime)),
        (webhooks_pb2_grpc.add_WebhooksServiceServicer_to_server, WebhooksService(runtime)),
        (keys_pb2_grpc.add_KeysServiceServicer_to_server, KeysService(runtime)),
        (admin_pb2_grpc.add_AdminServiceServicer_to_server, AdminService(runtime)),
        (openai_pb2_grpc.add_OpenAIServiceServicer_to_server, OpenAIService(runtime)),
    ]
    return chain, servicers


def non_api_routes(runtime: Runtime, readiness: Readiness) -> list[BaseRoute]:
    """HTTP surfaces beside the RPCs' generated routes (static files, scrapes, derived documents),
    one entry per surface; the bridge mounts them after the API's routes."""
    return [
        openapi_route(),  # GET /v1/openapi.json, derived from the bridge's bindings and the proto comments
        docs_route(),  # GET /docs: the API reference page rendering it (Swagger UI, offline)
        *dashboard_routes(),  # the browser dashboard at /dashboard (static files), / redirects there
        *operations_routes(runtime, readiness, on_api_port=True),  # /health, /ready, /metrics
    ]


def operations_routes(runtime: Runtime, readiness: Readiness, *, on_api_port: bool) -> list[BaseRoute]:
    """/health, /ready and /metrics: on the REST port, or on ``metrics_port`` when one is set."""
    settings = runtime.settings
    if on_api_port == (settings.metrics_port > 0):
        return []
    routes: list[BaseRoute] = [health_route(), ready_route(readiness)]
    if settings.metrics_enabled:
        routes.append(metrics_route(outbox_gauges(runtime.sessions)))
    return routes


def build_grpc_server(
    chain: InterceptorChain, servicers: list[tuple[Callable[[Any, Any], None], Any]], settings: Settings
) -> grpc.aio.Server:
    server = grpc.aio.server(interceptors=[chain], options=grpc_options(settings))
    for add_to_server, servicer in servicers:
        add_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    server.health = health_servicer  # type: ignore[attr-defined]
    return server


LISTEN_BACKLOG = 8192


class PortUnavailable(Exception):
    """A port the gateway must listen on cannot be used; ``str(err)`` names it and says why."""


class AddressUnavailable(PortUnavailable):
    """The configured host is not an address of this machine (a configuration mistake)."""


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC targets and URLs write it: an IPv6 literal in brackets (``[::1]:3000``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _check_bindable(host: str, option: str) -> None:
    """Bind a throwaway socket to ``(host, 0)``: refuses an address this machine does not have
    (EADDRNOTAVAIL) before the model loads, rather than after, from deep inside gRPC."""
    try:
        infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise AddressUnavailable(f"cannot listen on {host}: {err.strerror or err} ({option})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRNOTAVAIL:
                raise AddressUnavailable(
                    f"cannot listen on {host}: address not available on this machine ({option})"
                ) from None
            raise PortUnavailable(f"cannot listen on {host}: {err.strerror or err} ({option})") from None


def _answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (a wildcard host: on loopback)."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        socket.create_connection((target, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def check_ports_free(settings: Settings) -> None:
    """Refuse to start when another server already listens on one of the configured ports.

    The workers of ``serve --workers N`` share their ports with SO_REUSEPORT, which would also let
    a second ``plutos serve`` (an old version still running, ``make run`` twice) bind the same
    ports and silently take half the connections. A listener of any other program is found when
    binding anyway; this finds the ones SO_REUSEPORT would let in. Port 0 (any free port) is never
    checked. Raises :class:`PortUnavailable`."""
    ports = [("REST", settings.http_host, settings.http_port, "--http-port / PLUTOS_HTTP_PORT")]
    ports.append(("gRPC", settings.grpc_host, settings.grpc_port, "--grpc-port / PLUTOS_GRPC_PORT"))
    if settings.metrics_port > 0:
        ports.append(("metrics", settings.http_host, settings.metrics_port, "metrics_port"))
    _check_bindable(settings.http_host, "--host / PLUTOS_HTTP_HOST")
    if settings.grpc_host != settings.http_host:
        _check_bindable(settings.grpc_host, "--host / PLUTOS_GRPC_HOST")
    for what, host, port, option in ports:
        if port and _answers(host, port):
            raise PortUnavailable(
                f"cannot listen for {what} on {host_port(host, port)}: something already answers there "
                f"(another `plutos serve`?); stop it or choose another port ({option})"
            )


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening socket several worker processes can share (SO_REUSEPORT). Raises
    :class:`PortUnavailable` when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections (with proto 0 it does not, and
    # Nagle + delayed ACKs add ~40 ms to every small REST response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise PortUnavailable(f"cannot listen on {host_port(host, port)}: {err.strerror or err}") from None
    # A burst of new connections (thousands of streams opening at once) waits in this queue; the
    # kernel caps it at net.core.somaxconn.
    sock.listen(LISTEN_BACKLOG)
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
    readiness: Readiness
    # The separate /metrics, /health, /ready server when metrics_port is set.
    ops_server: uvicorn.Server | None = None
    ops_task: asyncio.Task[None] | None = None
    ops_port: int = 0

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, give calls in flight ``grace`` seconds, flush the writers, close."""
        self.http_server.config.timeout_graceful_shutdown = max(1, round(grace + 1))
        self.http_server.should_exit = True
        await asyncio.gather(
            self._http_stopped(grace + 2),
            self.grpc_server.stop(grace),
            self.local_channel.close(grace),
        )
        await self.channel.close(None)
        await self.readiness.close()
        if self.ops_server is not None and self.ops_task is not None:
            self.ops_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ops_task, 2)
        await self.runtime.close()

    async def _http_stopped(self, within: float) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.http_task, within)

    async def drain(self, seconds: float, delay: float = 0.0) -> None:
        """SIGTERM: readiness fails at once; after ``delay`` seconds the ports stop accepting;
        calls and streams in flight get ``seconds`` to finish; the writer and outbox flush."""
        await self.readiness.start_draining()
        log.info("draining: not ready; refusing new connections in %.1fs, in-flight calls get %.1fs", delay, seconds)
        if delay > 0:
            await asyncio.sleep(delay)
        await self.stop(seconds)


async def start_platform(settings: Settings, *, migrate: bool = True) -> RunningPlatform:
    """Start everything on the running loop; returns once both ports accept connections."""
    tls = tls_enabled(settings)
    if tls and settings.bridge_transport == "grpc":
        raise ValueError('TLS needs bridge_transport = "local" (the bridge then calls the service in process)')
    runtime = Runtime.create(settings)
    await runtime.start(migrate=migrate)
    try:
        return await _start_servers(runtime, settings, tls)
    except BaseException:
        await runtime.close()  # a port that cannot be taken: stop the store's threads before the loop ends
        raise


async def _start_servers(runtime: Runtime, settings: Settings, tls: bool) -> RunningPlatform:
    if tracing.enabled:
        tracing_instrument_store(runtime.engine)
    set_known_models(runtime.catalogue.specs)
    readiness = Readiness(runtime)
    chain, servicers = build_services(runtime)
    server = build_grpc_server(chain, servicers, settings)
    address = host_port(settings.grpc_host, settings.grpc_port)
    try:
        if tls:
            grpc_port = server.add_secure_port(address, grpc_server_credentials(settings))
        else:
            grpc_port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises "Failed to bind to address ..."
        grpc_port = 0
    if grpc_port == 0:
        raise PortUnavailable(f"cannot listen for gRPC on {address}: the address is in use or not available here")
    await server.start()
    try:
        for name in SERVICE_NAMES:
            await server.health.set(name, health_pb2.HealthCheckResponse.SERVING)  # type: ignore[attr-defined]
        await server.health.set("", health_pb2.HealthCheckResponse.SERVING)  # type: ignore[attr-defined]
        readiness.watch(server.health, SERVICE_NAMES)  # type: ignore[attr-defined]

        target = f"{'[::1]' if ':' in settings.grpc_host else '127.0.0.1'}:{grpc_port}"
        if settings.grpc_host not in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
            target = host_port(settings.grpc_host, grpc_port)
        local = LocalChannel(chain, servicers)  # the same handlers and interceptors, called in process
        channel: grpc.aio.Channel | LocalChannel = local
        if settings.bridge_transport == "grpc":
            channel = grpc.aio.insecure_channel(target, options=BRIDGE_CHANNEL_OPTIONS)
        app = create_app(
            channel,
            max_body_bytes=settings.max_body_bytes,
            keepalive_seconds=settings.sse_keepalive_seconds,
            extra_routes=non_api_routes(runtime, readiness),
            observe=HTTP.observe if settings.metrics_enabled else None,
            # Requests the bridge answers before any RPC: the service's request line never sees them.
            rejected=write_rejected if settings.access_log else None,
        )
        sock = reuseport_socket(settings.http_host, settings.http_port)
        http_port = sock.getsockname()[1]
        http_app: Any = tracing_instrument_asgi(app) if tracing.enabled else app
        http_server, http_task = await _serve_http(http_app, sock, settings, api=True)
        platform = RunningPlatform(
            runtime, server, http_server, channel, http_task, grpc_port, http_port, local, readiness
        )
        if settings.metrics_port > 0:
            ops_sock = reuseport_socket(settings.http_host, settings.metrics_port)
            ops_app = Starlette(routes=operations_routes(runtime, readiness, on_api_port=False))
            platform.ops_server, platform.ops_task = await _serve_http(ops_app, ops_sock, settings, tls=False)
            platform.ops_port = ops_sock.getsockname()[1]
        return platform
    except BaseException:
        await server.stop(0)
        raise


async def _serve_http(
    app: Any, sock: socket.socket, settings: Settings, *, tls: bool = True, api: bool = False
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    limits = settings.config.server  # header size/count, header-read and idle timeouts
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # uvicorn's loggers go through ours (server/observability/logs.py)
        access_log=False,  # the request line comes from the error interceptor
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
        proxy_headers=False,  # client addresses are not used; saves a middleware
        http=bounded_protocol(
            HttpLimits(
                max_header_bytes=limits.http_max_header_bytes,
                max_headers=limits.http_max_headers,
                header_timeout=limits.http_header_timeout,
                idle_timeout=limits.http_idle_timeout,
            ),
            # On the API port, requests refused as invalid HTTP are counted and logged like the rest.
            observe=HTTP.observe if api and settings.metrics_enabled else None,
            rejected=write_rejected if api and settings.access_log else None,
        ),
        timeout_keep_alive=max(1, round(limits.http_idle_timeout)),
        **(uvicorn_ssl_options(settings) if tls else {}),
    )
    http_server = uvicorn.Server(config)
    http_task = asyncio.create_task(http_server.serve(sockets=[sock]))
    while not http_server.started:
        if http_task.done():
            http_task.result()
        await asyncio.sleep(0.01)
    return http_server, http_task


_stop_requested = False


def catch_stop_signals_early() -> None:
    """Until ``serve_forever`` installs its own handlers, SIGTERM only notes the request (a worker
    told to stop while it starts drains once started, instead of dying mid-start). Ctrl-C still
    interrupts a start-up."""

    def note(signum: int, frame: Any) -> None:
        global _stop_requested
        _stop_requested = True

    signal.signal(signal.SIGTERM, note)


async def serve_forever(settings: Settings, *, migrate: bool = True, announce: Any = None) -> None:
    configure_logging(settings.log_format, settings.log_level)
    setup_tracing_from_env()  # off unless OTEL_* variables ask for traces
    try:
        platform = await start_platform(settings, migrate=migrate)
    except PortUnavailable as err:
        print(f"[plutos] {err}", file=sys.stderr, flush=True)
        stop_logging()
        raise SystemExit(1) from None
    tune_gc()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    if _stop_requested:
        on_signal(signal.SIGTERM)
    scheme = "https" if settings.tls_cert_file else "http"
    print(
        f"[plutos] serving REST on {scheme}://{host_port(settings.http_host, platform.http_port)}/v1 "
        f"and gRPC on {host_port(settings.grpc_host, platform.grpc_port)} (REST bridge: "
        + ("over loopback gRPC)" if settings.bridge_transport == "grpc" else "in process)"),
        flush=True,
    )
    host = settings.http_host if settings.http_host not in ("0.0.0.0", "::", "") else "localhost"
    print(f"[plutos] dashboard: {scheme}://{host_port(host, platform.http_port)}/dashboard/", flush=True)
    print(f"[plutos] OpenAI-compatible API: {scheme}://{host_port(host, platform.http_port)}/openai/v1", flush=True)
    if announce is not None:
        announce(platform)
    await stop.wait()
    # SIGTERM (an orchestrator, a load balancer in front): /ready says 503 for drain_delay_seconds while
    # the ports still accept. SIGINT is Ctrl-C at a terminal: nobody polls /ready, the ports close at once.
    delay = settings.drain_delay_seconds if received and received[0] == signal.SIGTERM else 0.0
    print(
        f"[plutos] draining: /ready answers 503; ports close in {delay:g}s; calls in flight get up to "
        f"{settings.drain_seconds:g}s",
        flush=True,
    )
    await platform.drain(settings.drain_seconds, delay)
    print("[plutos] stopped", flush=True)
    shutdown_tracing()
    stop_logging()
