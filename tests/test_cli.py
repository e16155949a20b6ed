"""The `plutos` command: key management and `serve`, as separate processes on a fresh store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL, free_port
from tests.serve_support import announced_urls, serving_workers
from tests.subprocess_support import run

pytestmark = pytest.mark.sqlite_only
PLUTOS = [sys.executable, "-m", "gateway.cli"]


async def plutos(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    database = {"PLUTOS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    return await run(*PLUTOS, *args, env={**database, **(env or {})}, timeout=120)


async def test_keys_create_json_list_revoke_rotate(tmp_path: Path) -> None:
    code, out, err = await plutos(tmp_path, "keys", "create", "--plan", "pro", "--name", "ci", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert {"id", "key", "plan"} <= set(created) and created["plan"] == "pro"
    assert created["key"].startswith("pk_")
    # The scopes the key holds (the defaults), not null; timestamps as the API prints them.
    assert created["scopes"] == ["process", "batch", "stream", "models", "usage", "webhooks"]

    code, out, _ = await plutos(tmp_path, "keys", "list", "--json")
    listed = json.loads(out)
    assert [k["id"] for k in listed] == [created["id"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed[0]["createdAt"])
    assert created["key"] not in out  # only the prefix is ever shown again
    assert listed[0]["prefix"] == created["key"][:10]

    code, out, _ = await plutos(tmp_path, "keys", "rotate", created["id"], "--grace", "1h", "--json")
    assert code == 0
    rotated = json.loads(out)
    assert rotated["replaces"] == created["id"] and rotated["key"] != created["key"]

    code, out, _ = await plutos(tmp_path, "keys", "revoke", created["id"])
    assert code == 0
    code, out, _ = await plutos(tmp_path, "keys", "list", "--json")
    status = {k["id"]: k["status"] for k in json.loads(out)}
    assert status == {created["id"]: "revoked", rotated["id"]: "active"}


async def test_keys_create_rejects_unknown_plan_and_scope(tmp_path: Path) -> None:
    code, _, err = await plutos(tmp_path, "keys", "create", "--plan", "platinum")
    assert code == 2 and "unknown plan" in err
    code, _, err = await plutos(tmp_path, "keys", "create", "--scopes", "process,teleport")
    assert code == 2 and "unknown scopes" in err


async def test_a_keys_cache_default_is_set_on_create_and_update(tmp_path: Path) -> None:
    code, out, err = await plutos(tmp_path, "keys", "create", "--cache-default", "use", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["cacheDefault"] == "use"
    code, _, err = await plutos(tmp_path, "keys", "create", "--cache-default", "always")
    assert code == 2 and "invalid choice" in err
    code, out, err = await plutos(tmp_path, "keys", "update", created["id"], "--cache-default", "none")
    assert code == 0, err
    code, out, _ = await plutos(tmp_path, "keys", "list", "--json")
    assert json.loads(out)[0]["cacheDefault"] is None
    code, _, err = await plutos(tmp_path, "keys", "update", "key_nope", "--cache-default", "use")
    assert code == 1 and "no key" in err


async def test_revoke_unknown_key_fails(tmp_path: Path) -> None:
    code, _, err = await plutos(tmp_path, "keys", "revoke", "key_nope")
    assert code == 1 and "no key" in err


async def test_serve_prints_a_dev_key_on_an_empty_store_and_serves(tmp_path: Path) -> None:
    # `serve --config FILE` (the form the docs write), with the plain sqlite:/// URL users write.
    http_port, grpc_port = free_port(), free_port()
    config = tmp_path / "plutos.toml"
    config.write_text(f'[server]\ndatabase_url = "sqlite:///{tmp_path / "serve.db"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUTOS_")}
    proc = await asyncio.create_subprocess_exec(
        *PLUTOS,
        "serve",
        "--config",
        str(config),
        "--dev-key",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "serve exited early"
                if line.strip().startswith("pk_"):
                    printed.append(line.strip())
                if "serving REST" in line:
                    break
        assert len(printed) == 2  # the development key, then the operator's admin key
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/v1", timeout=60) as client:
            for key in printed:
                r = await client.get("/models", headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200 and r.json()["models"][0]["id"] == MODEL
                # Both manage keys from the dashboard without a shell: the dev key carries `keys`.
                assert (await client.get("/keys", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0  # SIGTERM shuts down cleanly


# -- user mistakes: one clear line on stderr, an exit code, never a traceback -----------------------


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (
            ["serve", "--config", "/nonexistent/plutos.toml"],
            {},
            2,
            "config file /nonexistent/plutos.toml: no such file",
        ),
        (["--config", "/nonexistent/plutos.toml", "keys", "list"], {}, 2, "no such file"),
        (["keys", "create", "--account", "acct_nope"], {}, 1, "no account acct_nope"),
        (
            ["keys", "create", "--account", "acct_nope", "--plan", "pro"],
            {},
            2,
            "--plan and --account cannot be combined",
        ),
        (["keys", "list"], {"PLUTOS_DATABASE_URL": "mysql://u:secret@h/db"}, 2, "unsupported database URL scheme"),
        (["keys", "list"], {"PLUTOS_DATABASE_URL": "postgresql://u:secret@h:port/db"}, 2, "not a valid database URL"),
        (["migrate"], {"PLUTOS_HTTP_PORT": "http"}, 2, "PLUTOS_HTTP_PORT: expected an integer"),
        (
            ["keys", "list"],
            {"PLUTOS_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db"},
            1,
            "plutos: ConnectionRefusedError",
        ),
        # Ports are 0-65535 from flags, variables and files alike, checked before the model loads.
        (["serve", "--http-port", "70000"], {}, 2, "--http-port: Input should be less than or equal to 65535"),
        (["serve", "--http-port", "-5"], {}, 2, "--http-port: Input should be greater than or equal to 0"),
        (["serve", "--grpc-port", "70000"], {}, 2, "--grpc-port: Input should be less than or equal to 65535"),
        (["migrate"], {"PLUTOS_GRPC_PORT": "70000"}, 2, "PLUTOS_GRPC_PORT: Input should be less than or equal"),
        # Each listener on its own port (SO_REUSEPORT would let REST and gRPC share one, both broken).
        (
            ["serve", "--http-port", "3164", "--grpc-port", "3164"],
            {},
            2,
            "http_port and grpc_port are both 3164; each listener needs its own port",
        ),
        (["serve", "--http-port", "3165"], {"PLUTOS_METRICS_PORT": "3165"}, 2, "http_port and metrics_port are both"),
        (["migrate"], {"PLUTOS_GRPC_PORT": "3166", "PLUTOS_METRICS_PORT": "3166"}, 2, "grpc_port and metrics_port"),
        # 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
        (["serve", "--host", "192.0.2.1"], {}, 2, "cannot listen on 192.0.2.1: address not available on this machine"),
        (["keys", "create", "--expires-in", "0s", "--json"], {}, 2, "'0s': must be positive"),
        (["keys", "create", "--expires-in", "99999999d"], {}, 2, "'99999999d': too long"),
    ],
)
async def test_user_mistakes_get_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, says: str
) -> None:
    got, out, err = await plutos(tmp_path, *args, env=env)
    assert got == code, err
    assert says in err, err
    assert "Traceback" not in err and "secret" not in err
    assert "serving REST" not in out  # refused before the servers (and the model) start


def _ipv6_loopback_port() -> int | None:
    """A free port on ::1, or None when this machine has no IPv6 loopback."""
    if not socket.has_ipv6:
        return None
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
            return int(probe.getsockname()[1])
    except OSError:
        return None


async def test_serve_on_ipv6_loopback(tmp_path: Path) -> None:
    """`--host ::1`: the gRPC address, the bridge's loopback gRPC target and the printed URLs put the
    IPv6 literal in brackets; REST answers /health and, over the gRPC bridge, /v1/models."""
    http_port, grpc_port = _ipv6_loopback_port(), _ipv6_loopback_port()
    if http_port is None or grpc_port is None:
        pytest.skip("this machine has no IPv6 loopback (::1)")  # fails under CI=true
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUTOS_")}
    env |= {"PLUTOS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'v6.db'}", "PLUTOS_BRIDGE_TRANSPORT": "grpc"}
    ports = ("--http-port", str(http_port), "--grpc-port", str(grpc_port))
    proc = await asyncio.create_subprocess_exec(
        *PLUTOS, "serve", "--host", "::1", "--dev-key", *ports,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    keys: list[str] = []
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "serve exited early"
                if line.strip().startswith("pk_"):
                    keys.append(line.strip())
                if "serving REST" in line:
                    assert f"http://[::1]:{http_port}/v1" in line and f"gRPC on [::1]:{grpc_port}" in line, line
                    break
        async with httpx.AsyncClient(base_url=f"http://[::1]:{http_port}", timeout=60) as client:
            assert (await client.get("/health")).status_code == 200
            r = await client.get("/v1/models", headers={"Authorization": f"Bearer {keys[0]}"})
            assert r.status_code == 200 and r.json()["models"][0]["id"] == MODEL, r.text
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


@pytest.mark.parametrize("taken", ["http", "grpc"])
async def test_serve_refuses_a_port_another_server_answers_on(tmp_path: Path, taken: str) -> None:
    """The workers share their ports with SO_REUSEPORT, which would also let a second `plutos serve`
    on the same ports start silently and take half the connections. A port that already answers
    (here a plain listening socket; a running gateway is the same) gets one line and exit 1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = str(listener.getsockname()[1])
        ports = {"http": str(free_port()), "grpc": str(free_port()), taken: busy}
        code, out, err = await plutos(tmp_path, "serve", "--http-port", ports["http"], "--grpc-port", ports["grpc"])
    what = "REST" if taken == "http" else "gRPC"
    assert code == 1, out + err
    assert f"cannot listen for {what} on 127.0.0.1:{busy}: something already answers there" in err, err
    assert "Traceback" not in err and "serving REST" not in out


async def test_serve_says_which_port_it_cannot_bind(tmp_path: Path) -> None:
    """A port held by a socket that does not listen (so nothing answers) fails at bind time: one
    line naming it, exit 1, and no thread's traceback from the store left running."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        held = str(holder.getsockname()[1])
        code, out, err = await plutos(tmp_path, "serve", "--http-port", str(free_port()), "--grpc-port", held)
    assert code == 1, out + err
    assert f"cannot listen for gRPC on 127.0.0.1:{held}" in err, err
    assert "Traceback" not in err and "Exception in thread" not in err, err


async def test_a_config_error_names_the_file_table_and_key(tmp_path: Path) -> None:
    config = tmp_path / "plutos.toml"
    config.write_text("[server]\nhttp_prot = 3001\n")
    code, _, err = await plutos(tmp_path, "serve", "--config", str(config))
    assert code == 2 and f"{config}: [server] http_prot: unknown key" in err, err


async def test_postgres_urls_as_platforms_hand_them_out(tmp_path: Path) -> None:
    pg = os.environ.get("PLUTOS_TEST_DATABASE_URL", "")
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    if pg.startswith("postgresql+asyncpg://"):
        url = pg.replace("postgresql+asyncpg://", "postgres://")
    code, out, err = await plutos(tmp_path, "keys", "list", "--json", env={"PLUTOS_DATABASE_URL": url})
    assert code == 0, err
    assert isinstance(json.loads(out), list)


async def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    for _ in range(3):
        assert (await plutos(tmp_path, "keys", "create", "--name", "x" * 2000))[0] == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already left
    env = {**os.environ, "PLUTOS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    proc = await asyncio.create_subprocess_exec(
        *PLUTOS, "keys", "list", stdout=write_end, stderr=asyncio.subprocess.PIPE, env=env
    )
    os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


async def test_rotating_a_key_that_is_no_longer_active_fails(tmp_path: Path) -> None:
    code, out, err = await plutos(tmp_path, "keys", "create", "--expires-in", "30d", "--json")
    assert code == 0, err
    created = json.loads(out)
    code, out, err = await plutos(tmp_path, "keys", "rotate", created["id"], "--grace", "1h", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["expiresAt"] == created["expiresAt"]  # the old key's own expiry, not the grace cutoff
    code, out, err = await plutos(tmp_path, "keys", "rotate", created["id"], "--grace", "1h")
    assert code == 1 and "rotated" in err and "only an active key" in err and out == ""
    code, _, _ = await plutos(tmp_path, "keys", "revoke", first["id"])
    code, _, err = await plutos(tmp_path, "keys", "rotate", first["id"])
    assert code == 1 and "revoked" in err


async def test_keys_create_admin(tmp_path: Path) -> None:
    code, out, err = await plutos(tmp_path, "keys", "create", "--admin", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["plan"] == "enterprise" and "admin" in created["scopes"] and "keys" in created["scopes"]
    code, _, err = await plutos(tmp_path, "keys", "create", "--admin", "--scopes", "process")
    assert code == 2


def test_workers_share_the_cores_among_their_local_models() -> None:
    import dataclasses

    from server.config import load_settings, sized_for_workers

    base = load_settings(env={})
    local = next(m for m in base.models if m.backend == "local")
    assert sized_for_workers(base, 2, cpus=8).model(local.id).options["threads"] == 4  # type: ignore[union-attr]
    assert sized_for_workers(base, 16, cpus=8).model(local.id).options["threads"] == 1  # type: ignore[union-attr]
    pinned = dataclasses.replace(base, models=[dataclasses.replace(local, options={"threads": 3})])
    assert sized_for_workers(pinned, 2, cpus=8).models[0].options["threads"] == 3


def _spawned_workers(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawn children) of the `plutos serve` process ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


async def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    """`serve --workers 2`: a worker killed with SIGKILL is noticed at once (one line) and replaced;
    the server keeps answering, and SIGTERM still stops every worker (the new one too) with exit 0."""
    cfg = tmp_path / "plutos.toml"
    cfg.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("PLUTOS_REDIS_URL", "PLUTOS_CONFIG")}
    env["PLUTOS_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}"
    async with serving_workers(cfg, env, tmp_path / "serve.log", workers=2) as serving:
        workers = _spawned_workers(serving.proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        await announced_urls(serving.proc, serving.log, workers=3)  # the replacement serves
        log = serving.log.read_text(errors="replace")
        assert f"[plutos] worker {workers[0]} exited with -9; starting a new one" in log, log
        assert len(_spawned_workers(serving.proc.pid)) == 2
        for _ in range(4):  # new connections, which the kernel spreads over both workers
            async with httpx.AsyncClient(base_url=serving.base_url, timeout=30) as client:
                assert (await client.get("/models")).status_code == 401  # answered (no key)
    assert serving.proc.returncode == 0, serving.log.read_text(errors="replace")[-3000:]
