"""Instructions per request (callgrind): the gateway's cost in a unit that does not move with the
machine's load or speed, beside the issue's bare Starlette → grpc.aio → aiohttp path.

Wall-clock figures on a shared 2-core VM move by ±15% between back-to-back runs; instruction
counts agree within a few percent. Each server runs under
``valgrind --tool=callgrind --instr-atstart=no`` (a separate process, loopback only); after a
warm-up, instrumentation is switched on (``callgrind_control -i on``), wrk sends
``POST /v1/process`` for a fixed time at concurrency 16, and the instructions of all the server's
threads are divided by the requests it answered. Kernel time (system calls, the loopback TCP
stack) is not counted.

    .venv/bin/python -m bench.instructions [--seconds 20] [--rounds 2]

Writes bench/INSTRUCTIONS_RESULTS.md. Needs valgrind (apt-get install valgrind) and wrk.

``--streams N`` measures instructions per streamed chunk instead: the gateway alone (``plutos serve``,
one process, SQLite, everything on) under callgrind, in front of bench/concurrent_streams.py's Go
mock upstream (a chunk every 50 ms); N concurrent ``/v1/stream`` calls of ``--chunks`` chunks each
(the Go load client, which checks every chunk arrived), instrumentation on only while they run;
all the gateway's instructions divided by the chunks delivered (the calls' own start and end are
spread over their chunks: ~1/``--chunks`` of a call each). Printed, and written to ``--output``
only when one is given.

    .venv/bin/python -m bench.instructions --streams 5 [--chunks 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ProcessGroup, free_port
from bench.upstream_overhead import INPUT, MODEL, bare_path_command, bench_key, lua_script, write_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "INSTRUCTIONS_RESULTS.md"
CONCURRENCY = 16


def log(message: str) -> None:
    print(f"[instructions] {message}", flush=True)


def wait_port(port: int, proc: subprocess.Popen[bytes], within: float = 300) -> None:
    import socket

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"port {port} did not open in {within}s")


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def wrk_requests(url: str, script: Path, seconds: int) -> tuple[int, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not done:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return int(done.group(1)), int(bad.group(1)) if bad else 0


def measure(pid: int, out_dir: Path, url: str, script: Path, seconds: int) -> tuple[float, int]:
    """Instructions per request over one ``seconds`` run (instrumentation on just for it)."""
    for old in out_dir.glob(f"cg.{pid}.out.*"):
        old.unlink()
    control(pid, "-z")
    control(pid, "-i", "on")
    requests, bad = wrk_requests(url, script, seconds)
    control(pid, "-i", "off")
    control(pid, "-d")
    time.sleep(2)
    total = 0
    for dump in out_dir.glob(f"cg.{pid}.out.*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    if bad:
        raise RuntimeError(f"{bad} of {requests} requests failed: the figure would not mean anything")
    return total / requests, requests


def run_target(
    name: str,
    cmd: list[str],
    port: int,
    url: str,
    script: Path,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
) -> list[float]:
    out_dir = work / name.split()[0]
    out_dir.mkdir()
    log(f"{name}: starting under callgrind (slow: a minute or two)")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_dir}/cg.%p.out", *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        log(f"{name}: warm-up 8 s")
        wrk_requests(url, script, 8)
        figures = []
        for i in range(args.rounds):
            per_request, requests = measure(proc.pid, out_dir, url, script, args.seconds)
            log(f"{name}: round {i + 1}: {requests} requests, {per_request / 1e6:.2f} M instructions per request")
            figures.append(per_request)
        return figures
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def per_chunk(args: argparse.Namespace) -> None:
    """Instructions per streamed chunk (``--streams``): see the module's docstring."""
    from bench.concurrent_streams import build_tools, gateway_config, mock_upstream, run_load

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    mock_bin, load_bin = build_tools()
    work = Path(tempfile.mkdtemp(prefix="plutos-instr-streams-"))
    http_port, grpc_port = free_port(), free_port()
    figures: list[float] = []
    with mock_upstream(mock_bin, 50) as (_, mock_port):
        config = work / "streams.toml"
        config.write_text(gateway_config(mock_port=mock_port, redis_url="", pool=args.streams + 100))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PLUTOS_CONFIG": str(config),
            "PLUTOS_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'bench.db'}",
        }
        plutos = [sys.executable, "-m", "gateway.cli"]
        key = bench_key(plutos, env)
        serve = [*plutos, "serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
        out_dir = work / "gateway"
        out_dir.mkdir()
        log(f"gateway: starting under callgrind (slow: a minute or two); {args.streams} streams x {args.chunks} chunks")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_dir}/cg.%p.out", *serve],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(http_port, proc)
            url = f"http://127.0.0.1:{http_port}/v1/stream"
            run_load(load_bin, url, "reference", key, streams=args.streams, chunks=20, ramp=1.0)  # warm-up
            for i in range(args.rounds):
                for old in out_dir.glob(f"cg.{proc.pid}.out.*"):
                    old.unlink()
                control(proc.pid, "-z")
                control(proc.pid, "-i", "on")
                run = run_load(load_bin, url, "reference", key, streams=args.streams, chunks=args.chunks, ramp=1.0)
                control(proc.pid, "-i", "off")
                control(proc.pid, "-d")
                time.sleep(2)
                summary = run.summary
                if summary["errors"] or summary["missing_chunks"]:
                    raise RuntimeError(f"streams failed, the figure would not mean anything: {summary}")
                total = sum(
                    int(line.split()[1])
                    for dump in out_dir.glob(f"cg.{proc.pid}.out.*")
                    for line in dump.read_text(errors="replace").splitlines()
                    if line.startswith("totals:")
                )
                figures.append(total / summary["chunks"])
                log(f"round {i + 1}: {summary['chunks']} chunks, {figures[-1] / 1e3:.1f} k instructions per chunk")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if args.keep_dumps is not None:  # for callgrind_annotate
                args.keep_dumps.mkdir(parents=True, exist_ok=True)
                for dump in out_dir.glob("cg.*.out*"):
                    shutil.copy(dump, args.keep_dumps / dump.name)
            shutil.rmtree(work, ignore_errors=True)
    line = (
        f"instructions per streamed chunk (/v1/stream, {args.streams} streams x {args.chunks} chunks, a chunk every "
        f"50 ms): {', '.join(f'{x / 1e3:.1f} k' for x in figures)}; median {statistics.median(figures) / 1e3:.1f} k"
    )
    print(line)
    if args.output_given:
        args.output.write_text(f"# Instructions per streamed chunk (callgrind)\n\n{line}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="seconds per measured round (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per target (default 2)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--streams", type=int, default=0, help="instructions per streamed chunk, with N streams")
    parser.add_argument("--chunks", type=int, default=300, help="chunks per stream with --streams (default 300)")
    parser.add_argument("--keep-dumps", type=Path, default=None, help="with --streams: copy callgrind's dumps here")
    args = parser.parse_args()
    args.output_given = args.output is not None
    if args.output is None:
        args.output = RESULTS
    if args.streams:
        per_chunk(args)
        return
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install valgrind wrk)")
    work = Path(tempfile.mkdtemp(prefix="plutos-instr-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mock_port, http_port, grpc_port, bare_http, bare_grpc = (free_port() for _ in range(5))
    config = work / "bench.toml"
    plutos = write_config(
        config,
        http_port=http_port,
        grpc_port=grpc_port,
        mock_port=mock_port,
        database_url=f"sqlite+aiosqlite:///{work / 'bench.db'}",
        max_connections=100,
    )
    with ProcessGroup(remove=work) as procs:
        procs.mock_upstream(mock_port, env)
        secret = bench_key(plutos, env)
        body: dict[str, object] = {"input": INPUT, "model": MODEL, "options": {"maxTokens": 16}}
        gateway_script = lua_script(
            work / "gateway.lua", body, {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
        )
        bare_script = lua_script(work / "bare.lua", body, {"Content-Type": "application/json"})
        bare = run_target(
            "bare path",
            bare_path_command(bare_http, bare_grpc, mock_port),
            bare_http,
            f"http://127.0.0.1:{bare_http}/v1/process",
            bare_script,
            args,
            work,
            env,
        )
        gateway = run_target(
            "gateway",
            [*plutos, "serve"],
            http_port,
            f"http://127.0.0.1:{http_port}/v1/process",
            gateway_script,
            args,
            work,
            env,
        )
    b, g = statistics.median(bare), statistics.median(gateway)
    lines = [
        "# Instructions per request (callgrind)",
        "",
        "Command: `.venv/bin/python -m bench.instructions"
        + (f" --seconds {args.seconds}" if args.seconds != 20 else "")
        + (f" --rounds {args.rounds}" if args.rounds != 2 else "")
        + "`",
        "",
        f"- `POST /v1/process` (the body of bench/upstream_overhead.py), wrk at concurrency {CONCURRENCY}, "
        f"{args.seconds} s per round after an 8 s warm-up, to bench/mock_upstream.py; each server under "
        "callgrind with instrumentation on only during the rounds; all its threads counted; a fresh SQLite "
        "file for the gateway (auth, limits, persistence on).",
        "- Kernel time is not counted; the figure is the server's own work per request, whatever the "
        "machine's speed or load. Background work (timers, pollers) is included and spread over the requests.",
        "",
        "| server | rounds (M instructions per request) | median | vs bare path |",
        "| --- | --- | ---: | ---: |",
        f"| bare path (Starlette → grpc.aio → aiohttp) | {', '.join(f'{x / 1e6:.2f}' for x in bare)} | "
        f"{b / 1e6:.2f} M | 1.00x |",
        f"| gateway (REST bridge → gRPC service in process → auth, limits → upstream → store) | "
        f"{', '.join(f'{x / 1e6:.2f}' for x in gateway)} | {g / 1e6:.2f} M | {g / b:.2f}x |",
        "",
    ]
    notes = ""
    marker = "<!-- notes:"
    if args.output.exists() and marker in (previous := args.output.read_text()):
        notes = previous[previous.index(marker) :]
    args.output.write_text("\n".join(lines) + ("\n" + notes if notes else ""))
    print("\n".join(lines))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
