"""A/B of two commits' gateways: POST /v1/process through the fast mock upstream, interleaved.

The working tree's gateway ("after") and the gateway of ``--base`` ("before", a git revision
extracted with ``git archive`` into a temporary folder, removed when the run ends, and run with
this venv, its own tree first on ``PYTHONPATH``) serve the same mock upstream, each with its own
SQLite store and an enterprise key. wrk loads them in turns, round after round (the order
alternates), so drift on a shared machine spreads over both; the table gives the median RPS and
p50 of the rounds and the server's CPU time per request (all its threads; it does not grow with
other work on the machine).

    .venv/bin/python -m bench.ab_gateways [--base main] [--after REV] [--duration 4] [--rounds 5]
        [--concurrency 1,16]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path
from types import FrameType

import psutil

from bench.harness import ProcessGroup, free_port
from bench.upstream_overhead import INPUT, MODEL, bench_key, lua_script, write_config, wrk_run

ROOT = Path(__file__).resolve().parent.parent


def start_gateway(
    name: str, root: Path, work: Path, mock_port: int, procs: ProcessGroup
) -> tuple[str, Path, psutil.Process]:
    """A gateway from ``root`` on free ports: its /v1/process URL, wrk script and process."""
    http, grpc_port = free_port(), free_port()
    config = work / f"{name}.toml"
    database_url = f"sqlite+aiosqlite:///{work / name}.db"
    cmd = write_config(
        config, http_port=http, grpc_port=grpc_port, mock_port=mock_port, database_url=database_url, max_connections=100
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{root}{os.pathsep}{root / 'gen' / 'python'}"}
    auth = {"Authorization": f"Bearer {bench_key(cmd, env, cwd=root, name='ab')}"}
    proc = procs.gateway(cmd, env=env, log_path=work / f"{name}.log", http_port=http, auth=auth, cwd=root)
    body: dict[str, object] = {"input": INPUT, "model": MODEL, "options": {"maxTokens": 16}}
    script = lua_script(work / f"{name}.lua", body, {"Content-Type": "application/json", **auth})
    return f"http://127.0.0.1:{http}/v1/process", script, psutil.Process(proc.pid)


def extract(revision: str, into: Path) -> Path:
    """The tree of ``revision`` (git archive) in ``into``."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="git revision of the 'before' gateway (default main)")
    parser.add_argument("--after", default="", help="git revision of the 'after' gateway (default: this tree)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per run (default 4)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    # The extracted trees, stores, configs and logs live in one temporary folder, removed however the
    # run ends (its gateways stopped first): normally, on an exception, on Ctrl-C or on SIGTERM.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="plutos-ab-", ignore_cleanup_errors=True) as tmp:
        compare(args, levels, Path(tmp))


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def compare(args: argparse.Namespace, levels: list[int], work: Path) -> None:
    """Start both gateways with their files in ``work``, load them in turns and print the table."""
    base = extract(args.base, work / "base")
    after = extract(args.after, work / "after-tree") if args.after else ROOT
    with ProcessGroup(10) as procs:
        mock_port = free_port()
        procs.mock_upstream(mock_port)
        targets = {
            f"before ({args.base})": start_gateway("before", base, work, mock_port, procs),
            f"after ({args.after or 'working tree'})": start_gateway("after", after, work, mock_port, procs),
        }
        for name, (url, script, _) in targets.items():  # warm-up
            wrk_run(url, script, name, 8, 2)
        results: dict[tuple[str, int], list[tuple[float, float, int, float]]] = {
            (n, c): [] for n in targets for c in levels
        }
        for round_ in range(args.rounds):
            for c in levels:
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for name in order:
                    url, script, proc = targets[name]
                    t0 = proc.cpu_times()
                    run = wrk_run(url, script, name, c, args.duration)
                    t1 = proc.cpu_times()
                    cpu_us = (t1.user + t1.system - t0.user - t0.system) / max(1, run.requests) * 1e6
                    results[(name, c)].append((run.rps, run.p50_ms, run.errors, cpu_us))
                    print(f"[ab] round {round_} c={c} {name}: {run.rps:.0f} RPS, {cpu_us:.0f} µs CPU/req", flush=True)
        print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
        print("| gateway | c | RPS median (rounds) | p50 ms | server CPU µs/request median (rounds) | errors |")
        print("|---|---:|---:|---:|---:|---:|")
        for (name, c), rs in results.items():
            rps = " / ".join(f"{r[0]:.0f}" for r in rs)
            cpu = " / ".join(f"{r[3]:.0f}" for r in rs)
            print(
                f"| {name} | {c} | {statistics.median(r[0] for r in rs):.0f} ({rps}) | "
                f"{statistics.median(r[1] for r in rs):.2f} | {statistics.median(r[3] for r in rs):.0f} ({cpu}) | "
                f"{sum(r[2] for r in rs)} |"
            )


if __name__ == "__main__":
    main()
