"""`make bench-peers`: PlutosAI beside its peers, on the same mock upstream, in one run.

Targets, each a separate process on loopback, all in front of the same nginx mock upstream (a fixed
OpenAI chat completion, ``application/json``, answered by nginx's ``return``):

- ``direct``: ``POST /v1/chat/completions`` straight to the mock (the floor every "added" figure is
  measured from);
- ``litellm``: LiteLLM's proxy (pinned in bench/peers/requirements-litellm.txt), one worker, no database;
- ``portkey``: Portkey's gateway (pinned in bench/peers/package.json + package-lock.json), provider
  ``openai`` with the mock as its custom host;
- ``plutos-openai``: PlutosAI's ``/openai/v1/chat/completions`` and ``plutos-process``: its native
  ``/v1/process``, one ``plutos serve`` process with everything on: an API key (auth), a plan's rate
  and concurrency limits and monthly token quota (high enough never to refuse), the SQLite store (a
  record and a ledger row per call), metrics and the request log at their defaults; the model comes
  from its catalogue (``[[models]]``, backend ``openai-compatible``) pointing at the mock.

Every target gets the same prompt and ``max_tokens = 16``. Load: wrk (separate process), keep-alive
connections; a 10 s warm-up per target at c = 16 first, then at each concurrency (default 1, 16, 64) a
2 s warm-up per target and ``--rounds``
interleaved rounds (each target takes one turn per round); each figure is the median over the rounds.
"Added" latency is a target's median p50 / p99 minus the mock's own at the same concurrency.

The peers are installed by ``scripts/bench-peers.sh`` into ``.bench/`` (git-ignored); this module
only runs them. Writes bench/PEERS_RESULTS.md (hand-written notes below the marker are kept),
``.bench/peers.json`` (the figures, for bench/plots.py) and a file in bench/history/.

    .venv/bin/python -m bench.peers [--seconds 8] [--rounds 3] [--concurrency 1,16,64] [--only direct,portkey]

Bounded: 10 s x targets + (2 + rounds x seconds) x targets x concurrency levels of load, plus ~30 s
of start-up: about 8 minutes with the defaults.
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.harness import (
    ROOT,
    ResourceMonitor,
    free_port,
    log,
    logged_process,
    plutos_server,
    process_tree,
    stop_process,
    wait_port,
)
from bench.mock_upstream import _json_body
from bench.upstream_overhead import lua_script, parse_wrk, wrk

BENCH_DIR = ROOT / ".bench"
LITELLM_VENV = BENCH_DIR / "litellm-venv"
PORTKEY_DIR = BENCH_DIR / "portkey"
RESULTS = ROOT / "bench" / "PEERS_RESULTS.md"
DATA = BENCH_DIR / "peers.json"
NOTES_MARKER = "<!-- notes: written by hand, kept when the benchmark rewrites this file -->"
PROMPT = "Summarise the plot of a short story about a fox."
MAX_TOKENS = 16
MODEL = "bench-upstream"
WARMUP_S = 10  # each target's first warm-up
EXPECTED = "The quick brown fox jumps over the lazy dog."  # the mock's completion (bench/mock_upstream.py)


def pinned(path: Path, prefix: str) -> str:
    """The pinned version of a peer, read from the file that pins it."""
    if path.suffix == ".json":
        return str(json.loads(path.read_text())["dependencies"][prefix])
    for line in path.read_text().splitlines():
        if line.startswith(prefix):
            return line.split("==", 1)[1].strip()
    raise ValueError(f"{prefix} not pinned in {path}")


LITELLM_VERSION = pinned(ROOT / "bench" / "peers" / "requirements-litellm.txt", "litellm")
PORTKEY_VERSION = pinned(ROOT / "bench" / "peers" / "package.json", "@portkey-ai/gateway")


@dataclass
class Target:
    name: str
    label: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    processes: Callable[[], list[psutil.Process]]
    check: Callable[[dict[str, Any]], str]  # the completion text out of an answer


@dataclass
class Row:
    target: str
    label: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # the target's processes' CPU time per request, µs (median over the rounds)
    rounds_rps: list[float] = field(default_factory=list)
    added_p50_ms: float = 0.0
    added_p99_ms: float = 0.0


def _openai_text(answer: dict[str, Any]) -> str:
    return str(answer["choices"][0]["message"]["content"])


def _require(path: Path, what: str) -> None:
    if not path.exists():
        sys.exit(f"{what} is missing ({path}): run `make bench-peers`, which installs it into .bench/")


@contextlib.contextmanager
def nginx_mock(work: Path, prefix_cmd: tuple[str, ...] = ()) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """nginx (Debian's) answering every ``POST …/chat/completions`` with the fixed completion;
    ``prefix_cmd`` runs it under e.g. ``taskset -c 0``."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    _require(Path(nginx), "nginx")
    port = free_port()
    prefix = work / "nginx"
    (prefix / "logs").mkdir(parents=True)
    body = _json_body().decode()
    assert "'" not in body and "\\" not in body
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ /chat/completions$ {{
            default_type application/json;
            add_header x-request-id mock-bench;
            return 200 '{body}';
        }}
        location / {{ return 404; }}
    }}
}}
"""
    )
    extra = ["-g", "user root;"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([*prefix_cmd, nginx, "-p", str(prefix), "-c", str(conf), *extra], stdout=subprocess.DEVNULL)
    try:
        wait_port(port, 30)
        yield port, proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def litellm_proxy(work: Path, mock_port: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """LiteLLM's proxy: one worker, no database, the mock as an ``openai/`` model."""
    binary = LITELLM_VENV / "bin" / "litellm"
    _require(binary, "LiteLLM's proxy")
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        f"""model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PLUTOS_", "VIRTUAL_ENV"))}
    # The model cost map from the package itself: by default LiteLLM fetches it from the network at start.
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "DISABLE_ADMIN_UI": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
    )
    cmd = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    with logged_process(cmd, port=port, log_path=work / "litellm.log", cwd=work, env=env, timeout=180) as proc:
        yield port, proc


@contextlib.contextmanager
def portkey_gateway(work: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Portkey's gateway on Node.js (``build/start-server.js --headless``)."""
    script = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    _require(script, "Portkey's gateway")
    port = free_port()
    env = {**os.environ, "NODE_ENV": "production"}
    cmd = ["node", str(script), f"--port={port}", "--headless"]
    with logged_process(cmd, port=port, log_path=work / "portkey.log", cwd=PORTKEY_DIR, env=env, timeout=60) as proc:
        yield port, proc


def plutos_config(mock_port: int) -> str:
    return f"""
[[models]]
id = "{MODEL}"
name = "Benchmark upstream (nginx)"
backend = "openai-compatible"
base_url = "http://127.0.0.1:{mock_port}/v1"
upstream_model = "bench"
max_tokens = 4096
stream = false
pricing = {{ input_tokens = 0.01, output_tokens = 0.03 }}
"""


def chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}


JSON = {"Content-Type": "application/json"}


def run_target(target: Target, script: Path, concurrency: int, seconds: int) -> tuple[Any, float]:
    """One wrk run against ``target``: wrk's figures and the target's CPU µs per request."""
    procs = target.processes()
    with ResourceMonitor(procs) as monitor:
        out = wrk(target.url, script, concurrency, seconds)
    run = parse_wrk(out, target.name, concurrency)
    cpu_s = monitor.sample.cpu_percent / 100 * run.seconds
    return run, (1e6 * cpu_s / run.requests if run.requests else 0.0)


def measure(targets: list[Target], work: Path, levels: list[int], rounds: int, seconds: int) -> list[Row]:
    scripts = {t.name: lua_script(work / f"{t.name}.lua", t.body, t.headers) for t in targets}
    rows: list[Row] = []
    for t in targets:
        # Once, before anything is measured: Node.js compiles hot code after thousands of calls (Portkey
        # was 6x slower in its first seconds), and every target fills its pools and caches.
        log(f"warm-up {t.label} ({WARMUP_S} s at c=16)")
        run_target(t, scripts[t.name], 16, WARMUP_S)
    for c in levels:
        for t in targets:
            log(f"c={c}: warm-up {t.label} (2 s)")
            run_target(t, scripts[t.name], c, 2)
        runs: dict[str, list[tuple[Any, float]]] = {t.name: [] for t in targets}
        for r in range(rounds):
            for t in targets:
                run, cpu_us = run_target(t, scripts[t.name], c, seconds)
                runs[t.name].append((run, cpu_us))
                log(
                    f"c={c} round {r + 1}/{rounds} {t.label:38} {run.rps:8.0f} RPS  p50 {run.p50_ms:7.2f} ms  "
                    f"p99 {run.p99_ms:7.2f} ms  errors {run.errors}  CPU {cpu_us:.0f} µs/req"
                )
        med = statistics.median
        level_rows = []
        for t in targets:
            each = runs[t.name]
            level_rows.append(
                Row(
                    target=t.name,
                    label=t.label,
                    concurrency=c,
                    rps=med(r.rps for r, _ in each),
                    p50_ms=med(r.p50_ms for r, _ in each),
                    p90_ms=med(r.p90_ms for r, _ in each),
                    p99_ms=med(r.p99_ms for r, _ in each),
                    errors=sum(r.errors for r, _ in each),
                    cpu_us=med(cpu for _, cpu in each),
                    rounds_rps=[round(r.rps, 1) for r, _ in each],
                )
            )
        floor = next((row for row in level_rows if row.target == "direct"), None)
        for row in level_rows:
            if floor is not None:
                row.added_p50_ms = row.p50_ms - floor.p50_ms
                row.added_p99_ms = row.p99_ms - floor.p99_ms
        rows += level_rows
    return rows


def machine() -> str:
    import platform

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    """PlutosAI's RPS over each peer's, per concurrency, and the targets of issue 24."""
    out = []
    by = {(r.target, r.concurrency): r for r in rows}
    for c in sorted({r.concurrency for r in rows}):
        for ours in ("plutos-process", "plutos-openai"):
            for peer in ("portkey", "litellm"):
                a, b = by.get((ours, c)), by.get((peer, c))
                if a and b and b.rps:
                    out.append({"concurrency": c, "ours": ours, "peer": peer, "rps_ratio": a.rps / b.rps})
    return out


def verdicts(rows: list[Row]) -> list[str]:
    by = {(r.target, r.concurrency): r for r in rows}
    lines = []
    for ours, label in (("plutos-process", "/v1/process"), ("plutos-openai", "/openai/v1/chat/completions")):
        for c in (16, 64):
            a, b = by.get((ours, c)), by.get(("portkey", c))
            if a and b and b.rps:
                ratio = a.rps / b.rps
                lines.append(
                    f"- PlutosAI {label} at c = {c}: **{ratio:.2f}x** Portkey's RPS (target ≥ 3x): "
                    + ("met" if ratio >= 3 else "**missed**")
                )
        a, b = by.get((ours, 1)), by.get(("portkey", 1))
        if a and b and by.get(("direct", 1)):
            lines.append(
                f"- PlutosAI {label} at c = 1: added p50 **{a.added_p50_ms:.2f} ms** vs Portkey's "
                f"{b.added_p50_ms:.2f} ms (target: below Portkey's): "
                + ("met" if a.added_p50_ms < b.added_p50_ms else "**missed**")
            )
    return lines


def report(rows: list[Row], args: argparse.Namespace, meta: dict[str, Any]) -> list[str]:
    lines = [
        "# Peers, side by side: PlutosAI, Portkey's gateway, LiteLLM's proxy",
        "",
        f"Command: `{meta['command']}` — {meta['date']}, {meta['duration_s']:.0f} s in all (installs excluded).",
        "",
        f"- Machine: {meta['machine']}; load average at the start {meta['load_start']}. Everything on one box: "
        "wrk, the mock, the gateway under test (the others idle).",
        f"- Peers: LiteLLM proxy {LITELLM_VERSION} (PyPI, own venv in .bench/, `--num_workers 1`, no database), "
        f"Portkey's gateway {PORTKEY_VERSION} (npm, Node.js {meta['node']}), PlutosAI {meta['plutos']} "
        "(one process, everything on: key auth, plan limits and quota, SQLite store, metrics, request log).",
        f"- Upstream: nginx {meta['nginx']} (one worker) answering a fixed chat completion (10 completion tokens, "
        "usage included) as JSON.",
        f"- Request: the same prompt, max_tokens {MAX_TOKENS}, non-streaming; wrk, keep-alive, "
        f"{args.seconds} s per run after a {WARMUP_S} s warm-up per target and a 2 s one per concurrency; "
        f"{args.rounds} interleaved rounds; every figure is the median "
        "over the rounds (RPS of each round in the last column). Added = the target's median minus the mock's "
        "at the same concurrency.",
        "",
        "| target | c | RPS | p50 ms | p99 ms | added p50 ms | added p99 ms | errors | target CPU µs/req "
        "| RPS per round |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        added = ("—", "—") if r.target == "direct" else (f"{r.added_p50_ms:.2f}", f"{r.added_p99_ms:.2f}")
        lines.append(
            f"| {r.label} | {r.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {added[0]} | "
            f"{added[1]} | {r.errors} | {r.cpu_us:,.0f} | {', '.join(f'{x:.0f}' for x in r.rounds_rps)} |"
        )
    rat = ratios(rows)
    if rat:
        lines += ["", "PlutosAI's RPS over each peer's:", "", "| c | PlutosAI path | / Portkey | / LiteLLM |"]
        lines.append("| ---: | --- | ---: | ---: |")
        keyed = {(x["concurrency"], x["ours"], x["peer"]): x["rps_ratio"] for x in rat}
        for c in sorted({x["concurrency"] for x in rat}):
            for ours in ("plutos-process", "plutos-openai"):
                p, lt = keyed.get((c, ours, "portkey")), keyed.get((c, ours, "litellm"))
                if p is None and lt is None:
                    continue
                lines.append(f"| {c} | {ours} | {f'{p:.2f}x' if p else '—'} | {f'{lt:.1f}x' if lt else '—'} |")
    v = verdicts(rows)
    if v:
        lines += ["", "Targets (issue 24):", "", *v]
    return lines


def processes_of(proc: subprocess.Popen[bytes]) -> Callable[[], list[psutil.Process]]:
    """A target's ``processes``: ``proc`` and its descendants, read at each call."""
    return lambda: process_tree(proc.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description="PlutosAI beside LiteLLM's proxy and Portkey's gateway")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "8")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--only", default="", help="comma-separated targets (direct is always measured)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path, default=DATA, help="the figures for bench/report.py (.bench/peers.json)")
    parser.add_argument("--no-history", action="store_true", help="do not write a file in bench/history/")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: run `make bench-peers` (it installs it)")
    levels = [int(c) for c in args.concurrency.split(",")]
    only = {x for x in args.only.split(",") if x}

    def wanted(name: str) -> bool:
        return not only or name in only or name == "direct"

    started = time.monotonic()
    date = dt.datetime.now(dt.UTC)
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="plutos-peers-"))
    try:
        with contextlib.ExitStack() as stack:
            log("starting nginx (the mock upstream)")
            mock_port, mock = stack.enter_context(nginx_mock(work))
            targets = [
                Target(
                    "direct",
                    "straight to the mock (nginx)",
                    f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                    chat_body("bench"),
                    JSON,
                    processes_of(mock),
                    _openai_text,
                )
            ]
            if wanted("litellm"):
                log(f"starting LiteLLM's proxy {LITELLM_VERSION} (one worker, no database; ~20 s)")
                port, proc = stack.enter_context(litellm_proxy(work, mock_port))
                targets.append(
                    Target(
                        "litellm",
                        f"LiteLLM proxy {LITELLM_VERSION}",
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        chat_body("bench"),
                        {**JSON, "Authorization": "Bearer sk-bench"},
                        processes_of(proc),
                        _openai_text,
                    )
                )
            if wanted("portkey"):
                log(f"starting Portkey's gateway {PORTKEY_VERSION}")
                port, proc = stack.enter_context(portkey_gateway(work))
                targets.append(
                    Target(
                        "portkey",
                        f"Portkey gateway {PORTKEY_VERSION}",
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        chat_body("bench"),
                        {
                            **JSON,
                            "Authorization": "Bearer sk-bench",
                            "x-portkey-provider": "openai",
                            "x-portkey-custom-host": f"http://127.0.0.1:{mock_port}/v1",
                        },
                        processes_of(proc),
                        _openai_text,
                    )
                )
            if wanted("plutos-openai") or wanted("plutos-process"):
                log("starting PlutosAI (`plutos serve`, one process, SQLite store, an enterprise key)")
                server = stack.enter_context(plutos_server(plutos_config(mock_port)))
                auth = {**JSON, "Authorization": f"Bearer {server.key}"}
                if wanted("plutos-openai"):
                    targets.append(
                        Target(
                            "plutos-openai",
                            "PlutosAI /openai/v1/chat/completions",
                            f"http://127.0.0.1:{server.http_port}/openai/v1/chat/completions",
                            chat_body(MODEL),
                            auth,
                            server.processes,
                            _openai_text,
                        )
                    )
                if wanted("plutos-process"):
                    targets.append(
                        Target(
                            "plutos-process",
                            "PlutosAI /v1/process",
                            f"{server.base_url}/process",
                            {"input": PROMPT, "model": MODEL, "options": {"maxTokens": MAX_TOKENS}},
                            auth,
                            server.processes,
                            lambda a: str(a["output"]),
                        )
                    )
            for t in targets:
                answer = httpx.post(t.url, json=t.body, headers=t.headers, timeout=30)
                if answer.status_code != 200 or t.check(answer.json()) != EXPECTED:
                    raise RuntimeError(f"{t.label} answered {answer.status_code}: {answer.text[:500]}")
                log(f"checked {t.label}: 200, the mock's completion")
            rows = measure(targets, work, levels, args.rounds, args.seconds)
    except BaseException:
        for name in ("litellm.log", "portkey.log", "nginx/logs/error.log"):
            with contextlib.suppress(OSError):
                tail = (work / name).read_text(errors="replace")[-3000:]
                if tail.strip():
                    print(f"--- {name} (tail)\n{tail}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "date": f"{date:%Y-%m-%d %H:%M} UTC",
        "command": (
            ".venv/bin/python -m bench.peers " + " ".join(sys.argv[1:])
            if len(sys.argv) > 1
            else "make bench-peers" + (f" BENCH_SECONDS={args.seconds}" if "BENCH_SECONDS" in os.environ else "")
        ),
        "machine": machine(),
        "load_start": load_start,
        "duration_s": time.monotonic() - started,
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1],
        "plutos": "commit "
        + subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "litellm": LITELLM_VERSION,
        "portkey": PORTKEY_VERSION,
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    lines = report(rows, args, meta)
    print("\n".join(lines), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**meta, "rows": [asdict(r) for r in rows], "ratios": ratios(rows)}, indent=1))
    old = args.output.read_text() if args.output.exists() else ""
    notes = old.split(NOTES_MARKER, 1)[1] if NOTES_MARKER in old else "\n"
    args.output.write_text("\n".join(lines) + "\n\n" + NOTES_MARKER + notes)
    log(f"wrote {args.output} and {args.json} in {meta['duration_s']:.0f} s")
    if not args.no_history:
        from bench.history_files import write_history

        path = write_history("peers", date, "\n".join(lines))
        log(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
