"""A private Redis for ``plutos serve --workers N`` when no ``redis_url`` is configured.

N worker processes must share what one process keeps in memory — the limiter's windows, slots and
quota counters, the response cache, idempotency keys, key revocations — or each worker would apply
a plan's limits on its own (N times the limit). Redis already shares them across replicas (every
limiter decision is one Lua script), so the workers reuse that tested path: the supervisor starts
``redis-server`` from ``PATH`` in memory (no persistence), listening only on a Unix socket in a
fresh private directory (mode 0700, no TCP port), and stops it after the last worker has exited.
It runs in its own session, so a Ctrl-C meant for the gateway does not stop it while the workers
drain, and it is told to exit if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the supervisor dies


@contextlib.contextmanager
def private_redis(timeout: float = 10.0) -> Iterator[str | None]:
    """Yield a ``unix://`` URL of a fresh in-memory Redis, or None when ``redis-server`` is not
    installed. Raises RuntimeError if it does not answer within ``timeout`` seconds."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    home = Path(tempfile.mkdtemp(prefix="plutos-redis-"))  # mkdtemp: mode 0700
    sock = home / "redis.sock"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(home),
            "--loglevel",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent if os.name == "posix" else None,  # the supervisor has no threads yet
    )
    try:
        _wait_ready(sock, proc, timeout)
        yield f"unix://{sock}?db=0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def _wait_ready(sock: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode} before it was ready")
        if sock.exists():
            try:
                client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except redis.RedisError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer on {sock} within {timeout:g}s")
        time.sleep(0.02)
