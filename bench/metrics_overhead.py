"""What operations cost on the hot path: ``POST /v1/process`` through the gateway to the mock
upstream (bench/mock_upstream.py), with wrk, against three gateways started from one config:

  (m) metrics on, request log on  — the defaults (``metrics_enabled``, ``access_log``)
  (o) metrics off, request log on — metrics' cost is (o) - (m)
  (q) metrics on, request log off — the request line's cost is (q) - (m)

They take turns for ``--rounds`` rounds and each reports its median run (this machine's speed
drifts by several percent within minutes). Each process is separate; all on loopback.

    .venv/bin/python -m bench.metrics_overhead [--duration 5] [--concurrency 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import psutil

from bench.harness import ProcessGroup, free_port
from bench.upstream_overhead import (
    INPUT,
    MODEL,
    ROOT,
    Run,
    bench_key,
    lua_script,
    measured,
    write_config,
    wrk,
    wrk_run,
)

RESULTS = ROOT / "bench" / "METRICS_RESULTS.md"

VARIANTS = {
    "metrics on, request log on (defaults)": {},
    "metrics off, request log on": {"PLUTOS_METRICS_ENABLED": "false"},
    "metrics on, request log off": {"PLUTOS_ACCESS_LOG": "false"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description="the cost of metrics and request logs on /v1/process")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="plutos-bench-metrics-"))
    mock_port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with ProcessGroup(remove=work) as procs:
        procs.mock_upstream(mock_port, env)
        config = work / "bench.toml"
        plutos = write_config(
            config,
            http_port=0,
            grpc_port=0,
            mock_port=mock_port,
            database_url=f"sqlite+aiosqlite:///{work / 'bench.db'}",
            max_connections=100,
        )
        secret = bench_key(plutos, env)
        auth = {"Authorization": f"Bearer {secret}"}
        body: dict[str, object] = {"input": INPUT, "model": MODEL, "options": {"maxTokens": 16}}
        script = lua_script(work / "process.lua", body, {"Content-Type": "application/json", **auth})
        targets: list[tuple[str, str, psutil.Process]] = []
        for name, extra in VARIANTS.items():
            http_port = free_port()
            variant_env = {**env, **extra, "PLUTOS_HTTP_PORT": str(http_port), "PLUTOS_GRPC_PORT": str(free_port())}
            log_path = work / f"gateway-{len(targets)}.log"
            proc = procs.gateway(plutos, env=variant_env, log_path=log_path, http_port=http_port, auth=auth)
            url = f"http://127.0.0.1:{http_port}/v1/process"
            httpx.post(url, json=body, headers=auth, timeout=10).raise_for_status()
            targets.append((name, url, psutil.Process(proc.pid)))
        for _, url, _ in targets:
            wrk(url, script, args.concurrency, 2)  # warm-up
        rounds: dict[str, list[Run]] = {}
        for _ in range(args.rounds):
            for name, url, server in targets:
                run = measured(server, partial(wrk_run, url, script, name, args.concurrency, args.duration))
                rounds.setdefault(name, []).append(run)
        medians = {}
        for name, runs in rounds.items():
            ordered = sorted(runs, key=lambda r: r.rps)
            medians[name] = ordered[len(ordered) // 2]
            each = ", ".join(f"{r.rps:.0f}" for r in runs)
            m = medians[name]
            print(
                f"{name:40} c={args.concurrency} {m.rps:7.0f} req/s (median of {each})  p50 {m.p50_ms:.2f} ms  "
                f"p99 {m.p99_ms:.2f} ms  server CPU {m.cpu_us:.0f} µs/req  errors {m.errors}",
                flush=True,
            )
        base, off, quiet = (medians[n] for n in VARIANTS)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        lines = [
            "# The cost of metrics and request logs on /v1/process",
            "",
            f"Command: `.venv/bin/python -m bench.metrics_overhead --duration {args.duration} "
            f"--concurrency {args.concurrency} --rounds {args.rounds}` ({when}"
            f", load {os.getloadavg()[0]:.1f}). POST /v1/process through the gateway to bench/mock_upstream.py; "
            "gateways take turns; each row is its median run.",
            "",
            "| gateway | RPS (runs) | p50 ms | p99 ms | server CPU µs/req |",
            "|---|---|---|---|---|",
        ]
        for name, m in medians.items():
            each = ", ".join(f"{r.rps:.0f}" for r in rounds[name])
            lines.append(f"| {name} | {m.rps:.0f} ({each}) | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.cpu_us:.0f} |")
        lines.append("")
        for what, other in (("metrics", off), ("request log", quiet)):
            share = 100 * (1 - base.rps / other.rps)
            cpu = base.cpu_us - other.cpu_us
            line = f"{what} cost: {share:+.1f}% of throughput, {cpu:+.0f} µs CPU/req"
            print(line)
            lines.append(f"- {line}")
        RESULTS.write_text("\n".join(lines) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
