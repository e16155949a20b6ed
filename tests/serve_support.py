"""A real ``plutos serve`` as the test's own process (one or more workers, ports the test holds), and
the CLI beside it: for the tests that need the whole program, not the in-process platform
(tests/test_mixed_load.py, tests/test_workers_limits.py, tests/test_webhooks.py's kill -9)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLUTOS = (sys.executable, "-m", "gateway.cli")


def plutos_json(cfg: Path, env: dict[str, str], *args: str) -> Any:
    """``plutos --config CFG ARGS`` (e.g. ``keys create --json``), its JSON output parsed.
    Raises CalledProcessError if it fails."""
    out = subprocess.run(
        [*PLUTOS, "--config", str(cfg), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def reserved_port() -> socket.socket:
    """A loopback port held (bound with SO_REUSEPORT, not listening) for the test's lifetime, so
    every worker of a `plutos serve --workers N` can bind it too and no one else takes it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def spawn_serve(cfg: Path, env: dict[str, str], log: Path, *serve_args: str) -> subprocess.Popen[bytes]:
    """``plutos --config CFG serve SERVE_ARGS`` with its output (stdout and stderr) in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*PLUTOS, "--config", str(cfg), "serve", *serve_args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def announced_urls(proc: subprocess.Popen[bytes], log: Path, workers: int = 1, timeout: float = 120) -> list[str]:
    """Poll ``log`` until ``workers`` processes announced ``serving REST on URL``; their URLs.
    Raises AssertionError (with the log) if the server exits first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while len(urls := _announced(log)) < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"plutos serve did not start: {_text(log)}")
        await asyncio.sleep(0.1)
    return urls


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def _announced(log: Path) -> list[str]:
    return re.findall(r"serving REST on (http://\S+/v1)", _text(log))


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (the server drains), then SIGKILL if it is still there after ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Serving:
    base_url: str  # http://127.0.0.1:PORT/v1
    proc: subprocess.Popen[bytes]
    log: Path


@asynccontextmanager
async def serving_workers(cfg: Path, env: dict[str, str], log: Path, workers: int) -> AsyncIterator[Serving]:
    """``plutos serve --workers N`` on two held loopback ports, once every worker serves; stopped
    (SIGTERM, then SIGKILL after 30 s) on exit, when ``proc.returncode`` tells how it ended."""
    http_sock, grpc_sock = reserved_port(), reserved_port()
    http_port, grpc_port = http_sock.getsockname()[1], grpc_sock.getsockname()[1]
    ports = ("--http-port", str(http_port), "--grpc-port", str(grpc_port))
    proc = spawn_serve(cfg, env, log, "--workers", str(workers), *ports)
    try:
        await announced_urls(proc, log, workers)
        yield Serving(f"http://127.0.0.1:{http_port}/v1", proc, log)
    finally:
        stop(proc)
        http_sock.close()
        grpc_sock.close()
