"""Configuration: one declared schema (server/config.py) for the TOML file and PLUTOS_* variables.

Every problem is one clear line naming the file (or variable), the table and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from server.config import (
    ConfigError,
    ServerTable,
    WebhooksTable,
    load_settings,
    normalize_database_url,
)
from server.store.database import create_engine
from server.webhook_delivery.settings import WebhookSettings


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "plutos.toml"
    path.write_text(body)
    return path


def config_error(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    return str(info.value)


def test_the_embedded_defaults_are_the_schema_defaults() -> None:
    settings = load_settings(env={})
    assert settings.config.server == ServerTable()
    assert settings.config.webhooks == WebhooksTable()
    assert set(settings.plans) == {"free", "pro", "enterprise"}
    assert settings.http_port == 3000 and settings.models[0].backend == "local"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[server]\nhttp_prot = 3001\n", "[server] http_prot: unknown key"),
        ("[server]\nhttp_port = 'many'\n", "[server] http_port: expected an integer, got 'many'"),
        ("[server]\nhttp_port = 70000\n", "[server] http_port: Input should be less than or equal to 65535"),
        ("[server]\nlimiter_fail_open = 'maybe'\n", "[server] limiter_fail_open: expected true or false"),
        ("[server]\nbridge_transport = 'pigeon'\n", "[server] bridge_transport: Input should be 'local' or 'grpc'"),
        ("[server]\ndatabase_url = 'mysql://u:p@h/db'\n", "[server] database_url: unsupported database URL scheme"),
        (
            "[plans.free]\nrequests_per_minute = 1\nrequests_per_day = 1\n"
            "concurrent_requests = 1\nmonthly_tokens = 1\n",
            "[plans.free] requests_per_hour: required key is missing",
        ),
        (
            "[[models]]\nid = 'm'\nbackend = 'openai-compatible'\nbase_ulr = 'http://x/v1'\n",
            "[[models]] #1 (id 'm') base_ulr: unknown key",
        ),
        ("[[models]]\nid = 'm'\nbackend = 'weird'\n", "[[models]] #1 (id 'm'): unknown backend 'weird'"),
        ("[[models]]\nid = 'm'\n", "[[models]] #1 (id 'm'): backend is missing"),
        ("[[models]]\nid = 'm'\nbackend = 'local'\nmax_tokens = 'x'\n", "[[models]] #1 (id 'm') max_tokens: expected"),
        (
            "[[models]]\nid = 'm'\nbackend = 'openai-compatible'\nbase_url = 'http://x/v1'\napi_key = 'sk-1'\n",
            "[[models]] #1 (id 'm'): never put the key in the catalogue",
        ),
        ("[webhooks]\nretries = 3\n", "[webhooks] retries: unknown key"),
        ("[webhooks]\ntimeout = 40\n", "[webhooks]: lease must be longer than timeout"),
        ("[nonsense]\nx = 1\n", "[nonsense]: unknown key"),
    ],
)
def test_a_bad_file_names_file_table_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    message = config_error(path)
    assert f"{path}: {expected}" in message, message
    assert "Traceback" not in message and "pydantic" not in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "[server]\nhttp_prot = 1\ngrpc_prot = 2\n"))
    assert "http_prot" in message and "grpc_prot" in message


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    assert config_error(tmp_path / "missing.toml") == f"config file {tmp_path / 'missing.toml'}: no such file"
    assert "not valid TOML" in config_error(write(tmp_path, "[server\n"))
    assert "missing.toml: no such file" in config_error(env={"PLUTOS_CONFIG": str(tmp_path / "missing.toml")})


def test_every_server_key_is_an_environment_variable() -> None:
    env = {
        "PLUTOS_HTTP_PORT": "3001",
        "PLUTOS_MAX_BATCH_INPUTS": "7",
        "PLUTOS_LIMITER_FAIL_OPEN": "true",
        "PLUTOS_SSE_KEEPALIVE_SECONDS": "2.5",
        "PLUTOS_BRIDGE_TRANSPORT": "GRPC",
        "PLUTOS_REDIS_URL": "",  # empty: ignored
    }
    settings = load_settings(env=env)
    assert (settings.http_port, settings.max_batch_inputs, settings.limiter_fail_open) == (3001, 7, True)
    assert settings.sse_keepalive_seconds == 2.5 and settings.bridge_transport == "grpc"
    assert settings.redis_url == ""


def test_a_bad_variable_is_named() -> None:
    message = config_error(env={"PLUTOS_HTTP_PORT": "abc"})
    assert "environment: PLUTOS_HTTP_PORT: expected an integer, got 'abc'" in message


def test_a_file_and_the_environment_merge(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nhttp_port = 4000\ngrpc_port = 4001\n[webhooks]\nmax_per_account = 3\n")
    settings = load_settings(path, env={"PLUTOS_GRPC_PORT": "5001"})
    assert (settings.http_port, settings.grpc_port) == (4000, 5001)
    assert WebhookSettings.from_settings(settings).max_per_account == 3
    assert settings.models[0].id == "smollm2-135m-instruct"  # no [[models]]: the defaults' catalogue


def test_the_environment_beats_the_file_which_beats_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nhttp_port = 4000\nmax_batch_inputs = 9\n")
    settings = load_settings(path, env={"PLUTOS_HTTP_PORT": "4100"})
    assert settings.http_port == 4100  # environment over file
    assert settings.max_batch_inputs == 9  # file over defaults
    assert settings.grpc_port == ServerTable().grpc_port  # defaults where neither says


def test_an_explicit_path_beats_plutos_config(tmp_path: Path) -> None:
    explicit = write(tmp_path, "[server]\nhttp_port = 4200\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nhttp_port = 4300\n")
    assert load_settings(explicit, env={"PLUTOS_CONFIG": str(other)}).http_port == 4200
    assert load_settings(env={"PLUTOS_CONFIG": str(other)}).http_port == 4300


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PLUTOS_HTTP_PORT", "70000", "PLUTOS_HTTP_PORT"),
        ("PLUTOS_LIMITER_FAIL_OPEN", "maybe", "PLUTOS_LIMITER_FAIL_OPEN"),
        ("PLUTOS_BRIDGE_TRANSPORT", "pigeon", "PLUTOS_BRIDGE_TRANSPORT"),
        ("PLUTOS_SSE_KEEPALIVE_SECONDS", "soon", "PLUTOS_SSE_KEEPALIVE_SECONDS"),
    ],
)
def test_a_bad_environment_value_is_a_config_error_naming_it(variable: str, value: str, says: str) -> None:
    message = config_error(env={variable: value})
    assert f"environment: {says}: " in message, message
    assert "Traceback" not in message and "pydantic" not in message


# -- database URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:///plutos.db", "sqlite+aiosqlite:///plutos.db"),
        ("sqlite:////var/lib/plutos.db", "sqlite+aiosqlite:////var/lib/plutos.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db.example/plutos", "postgresql+asyncpg://u:p@db.example/plutos"),
        ("postgres://u:p@db.example:6543/plutos", "postgresql+asyncpg://u:p@db.example:6543/plutos"),
        ("postgresql+asyncpg://u:p@h/d", "postgresql+asyncpg://u:p@h/d"),
        ("postgres://u:p@h/d?sslmode=require", "postgresql+asyncpg://u:p@h/d?ssl=require"),
    ],
)
def test_database_urls_users_write(given: str, used: str) -> None:
    assert normalize_database_url(given) == used
    assert load_settings(env={"PLUTOS_DATABASE_URL": given}).database_url == used


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("mysql://u:secret@h/db", "unsupported database URL scheme 'mysql'"),
        ("nonsense", "not a valid database URL"),
        ("postgresql://u:secret@h:port/db", "not a valid database URL"),
        ("postgresql+psycopg2://u:secret@h/db", "driver 'psycopg2' is not supported"),
        ("postgresql://u:secret@h", "names no database"),
    ],
)
def test_bad_database_urls_are_one_clear_line(given: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        normalize_database_url(given)
    assert "secret" not in str(info.value)


async def test_the_engine_takes_the_plain_forms(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / 'plain.db'}"]
    pg = os.environ.get("PLUTOS_TEST_DATABASE_URL", "")
    if pg.startswith("postgresql"):
        urls += [
            pg.replace("postgresql+asyncpg://", "postgresql://"),
            pg.replace("postgresql+asyncpg://", "postgres://"),
        ]
    for url in urls:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        finally:
            await engine.dispose()
