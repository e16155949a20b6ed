"""Configuration: one TOML file (server, plans, models) with ``PLUTOS_*`` environment overrides."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    requests_per_minute: int
    requests_per_hour: int
    requests_per_day: int
    concurrent_requests: int
    monthly_tokens: int


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One catalogue entry. ``options`` holds backend-specific settings (path, base_url, ...)."""

    id: str
    name: str
    description: str
    max_tokens: int
    supports_streaming: bool
    input_price: Decimal  # USD per 1K prompt tokens
    output_price: Decimal  # USD per 1K completion tokens
    backend: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settings:
    http_host: str
    http_port: int
    grpc_host: str
    grpc_port: int
    database_url: str
    redis_url: str
    auth_cache_ttl: float
    max_body_bytes: int
    max_batch_inputs: int
    batch_concurrency: int
    sse_keepalive_seconds: float
    plans: dict[str, Plan]
    models: list[ModelSpec]
    raw: dict[str, Any] = field(default_factory=dict)
    # Redis limiter unreachable: false answers 503 service_unavailable; true serves calls unlimited.
    limiter_fail_open: bool = False
    # How the REST bridge reaches the gRPC service: "local" calls its handlers (through the same
    # interceptors) in process; "grpc" goes over a loopback gRPC channel to the gRPC port.
    bridge_transport: str = "local"
    # REST connections (bridge/http_protocol.py): request line + headers at most this many bytes
    # and lines (else 431), complete within http_header_timeout seconds (else 408); a kept-alive
    # connection idle for http_idle_timeout seconds is closed.
    http_max_header_bytes: int = 32 * 1024
    http_max_headers: int = 100
    http_header_timeout: float = 10.0
    http_idle_timeout: float = 5.0
    # gRPC connections: the largest message accepted is max_body_bytes (as REST's body limit);
    # keepalive pings every grpc_keepalive_time seconds, a connection that does not answer one
    # within grpc_keepalive_timeout is closed; a connection idle (no call) for
    # grpc_max_connection_idle seconds, or older than grpc_max_connection_age (then given
    # grpc_max_connection_age_grace for its calls to finish), is closed.
    grpc_keepalive_time: float = 60.0
    grpc_keepalive_timeout: float = 20.0
    grpc_max_connection_idle: float = 300.0
    grpc_max_connection_age: float = 3600.0
    grpc_max_connection_age_grace: float = 600.0

    def model(self, model_id: str) -> ModelSpec | None:
        for spec in self.models:
            if spec.id == model_id:
                return spec
        return None


_ENV_OVERRIDES: dict[str, tuple[str, type]] = {
    "PLUTOS_HTTP_HOST": ("http_host", str),
    "PLUTOS_HTTP_PORT": ("http_port", int),
    "PLUTOS_GRPC_HOST": ("grpc_host", str),
    "PLUTOS_GRPC_PORT": ("grpc_port", int),
    "PLUTOS_DATABASE_URL": ("database_url", str),
    "PLUTOS_REDIS_URL": ("redis_url", str),
    "PLUTOS_AUTH_CACHE_TTL": ("auth_cache_ttl", float),
    "PLUTOS_BRIDGE_TRANSPORT": ("bridge_transport", str),
}

_MODEL_KEYS = {"id", "name", "description", "max_tokens", "supports_streaming", "pricing", "backend"}


def _parse_model(entry: dict[str, Any]) -> ModelSpec:
    missing = {"id", "backend"} - entry.keys()
    if missing:
        raise ValueError(f"model entry {entry!r} lacks {sorted(missing)}")
    pricing = entry.get("pricing", {})
    return ModelSpec(
        id=str(entry["id"]),
        name=str(entry.get("name", entry["id"])),
        description=str(entry.get("description", "")),
        max_tokens=int(entry.get("max_tokens", 4096)),
        supports_streaming=bool(entry.get("supports_streaming", True)),
        input_price=Decimal(str(pricing.get("input_tokens", 0))),
        output_price=Decimal(str(pricing.get("output_tokens", 0))),
        backend=str(entry["backend"]),
        options={k: v for k, v in entry.items() if k not in _MODEL_KEYS},
    )


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the embedded defaults, overlay the TOML file at ``path`` (or ``PLUTOS_CONFIG``), then
    apply ``PLUTOS_*`` environment overrides. A file's ``[server]`` keys merge into the defaults;
    its ``[plans]`` and ``[[models]]``, when present, replace the defaults' whole section."""
    env = dict(os.environ if env is None else env)
    with open(DEFAULT_CONFIG_PATH, "rb") as fh:
        raw = tomllib.load(fh)
    path = path or env.get("PLUTOS_CONFIG")
    if path:
        with open(path, "rb") as fh:
            user = tomllib.load(fh)
        raw["server"] = {**raw["server"], **user.get("server", {})}
        for section in ("plans", "models"):
            if section in user:
                raw[section] = user[section]
        for key, value in user.items():
            if key not in ("server", "plans", "models"):
                raw[key] = value
    server = raw["server"]
    for var, (key, cast) in _ENV_OVERRIDES.items():
        if env.get(var):
            server[key] = cast(env[var])
    plans = {
        name: Plan(
            name=name,
            requests_per_minute=int(p["requests_per_minute"]),
            requests_per_hour=int(p["requests_per_hour"]),
            requests_per_day=int(p["requests_per_day"]),
            concurrent_requests=int(p["concurrent_requests"]),
            monthly_tokens=int(p["monthly_tokens"]),
        )
        for name, p in raw["plans"].items()
    }
    return Settings(
        http_host=str(server["http_host"]),
        http_port=int(server["http_port"]),
        grpc_host=str(server["grpc_host"]),
        grpc_port=int(server["grpc_port"]),
        database_url=str(server["database_url"]),
        redis_url=str(server.get("redis_url", "")),
        auth_cache_ttl=float(server["auth_cache_ttl"]),
        max_body_bytes=int(server["max_body_bytes"]),
        max_batch_inputs=int(server["max_batch_inputs"]),
        batch_concurrency=int(server["batch_concurrency"]),
        sse_keepalive_seconds=float(server["sse_keepalive_seconds"]),
        plans=plans,
        models=[_parse_model(m) for m in raw["models"]],
        raw=raw,
        limiter_fail_open=bool(server.get("limiter_fail_open", False)),
        bridge_transport=_transport(server.get("bridge_transport", "local")),
        **{name: cast(server[name]) for name, cast in _CONNECTION_LIMITS.items() if name in server},
    )


_CONNECTION_LIMITS: dict[str, type] = {
    "http_max_header_bytes": int,
    "http_max_headers": int,
    "http_header_timeout": float,
    "http_idle_timeout": float,
    "grpc_keepalive_time": float,
    "grpc_keepalive_timeout": float,
    "grpc_max_connection_idle": float,
    "grpc_max_connection_age": float,
    "grpc_max_connection_age_grace": float,
}


def sized_for_workers(settings: Settings, workers: int, cpus: int | None = None) -> Settings:
    """``settings`` for one of ``workers`` processes: each local (llama.cpp) model that does not
    set ``threads`` itself gets ``cpus // workers`` threads (at least 1), so N workers together
    use the machine's cores instead of N times them."""
    cores = cpus or os.cpu_count() or 1
    per_worker = max(1, cores // max(1, workers))
    models = [
        dataclasses.replace(m, options={**m.options, "threads": per_worker})
        if m.backend == "local" and not m.options.get("threads")
        else m
        for m in settings.models
    ]
    return dataclasses.replace(settings, models=models)


BRIDGE_TRANSPORTS = ("local", "grpc")


def _transport(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in BRIDGE_TRANSPORTS:
        raise ValueError(f"bridge_transport must be one of {', '.join(BRIDGE_TRANSPORTS)}, not {value!r}")
    return text
