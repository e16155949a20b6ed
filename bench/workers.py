"""More cores: `plutos serve --workers 2` against one process, `POST /v1/process` through an upstream
with everything on (key auth, plan limits and quota — a private Redis shared by the workers, the
default for `--workers` without `redis_url` —, the store, metrics, the request log).

The issue asks for the 2-worker throughput "when the load generator runs elsewhere", measured on a
2-core machine "with the generator pinned to one core and the gateway's processes on the other".
Two workers on one core cannot show what a second core buys, so the protocol is:

- **A** — 1 worker: the gateway pinned to core 1 (``taskset -c 1``); wrk and the nginx mock pinned
  to core 0.
- **B** — 2 workers, the same pinning: the supervisor, both workers and their private Redis share
  core 1. What the second process costs (its own event loop, the shared limiter's Redis round trips,
  both writing the store) shows here as fewer requests per core-second.
- **C** — 2 workers unpinned (both cores), wrk and the mock still on core 0: raw, the generator
  competing with one worker.
- **D** — as B, but with ``redis-server`` hidden from the gateway's ``PATH``, so each worker counts
  limits in its own memory (not exact: the old behaviour): what exactness costs per core.
- **E** — two separate one-worker gateways on core 1, each with its own store and in-memory limits
  and half of the connections (two wrk processes on core 0): two processes that share nothing. It is
  the protocol's ceiling for *any* two processes — what time-sharing one core costs by itself
  (context switches, two working sets in one core's caches, half the connections per event loop) —
  so ``2 x per-core(E) / per-core(A)`` is the best 2-worker figure this measurement can show here.

The per-core figure is requests per second of gateway CPU (all its processes and threads, Redis
included): RPS / (CPU seconds / wall second). With the generator elsewhere, one process is bound by
one core (one event loop, one GIL), and N workers by N cores, so the projected 2-worker speed-up is
``2 x per-core(B) / per-core(A)`` — it is 2.0 when a second worker costs nothing. The setups take
turns, ``--rounds`` times; each figure is the median.

    .venv/bin/python -m bench.workers [--seconds 8] [--rounds 3] [--concurrency 64] [--database-url URL]

Writes bench/WORKERS_RESULTS.md (notes below the marker kept), ``.bench/workers.json`` (for
bench/report.py) and a file in bench/history/. About 2 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ROOT, ResourceMonitor, Server, log, plutos_server
from bench.peers import MAX_TOKENS, MODEL, PROMPT, machine, nginx_mock, plutos_config
from bench.upstream_overhead import lua_script, parse_wrk

RESULTS = ROOT / "bench" / "WORKERS_RESULTS.md"
DATA = ROOT / ".bench" / "workers.json"
NOTES_MARKER = "<!-- notes: written by hand, kept when the benchmark rewrites this file -->"
TASKSET = shutil.which("taskset") or "taskset"
GENERATOR = (TASKSET, "-c", "0")
GATEWAY = (TASKSET, "-c", "1")


@dataclass
class Setup:
    name: str
    label: str
    workers: int
    pinned: bool
    exact: bool = True  # False: redis-server hidden from the gateway, each worker limits on its own
    gateways: int = 1  # > 1: that many separate gateways, the connections split between them


SETUPS = [
    Setup("A", "1 worker, gateway on core 1", 1, True),
    Setup("B", "2 workers, gateway on core 1", 2, True),
    Setup("C", "2 workers, gateway on both cores", 2, False),
    Setup("D", "2 workers, per-process limits, core 1", 2, True, exact=False),
    Setup("E", "2 separate 1-worker gateways, core 1", 1, True, exact=False, gateways=2),
]


def run(servers: list[Server], scripts: list[Path], concurrency: int, seconds: int) -> dict[str, Any]:
    """wrk against each of ``servers`` at once (``concurrency`` split evenly), the gateways' CPU
    sampled meanwhile: RPS and latencies (the worst p50/p99 of the wrk processes) and RPS per core."""
    each = concurrency // len(servers)
    threads = 1 if len(servers) > 1 else min(2, concurrency)
    processes = [p for server in servers for p in server.processes()]
    with ResourceMonitor(processes) as monitor:
        loads = [
            subprocess.Popen(
                [
                    *GENERATOR,
                    *("wrk", f"-t{threads}", f"-c{each}", f"-d{seconds}s", "--latency", "--timeout", "10s"),
                    *("-s", str(script), f"{server.base_url}/process"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for server, script in zip(servers, scripts, strict=True)
        ]
        outputs = [load.communicate(timeout=seconds + 60)[0] for load in loads]
    results = [parse_wrk(out, "process", each) for out in outputs]
    rps = sum(r.rps for r in results)
    cores = monitor.sample.cpu_percent / 100
    return {
        "rps": rps,
        "p50_ms": max(r.p50_ms for r in results),
        "p99_ms": max(r.p99_ms for r in results),
        "errors": sum(r.errors for r in results),
        "gateway_cores": cores,
        "per_core_rps": rps / cores if cores else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="--workers 2 against one process, per core")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--database-url", default="", help="the gateways' store (default: a fresh SQLite file each)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-history", action="store_true")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None or shutil.which("wrk") is None:
        sys.exit("needs 2 cores, taskset (util-linux) and wrk")
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server: the workers' default limiter is a private Redis")
    started = time.monotonic()
    date = dt.datetime.now(dt.UTC)
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="plutos-workers-"))
    env = {k: v for k, v in os.environ.items() if k != "PLUTOS_REDIS_URL"}
    if args.database_url:
        env["PLUTOS_DATABASE_URL"] = args.database_url
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in SETUPS}
    try:
        with contextlib.ExitStack() as stack:
            log("starting nginx (the mock upstream) on core 0")
            mock_port, _ = stack.enter_context(nginx_mock(work, GENERATOR))
            servers: dict[str, list[Server]] = {}
            for s in SETUPS:
                log(f"starting {s.name}: {s.label}")
                # D and E: no redis-server on the gateway's PATH, so no private Redis: the in-memory
                # limiter in each process (limits not exact) — the references for what exact limits cost.
                setup_env = env if s.exact else {**env, "PATH": str(work / "no-redis")}
                servers[s.name] = [
                    stack.enter_context(
                        plutos_server(
                            plutos_config(mock_port),
                            workers=s.workers,
                            env=setup_env,
                            prefix_cmd=GATEWAY if s.pinned else (),
                        )
                    )
                    for _ in range(s.gateways)
                ]
            scripts: dict[str, list[Path]] = {}
            for s in SETUPS:
                scripts[s.name] = []
                for i, server in enumerate(servers[s.name]):
                    body = {"input": PROMPT, "model": MODEL, "options": {"maxTokens": MAX_TOKENS}}
                    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"}
                    answer = httpx.post(f"{server.base_url}/process", json=body, headers=headers, timeout=30)
                    answer.raise_for_status()
                    scripts[s.name].append(lua_script(work / f"{s.name}{i}.lua", body, headers))
                log(f"warm-up {s.name} (5 s)")
                run(servers[s.name], scripts[s.name], args.concurrency, 5)
            for r in range(args.rounds):
                for s in SETUPS:
                    figures = run(servers[s.name], scripts[s.name], args.concurrency, args.seconds)
                    runs[s.name].append(figures)
                    log(
                        f"round {r + 1}/{args.rounds} {s.name} {s.label:34} {figures['rps']:7.0f} RPS  "
                        f"gateway {figures['gateway_cores']:.2f} cores  {figures['per_core_rps']:7.0f} RPS per core  "
                        f"p50 {figures['p50_ms']:.2f} ms  errors {figures['errors']}"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    summary = {
        name: {k: med(x[k] for x in each) for k in each[0]} | {"rounds_rps": [round(x["rps"]) for x in each]}
        for name, each in runs.items()
    }
    a, b, c, d, e = summary["A"], summary["B"], summary["C"], summary["D"], summary["E"]
    speedup = 2 * b["per_core_rps"] / a["per_core_rps"] if a["per_core_rps"] else 0.0
    store = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite (a file per gateway)"
    command = ".venv/bin/python -m bench.workers" + (" " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else "")
    table = [
        "| setup | RPS | gateway cores used | RPS per gateway core | p50 ms | p99 ms | errors | RPS per round |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in SETUPS:
        x = summary[s.name]
        table.append(
            f"| {s.name}: {s.label} | {x['rps']:,.0f} | {x['gateway_cores']:.2f} | {x['per_core_rps']:,.0f} | "
            f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['errors']:.0f} | "
            f"{', '.join(str(v) for v in x['rounds_rps'])} |"
        )
    table += [
        "",
        "| target (issue 24) | measured | status |",
        "| --- | --- | --- |",
        f"| `--workers 2` ≥ 1.7x one process, generator elsewhere (per core: 2 x B / A) | **{speedup:.2f}x** "
        f"({b['per_core_rps']:,.0f} vs {a['per_core_rps']:,.0f} RPS per gateway core); raw on 2 shared cores (C / A): "
        f"{c['rps'] / a['rps']:.2f}x | " + ("met" if speedup >= 1.7 else "**missed**") + " |",
        f"| (reference, limits not exact) the same with each worker limiting on its own (2 x D / A) "
        f"| {2 * d['per_core_rps'] / a['per_core_rps'] if a['per_core_rps'] else 0:.2f}x | — |",
        f"| (the protocol's ceiling) two gateways sharing nothing on core 1 (2 x E / A) "
        f"| {2 * e['per_core_rps'] / a['per_core_rps'] if a['per_core_rps'] else 0:.2f}x; B reaches "
        f"{b['per_core_rps'] / e['per_core_rps'] if e['per_core_rps'] else 0:.0%} of E per core | — |",
        "| limits exact across workers | private Redis by default (tests/test_workers_limits.py: "
        "30 of 90 admitted for a 30/min plan over 30 connections) | met |",
    ]
    meta = {
        "date": f"{date:%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "command": command,
        "load_start": load_start,
        "store": store,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "duration_s": time.monotonic() - started,
    }
    lines = [
        "# More cores: `plutos serve --workers 2` against one process",
        "",
        f"Command: `{command}` — {meta['date']}, {meta['duration_s']:.0f} s in all.",
        "",
        f"- Machine: {meta['machine']}; load average at the start {load_start}.",
        f"- `POST /v1/process` through the nginx mock upstream (bench/peers.py's), max_tokens {MAX_TOKENS}, "
        f"wrk at c = {args.concurrency} with keep-alive; everything on: key auth, plan limits and quota "
        "(1 worker: in memory; 2 workers: their private Redis), the store "
        f"({store}), metrics, the request log.",
        "- Pinning: wrk and nginx on core 0 (`taskset -c 0`); A, B and D: the gateway's every process and thread "
        "on core 1 (`taskset -c 1`, inherited by the workers and the private Redis); C: the gateway unpinned. "
        "D: redis-server hidden from the gateway's PATH, so each worker limits on its own (not exact; reference). "
        "E: two separate one-worker gateways on core 1 (each its own SQLite file and in-memory limits), half "
        "the connections each from its own wrk: two processes sharing nothing, the protocol's ceiling.",
        f"- {args.seconds} s per run after a 5 s warm-up; A to E take turns, {args.rounds} rounds; medians. "
        "Gateway cores used = the gateway's CPU seconds (all processes, Redis included) per wall second.",
        "",
        *table,
    ]
    print("\n".join(lines), flush=True)
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(
        json.dumps({**meta, "summary": summary, "runs": runs, "speedup": speedup, "table": table}, indent=1)
    )
    old = args.output.read_text() if args.output.exists() else ""
    notes = old.split(NOTES_MARKER, 1)[1] if NOTES_MARKER in old else "\n"
    args.output.write_text("\n".join(lines) + "\n\n" + NOTES_MARKER + notes)
    log(f"wrote {args.output} and {DATA}")
    if not args.no_history:
        from bench.history_files import write_history

        log(f"wrote {write_history('workers', date, chr(10).join(lines)).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
