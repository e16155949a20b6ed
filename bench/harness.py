"""Plumbing for benchmarks: start servers as separate processes, drive load with wrk / ghz (separate
processes too), and sample the server's CPU and peak RSS. Loopback only; every run is bounded."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TOOLS = ROOT / ".tools" / "bin"
# The PostgreSQL database the store benchmarks wipe and fill.
DEFAULT_PG = os.environ.get(
    "PLUTOS_BENCH_DATABASE_URL", "postgresql+asyncpg://plutos:plutos@127.0.0.1:5432/plutos_bench"
)


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


def process_tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants (empty once it has exited)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM ``proc`` if it still runs, SIGKILL it if it is still there after ``grace`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def logged_process(
    cmd: list[str], *, port: int, log_path: Path, cwd: Path, env: dict[str, str], timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` with its output in ``log_path``; yields once ``port`` accepts connections (TimeoutError
    after ``timeout`` s), stops it (SIGTERM, SIGKILL after 15 s) on exit."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(port, timeout)
            yield proc
        finally:
            stop_process(proc)


def wait_http(url: str, headers: dict[str, str], proc: subprocess.Popen[bytes], within: float = 60) -> None:
    """Poll GET ``url`` until it answers 200; RuntimeError if ``proc`` exits or ``within`` s pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {within}s")


class ProcessGroup:
    """The processes a benchmark starts (mock upstream, gateways, bare paths). Leaving the ``with``
    block sends each still running one SIGTERM (last started first), waits up to ``grace`` s for
    each, then SIGKILLs what is left, and removes the folder ``remove`` if given."""

    def __init__(self, grace: float = 15, *, remove: Path | None = None) -> None:
        self.grace = grace
        self.remove = remove
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            stop_process(proc, self.grace)
        if self.remove is not None:
            shutil.rmtree(self.remove, ignore_errors=True)

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def mock_upstream(self, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """bench/mock_upstream.py on ``port`` (its output discarded); returns at once."""
        return self.add(
            subprocess.Popen(
                [sys.executable, "-m", "bench.mock_upstream", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )

    def gateway(
        self,
        plutos: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        http_port: int,
        auth: dict[str, str],
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        """``[*plutos, "serve"]`` (e.g. ``python -m gateway.cli --config X``) with its output in
        ``log_path``; returns once GET /v1/models on ``http_port`` answers 200 with ``auth``."""
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([*plutos, "serve"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.add(proc)
        wait_http(f"http://127.0.0.1:{http_port}/v1/models", auth, proc)
        return proc


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    key: str
    workdir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def processes(self) -> list[psutil.Process]:
        """The server's process tree (the supervisor and its workers)."""
        return process_tree(self.proc.pid)

    def rss(self) -> int:
        """Resident memory of the whole process tree, in bytes."""
        return tree_rss(self.processes())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the whole process tree has used so far, in seconds."""
        return tree_cpu_seconds(self.processes())

    def stop(self) -> None:
        """SIGTERM (the server drains), then SIGKILL if it is still there after 30 s."""
        stop_process(self.proc, 30)


def tree_rss(processes: list[psutil.Process]) -> int:
    """Summed resident memory of ``processes`` (those that have exited count 0), in bytes."""
    total = 0
    for p in processes:
        with suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def tree_cpu_seconds(processes: list[psutil.Process]) -> float:
    """Summed CPU time (user + system) of ``processes``, in seconds."""
    total = 0.0
    for p in processes:
        with suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


BENCH_PLAN = """
[plans.enterprise]
requests_per_minute = 1000000000
requests_per_hour = 1000000000
requests_per_day = 1000000000
concurrent_requests = 100000
monthly_tokens = 1000000000000
"""


@contextmanager
def plutos_server(
    config_toml: str = "",
    workers: int = 1,
    env: dict[str, str] | None = None,
    prefix_cmd: tuple[str, ...] = (),
    *,
    database_url: str | None = None,
    keep_log: Path | None = None,
) -> Iterator[Server]:
    """`plutos serve` in a separate process with an enterprise key, on ``database_url`` (default: a
    fresh SQLite file); ``prefix_cmd`` runs it under e.g. ``taskset -c 1``. Returns once every worker
    serves; stops it on exit (its output is copied to ``keep_log`` then, if given)."""
    workdir = Path(tempfile.mkdtemp(prefix="plutos-bench-"))
    config = workdir / "config.toml"
    if "[plans.enterprise]" not in config_toml:
        # "A high-limit key": the bench key's plan must not turn the load into 429s.
        config_toml = BENCH_PLAN + config_toml
    config.write_text(config_toml)
    http_port, grpc_port = free_port(), free_port()
    full_env = {
        **os.environ,
        "PLUTOS_CONFIG": str(config),
        "PLUTOS_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        **(env or {}),
    }
    created = subprocess.run(
        [str(VENV_BIN / "plutos"), "keys", "create", "--plan", "enterprise", "--name", "bench", "--json"],
        env=full_env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = json.loads(created.stdout)["key"]
    log_file = open(workdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [
            *prefix_cmd,
            str(VENV_BIN / "plutos"),
            "serve",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            "--workers",
            str(workers),
        ],
        env=full_env,
        cwd=workdir,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = Server(proc, http_port, grpc_port, key, workdir)
    try:
        wait_port(http_port)
        wait_port(grpc_port)
        deadline = time.monotonic() + 120
        while server.log_path.read_text(errors="replace").count("serving REST on") < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"plutos serve did not start: {server.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(0.5)
        yield server
    finally:
        server.stop()
        log_file.close()
        if keep_log is not None:
            shutil.copy(server.log_path, keep_log)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class ResourceSample:
    cpu_percent: float = 0.0  # of one core, averaged over the run
    peak_rss_mb: float = 0.0


class ResourceMonitor:
    """Samples CPU time and RSS of a process tree while a load runs."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.sample = ResourceSample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> float:
        return tree_cpu_seconds(self.processes)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample.peak_rss_mb = max(self.sample.peak_rss_mb, tree_rss(self.processes) / 1e6)

    def __enter__(self) -> ResourceMonitor:
        self._cpu0 = self._cpu()
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        elapsed = time.monotonic() - self._t0
        self.sample.cpu_percent = 100.0 * (self._cpu() - self._cpu0) / elapsed if elapsed else 0.0


@dataclass
class LoadResult:
    name: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_percent: float = 0.0
    peak_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _wrk_field(pattern: str, out: str) -> re.Match[str]:
    """The first match of ``pattern`` in wrk's report; RuntimeError (with the report) if it is not there."""
    match = re.search(pattern, out)
    if match is None:
        raise RuntimeError(f"wrk's report has no {pattern!r}:\n{out}")
    return match


WRK_LUA = """
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
done = function(summary, latency, requests)
  io.write(string.format("ERRORS %d %d %d %d\\n", summary.errors.connect, summary.errors.read,
    summary.errors.status, summary.errors.timeout))
end
"""


def wrk(
    name: str,
    url: str,
    *,
    key: str = "",
    method: str = "GET",
    body: str | None = None,
    connections: int = 1,
    seconds: int = 10,
    threads: int = 1,
) -> LoadResult:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA.format(method=method, key=key, body=json.dumps(body) if body is not None else "nil"))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    os.unlink(script.name)
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    rps = float(_wrk_field(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(_wrk_field(r"(\d+) requests in", out).group(1))
    errs = sum(int(x) for x in _wrk_field(r"ERRORS (\d+) (\d+) (\d+) (\d+)", out).groups())
    return LoadResult(
        name,
        rps,
        _ms(pct["50"]),
        _ms(pct["90"]),
        _ms(pct["99"]),
        total,
        errs,  # status errors = non-2xx
    )


def _proto_args(proto: str) -> list[str]:
    """ghz reads the .proto files (Python's reflection service cannot resolve method symbols)."""
    import google.api
    import grpc_tools

    googleapis = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    return ["--proto", str(ROOT / "protos" / proto), "--import-paths", f"{ROOT / 'protos'},{googleapis},{well_known}"]


def ghz(
    name: str,
    target: str,
    call: str,
    data: dict[str, Any],
    *,
    key: str,
    connections: int = 1,
    concurrency: int = 1,
    seconds: int = 10,
    proto: str = "plutos/v1/models.proto",
) -> LoadResult:
    binary = shutil.which("ghz") or str(TOOLS / "ghz")
    out = subprocess.run(
        [
            binary,
            "--insecure",
            *_proto_args(proto),
            "--call",
            call,
            "-d",
            json.dumps(data),
            "--metadata",
            json.dumps({"authorization": f"Bearer {key}"}),
            "-c",
            str(concurrency),
            "--connections",
            str(connections),
            "-z",
            f"{seconds}s",
            "--format",
            "json",
            "--skipFirst",
            "10",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    report = json.loads(out)
    pct = {int(d["percentage"]): d["latency"] / 1e6 for d in report["latencyDistribution"] or []}
    errors = sum(v for k, v in (report.get("statusCodeDistribution") or {}).items() if k != "OK")
    return LoadResult(
        name,
        report["rps"],
        pct.get(50, float("nan")),
        pct.get(90, float("nan")),
        pct.get(99, float("nan")),
        report["count"],
        errors,
    )


def run_with_monitor(server: Server, load: Any) -> LoadResult:
    with ResourceMonitor(server.processes()) as monitor:
        result: LoadResult = load()
    result.cpu_percent = monitor.sample.cpu_percent
    result.peak_rss_mb = monitor.sample.peak_rss_mb
    return result


def store_bench_main(
    description: str, run: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, str]], *, repeat: int, name: str
) -> None:
    """The command line of the store benchmarks (bench.history_bench, bench.usage_bench): rows,
    accounts, repetitions, a SQLite file (recreated; default a temporary one), a PostgreSQL database
    to wipe and fill (or --no-pg); prints ``run``'s Markdown and writes it to --out if given."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--sqlite", help="SQLite file to (re)create (default: a temporary file)")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL database to wipe and fill")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--out", help="write the figures to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"{name}-bench-") as tmp:
        path = Path(args.sqlite) if args.sqlite else Path(tmp) / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        text = asyncio.run(run(args, path))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
