"""Gateway overhead in front of an OpenAI-compatible upstream.

The same load, from a separate load generator (wrk), sent
  (a) straight to a fast mock upstream (``POST /v1/chat/completions``, streamed answer), and
  (b) through the gateway: REST bridge → gRPC service (in process) → openai-compatible backend →
      the same mock (``POST /v1/process``), with auth and persistence on (an enterprise key;
      records and ledger rows written to the store),
  (g) the same through a gateway whose bridge goes over a loopback gRPC channel
      (``bridge_transport = "grpc"``), as the bare path does,
  (e) through the bare path the issue calibrates its targets with (bench/bare_path.py: Starlette →
      grpc.aio → aiohttp, nothing else), to the same mock,
at concurrency 1 and 64; RPS, p50/p90/p99 latency, the server's CPU time per request and peak RSS
and the differences are written to bench/UPSTREAM_RESULTS.md. Every process (mock, gateway, bare
path, wrk) is separate; all on loopback.

    .venv/bin/python -m bench.upstream_overhead [--duration 10] [--concurrency 1,64] [--profile]

``--profile`` also samples the gateway with py-spy during one more run at the highest concurrency
and lists the functions where it spent most time (pip install py-spy).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import psutil

from bench.harness import ProcessGroup, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "UPSTREAM_RESULTS.md"
MODEL = "bench-upstream"
NOTES_MARKER = "<!-- notes: written by hand, kept when the benchmark rewrites this file -->"
INPUT = "Summarise the plot of a short story about a fox."


@dataclass
class Run:
    target: str
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0  # the server's CPU time (all its threads) per request, µs
    cpu_percent: float = 0.0  # of one core, over the run
    peak_rss_mb: float = 0.0
    note: str = ""  # e.g. the runs a median was taken from


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str, target: str, concurrency: int) -> Run:
    pct = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.M)}
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not (done and rps and len(pct) == 3):
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Run(
        target=target,
        concurrency=concurrency,
        requests=int(done.group(1)),
        seconds=_ms(done.group(2) + done.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=pct["50"],
        p90_ms=pct["90"],
        p99_ms=pct["99"],
        errors=errors,
    )


def lua_script(path: Path, body: Mapping[str, object] | None, headers: dict[str, str]) -> Path:
    lines = (
        ['wrk.method = "GET"']
        if body is None
        else ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    )
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: Path, concurrency: int, seconds: int) -> str:
    threads = min(2, concurrency)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return done.stdout


def bench_key(plutos: list[str], env: dict[str, str], *, cwd: Path = ROOT, name: str = "bench") -> str:
    """Migrate the gateway's store and create the key ``name`` (enterprise plan), running ``plutos``
    (e.g. ``python -m gateway.cli --config X``) in ``cwd``; its secret."""
    subprocess.run([*plutos, "migrate"], cwd=cwd, env=env, check=True, capture_output=True)
    created = subprocess.run(
        [*plutos, "keys", "create", "--plan", "enterprise", "--name", name, "--json"],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(created.stdout)["key"])


def bare_path_command(http_port: int, grpc_port: int, mock_port: int, *extra: str) -> list[str]:
    """bench/bare_path.py on these ports, in front of the mock upstream."""
    return [
        sys.executable,
        "-m",
        "bench.bare_path",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--upstream",
        f"http://127.0.0.1:{mock_port}/v1",
        *extra,
    ]


def wrk_run(url: str, script: Path, name: str, concurrency: int, seconds: int) -> Run:
    return parse_wrk(wrk(url, script, concurrency, seconds), name, concurrency)


GRPC_TARGET = "gRPC Process (ghz)"
GATEWAY_TARGET = "through the gateway"
GATEWAY_GRPC_TARGET = "gateway, bridge over loopback gRPC"
OPENAI_TARGET = "gateway, /openai/v1 chat"
BARE_TARGET = "bare path (Starlette → grpc.aio → aiohttp)"
BARE_TUNED_TARGET = "bare path, gateway's GC settings"


def measured(server: psutil.Process | None, load: Callable[[], Run]) -> Run:
    """Run ``load`` while sampling ``server``: CPU time per request, CPU %, peak RSS."""
    if server is None:
        return load()
    from bench.harness import ResourceMonitor

    before = server.cpu_times()
    with ResourceMonitor([server]) as monitor:
        run = load()
    after = server.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    run.cpu_us = 1e6 * cpu / run.requests if run.requests else 0.0
    run.cpu_percent = monitor.sample.cpu_percent
    run.peak_rss_mb = monitor.sample.peak_rss_mb
    return run


def ghz_binary() -> str | None:
    found = shutil.which("ghz") or str(ROOT / ".tools" / "bin" / "ghz")
    return found if Path(found).exists() else None


def ghz_process(grpc_port: int, secret: str, concurrency: int, seconds: int) -> Run:
    """ProcessingService.Process with ghz (a separate Go process), the body of the REST runs."""
    from bench.harness import ghz

    run = partial(
        ghz,
        GRPC_TARGET,
        f"127.0.0.1:{grpc_port}",
        "plutos.v1.ProcessingService.Process",
        {"input": INPUT, "model": MODEL, "options": {"maxTokens": 16}},
        key=secret,
        concurrency=concurrency,
        connections=1 if concurrency == 1 else 4,
        proto="plutos/v1/processing.proto",
    )
    run(seconds=2)  # warm-up
    r = run(seconds=seconds)
    return Run(GRPC_TARGET, concurrency, r.requests, seconds, r.rps, r.p50_ms, r.p90_ms, r.p99_ms, r.errors)


def write_config(
    path: Path, *, http_port: int, grpc_port: int, mock_port: int, database_url: str, max_connections: int
) -> list[str]:
    """A gateway config at ``path``: these ports and store, an enterprise plan with limits out of the
    way, the model MODEL routed to the mock upstream on ``mock_port``; the command line that runs
    the gateway's CLI on it (``[*cmd, "serve"]``, ``[*cmd, "migrate"]``)."""
    big = 10**9
    path.write_text(
        f"""
[server]
http_port = {http_port}
grpc_port = {grpc_port}
database_url = "{database_url}"

[plans.enterprise]
requests_per_minute = {big}
requests_per_hour = {big}
requests_per_day = {big}
concurrent_requests = 100000
monthly_tokens = {big * 1000}

[[models]]
id = "{MODEL}"
name = "Benchmark upstream"
backend = "openai-compatible"
base_url = "http://127.0.0.1:{mock_port}/v1"
upstream_model = "bench"
max_tokens = 4096
max_connections = {max_connections}
pricing = {{ input_tokens = 0.01, output_tokens = 0.03 }}
"""
    )
    return [sys.executable, "-m", "gateway.cli", "--config", str(path)]


def profile_gateway(pid: int, seconds: int, url: str, script: Path, concurrency: int, out: Path) -> list[str]:
    """Sample the gateway with py-spy while wrk loads it; the functions with the most samples."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = ROOT / "bench" / "results" / "upstream_gateway_profile.txt"  # kept (git-ignored) for a closer look
    raw.parent.mkdir(exist_ok=True)
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(raw),
            "--nonblocking",
            "--gil",  # only samples holding the GIL: the Python work that bounds one process
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)
    wrk(url, script, concurrency, seconds)
    spy.wait(seconds + 30)
    return summarize_profile(raw, seconds, concurrency)


# Where a sample's time goes: the first layer (in this order) found anywhere in its stack.
LAYERS = [
    ("upstream HTTP call: server/backends/ (openai_compat.py, http_client.py)", ("server/backends/",)),
    (
        "store: group commit (server/store/), SQLAlchemy, aiosqlite",
        ("server/store/", "sqlalchemy/", "aiosqlite/", "asyncpg/"),
    ),
    ("REST bridge: uvicorn, Starlette, JSON <-> protobuf (bridge/)", ("bridge/", "starlette/", "uvicorn/")),
    (
        "gRPC server side: interceptors, auth, handler (server/services, server/interceptors)",
        ("server/services/", "server/interceptors/", "server/authenticator.py", "grpc_interceptor/"),
    ),
    ("gRPC core and grpc.aio (the REST->gRPC hop, both ends)", ("grpc/",)),
]


def summarize_profile(raw: Path, seconds: int, concurrency: int) -> list[str]:
    own: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[_short(frames[-1])] += count
        layer = next(
            (name for name, marks in LAYERS if any(m in f for f in frames for m in marks)),
            "event loop: uvloop, gRPC C core (Cython frames py-spy cannot see), other",
        )
        layers[layer] += count
    lines = [
        f"py-spy (--nonblocking --gil: samples of whichever thread holds the GIL), {total} samples at 200 Hz "
        f"over {seconds} s, "
        f"concurrency {concurrency}; each sample counted once, in the first layer of this list found in its stack:",
        "",
    ]
    lines += [f"- {100 * layers[name] / total:5.1f}%  {name}" for name, _ in LAYERS]
    rest = "event loop: uvloop, gRPC C core (Cython frames py-spy cannot see), other"
    lines += [f"- {100 * layers[rest] / total:5.1f}%  {rest}", "", "Top functions by own time:", ""]
    lines += [f"- {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(12)]
    return lines


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" → "function (file path from site-packages or the repo)"
    frame = re.sub(r":\d+\)$", ")", frame)
    frame = frame.replace(str(ROOT) + "/", "")
    return re.sub(r"\(.*site-packages/", "(", frame)


def main() -> None:
    parser = argparse.ArgumentParser(description="gateway overhead in front of an OpenAI-compatible upstream")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated connection counts (default 1,64)")
    parser.add_argument("--database-url", default="", help="store for the gateway (default: a fresh SQLite file)")
    parser.add_argument("--profile", action="store_true", help="also sample the gateway with py-spy")
    parser.add_argument("--max-connections", type=int, default=100, help="the upstream pool size (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of gateway and bare paths (median)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="plutos-bench-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{work / 'bench.db'}"
    mock_port, http_port, grpc_port = free_port(), free_port(), free_port()
    config = work / "bench.toml"
    plutos = write_config(
        config,
        http_port=http_port,
        grpc_port=grpc_port,
        mock_port=mock_port,
        database_url=database_url,
        max_connections=args.max_connections,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with ProcessGroup(remove=work) as procs:
        procs.mock_upstream(mock_port, env)
        secret = bench_key(plutos, env)
        auth = {"Authorization": f"Bearer {secret}"}
        gateway = procs.gateway(plutos, env=env, log_path=work / "gateway.log", http_port=http_port, auth=auth)
        # (g) the same gateway with bridge_transport = "grpc": the bridge reaches the service over a
        # loopback gRPC channel, as the bare path does, instead of calling it in process.
        hop_http, hop_grpc = free_port(), free_port()
        hop_env = {
            **env,
            "PLUTOS_HTTP_PORT": str(hop_http),
            "PLUTOS_GRPC_PORT": str(hop_grpc),
            "PLUTOS_BRIDGE_TRANSPORT": "grpc",
        }
        hop = procs.gateway(plutos, env=hop_env, log_path=work / "gateway-grpc.log", http_port=hop_http, auth=auth)
        bare_http, bare_grpc = free_port(), free_port()
        tuned_http, tuned_grpc = free_port(), free_port()

        def start_bare(http: int, grpc_port_: int, *extra: str) -> subprocess.Popen[bytes]:
            return procs.add(
                subprocess.Popen(
                    bare_path_command(http, grpc_port_, mock_port, *extra), cwd=ROOT, env=env, stdout=subprocess.DEVNULL
                )
            )

        bare = start_bare(bare_http, bare_grpc)
        tuned = start_bare(tuned_http, tuned_grpc, "--tune-gc")

        # (a) the request the gateway itself sends upstream; (b) the gateway's own API.
        upstream_body: dict[str, object] = {
            "model": "bench",
            "messages": [{"role": "user", "content": INPUT}],
            "temperature": 0.7,
            "top_p": 1.0,
            "max_tokens": 16,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        direct = (
            "direct to the mock",
            f"http://127.0.0.1:{mock_port}/v1/chat/completions",
            lua_script(work / "direct.lua", upstream_body, {"Content-Type": "application/json"}),
        )
        gateway_body: dict[str, object] = {"input": INPUT, "model": MODEL, "options": {"maxTokens": 16}}
        through = (
            GATEWAY_TARGET,
            f"http://127.0.0.1:{http_port}/v1/process",
            lua_script(work / "gateway.lua", gateway_body, {"Content-Type": "application/json", **auth}),
        )
        through_grpc = (
            GATEWAY_GRPC_TARGET,
            f"http://127.0.0.1:{hop_http}/v1/process",
            lua_script(work / "gateway_grpc.lua", gateway_body, {"Content-Type": "application/json", **auth}),
        )
        # (h) the same call through the OpenAI-compatible API, on the same gateway.
        openai_body: dict[str, object] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": INPUT}],
            "max_tokens": 16,
        }
        through_openai = (
            OPENAI_TARGET,
            f"http://127.0.0.1:{http_port}/openai/v1/chat/completions",
            lua_script(work / "openai.lua", openai_body, {"Content-Type": "application/json", **auth}),
        )
        # (c) a reference: the gateway's cheapest authenticated call (no upstream, no store).
        models = (
            "gateway, GET /v1/models",
            f"http://127.0.0.1:{http_port}/v1/models",
            lua_script(work / "models.lua", None, auth),
        )
        bare_path = (
            BARE_TARGET,
            f"http://127.0.0.1:{bare_http}/v1/process",
            lua_script(work / "bare.lua", gateway_body, {"Content-Type": "application/json"}),
        )
        bare_tuned = (
            BARE_TUNED_TARGET,
            f"http://127.0.0.1:{tuned_http}/v1/process",
            lua_script(work / "bare_tuned.lua", gateway_body, {"Content-Type": "application/json"}),
        )
        check = httpx.post(through[1], json=gateway_body, headers=auth, timeout=10)
        check.raise_for_status()
        assert check.json()["usage"]["completionTokens"] == 10, check.text
        openai_check = httpx.post(through_openai[1], json=openai_body, headers=auth, timeout=10)
        assert openai_check.json()["choices"][0]["message"]["content"] == check.json()["output"], openai_check.text
        hop_check = httpx.post(through_grpc[1], json=gateway_body, headers=auth, timeout=10)
        assert hop_check.json()["output"] == check.json()["output"], hop_check.text
        for proc, (_, url, _) in ((bare, bare_path), (tuned, bare_tuned)):
            deadline = time.monotonic() + 30
            while True:
                try:
                    bare_check = httpx.post(url, json=gateway_body, timeout=10)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            assert bare_check.json()["output"] == check.json()["output"], bare_check.text
        watched = {
            GATEWAY_TARGET: psutil.Process(gateway.pid),
            GATEWAY_GRPC_TARGET: psutil.Process(hop.pid),
            OPENAI_TARGET: psutil.Process(gateway.pid),
            "gateway, GET /v1/models": psutil.Process(gateway.pid),
            BARE_TARGET: psutil.Process(bare.pid),
            BARE_TUNED_TARGET: psutil.Process(tuned.pid),
        }

        runs: list[Run] = []
        load = os.getloadavg()
        for concurrency in levels:
            for _, url, script in (direct, through, through_openai, through_grpc, bare_path, bare_tuned, models):
                wrk(url, script, concurrency, 2)  # warm-up: connections, caches
            # The gateway and the bare paths take turns, ``rounds`` times, and each reports its
            # median run: this machine's speed drifts by ±15% within minutes, which one run each
            # would read as a difference between them.
            rounds: dict[str, list[Run]] = {}
            for _ in range(args.rounds):
                for name, url, script in (through, through_openai, through_grpc, bare_path, bare_tuned):
                    run = measured(watched.get(name), partial(wrk_run, url, script, name, concurrency, args.duration))
                    rounds.setdefault(name, []).append(run)
            for name, url, script in (direct, through, through_openai, through_grpc, bare_path, bare_tuned, models):
                if name in rounds:
                    each = sorted(rounds[name], key=lambda r: r.rps)
                    run = each[len(each) // 2]
                    run.note = "median of " + ", ".join(f"{r.rps:.0f}" for r in rounds[name]) + " RPS"
                else:
                    run = measured(watched.get(name), partial(wrk_run, url, script, name, concurrency, args.duration))
                print(
                    f"{name[:22]:22} c={concurrency:<3} {run.rps:9.0f} req/s  p50 {run.p50_ms:7.2f} ms  "
                    f"p90 {run.p90_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  errors {run.errors}"
                    + (f"  server CPU {run.cpu_us:.0f} µs/req, RSS {run.peak_rss_mb:.0f} MB" if run.cpu_us else "")
                    + (f"  ({run.note})" if run.note else ""),
                    flush=True,
                )
                runs.append(run)
            # (d) the same Process call over gRPC, straight to the gateway's gRPC port: the REST
            # bridge's HTTP/JSON side costs (g) - (d).
            if ghz_binary() is not None:
                grpc_run = measured(
                    psutil.Process(gateway.pid), partial(ghz_process, grpc_port, secret, concurrency, args.duration)
                )
                print(
                    f"{grpc_run.target:22} c={concurrency:<3} {grpc_run.rps:9.0f} req/s  p50 {grpc_run.p50_ms:7.2f} ms"
                    f"  p90 {grpc_run.p90_ms:7.2f} ms  p99 {grpc_run.p99_ms:7.2f} ms  errors {grpc_run.errors}",
                    flush=True,
                )
                runs.append(grpc_run)
        with httpx.Client(timeout=30) as client:
            usage = client.get(f"http://127.0.0.1:{http_port}/v1/usage", headers=auth).json()["usage"]
        profile = (
            profile_gateway(gateway.pid, args.duration, through[1], through[2], max(levels), work)
            if args.profile
            else []
        )
        write_results(args.output, runs, args, load, usage, profile, database_url)
        print(f"wrote {args.output}")


def write_results(
    path: Path,
    runs: list[Run],
    args: argparse.Namespace,
    load: tuple[float, float, float],
    usage: dict[str, object],
    profile: list[str],
    database_url: str,
) -> None:
    store = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite (file)"
    out = [
        "# Gateway overhead in front of an OpenAI-compatible upstream",
        "",
        "Command: `.venv/bin/python -m bench.upstream_overhead"
        + (f" --duration {args.duration}" if args.duration != 10 else "")
        + (f" --concurrency {args.concurrency}" if args.concurrency != "1,64" else "")
        + (" --profile" if args.profile else "")
        + (f" --max-connections {args.max_connections}" if args.max_connections != 100 else "")
        + "`",
        "",
        f"- Load: wrk 4 (separate process), {args.duration} s per run after a 2 s warm-up, POST with a JSON body, "
        "keep-alive connections.",
        "- Upstream: bench/mock_upstream.py (separate process, raw asyncio + uvloop), answering a streamed "
        "completion of 10 content chunks + usage at once.",
        "- (a) `POST /v1/chat/completions` straight to the mock, with the body the gateway would send.",
        f"- (b) `POST /v1/process` through REST bridge → gRPC service → openai-compatible backend → the mock; "
        "the bridge calls the service's handlers in process (bridge_transport = local, the default: the same "
        "interceptor chain, no loopback hop); auth on "
        f"(enterprise key), persistence on ({store}: a record and a ledger row per request, group commit); "
        "one gateway process; upstream pool of "
        f"{args.max_connections} connections.",
        "- (c) `GET /v1/models` on the gateway: REST bridge → gRPC service → auth → a prebuilt answer; the floor "
        "under (b), without upstream call or store.",
        "- (d) `ProcessingService.Process` over gRPC with ghz (separate process; 4 connections at c>1), the same "
        "request as (b) without the REST bridge: the HTTP/JSON side of the bridge costs (g) - (d); (b) - (d) is "
        "a REST client of the gateway against a gRPC client over loopback. ghz counts calls still in "
        "flight when its timer ends as errors.",
        "- (e) the bare path of the issue (bench/bare_path.py, separate process): Starlette → grpc.aio → aiohttp "
        "to the same mock, no auth, limits or store; the issue quotes ~1,550 RPS for it and sets the gateway's "
        "target at 1,250 (81% of it), so (b) / (e) is the machine-independent reading of that target.",
        "- (f) the same bare path with the gateway's garbage-collector settings (server/gctune.py: gc.freeze "
        "after start-up, young collections every 10,000 allocations): (b) / (f) leaves out what the gateway "
        "gains from that setting alone.",
        "- (g) the gateway as (b) with bridge_transport = grpc: the bridge reaches the service over a loopback "
        "gRPC channel, as the bare path (e) does. (g) / (e) is the like-for-like reading of the target; (b) / (e) "
        "is what a user of the default gets.",
        "- (h) `POST /openai/v1/chat/completions` (the OpenAI-compatible API) on the gateway of (b), the same "
        "input and max_tokens: the same generation path, stored and billed the same way; (h) / (b) is that "
        "surface's cost.",
        f"- (b), (h), (g), (e) and (f) take turns, {args.rounds} rounds per concurrency; each row is its median run "
        "(the RPS of every round in the last column): this machine's speed drifts by ±15% within minutes.",
        "- Server CPU is the server process's CPU time (all threads) per request during the run; RSS its peak.",
        f"- Machine: {os.cpu_count()} cores shared by wrk, the mock and the gateway (and, here, other work: load "
        f"average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start). Figures are for comparison on this "
        "machine, not capacity claims.",
        f"- Sanity check: GET /v1/usage after the runs counted {usage.get('totalRequests')} requests, "
        f"{usage.get('totalTokens')} tokens for the bench key (every gateway request was stored and billed).",
        "",
        "| target | concurrency | requests | RPS | p50 ms | p90 ms | p99 ms | errors | server CPU µs/req "
        "| server CPU % | server peak RSS MB | rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in runs:
        server = f"{r.cpu_us:.0f} | {r.cpu_percent:.0f} | {r.peak_rss_mb:.0f}" if r.cpu_us else "— | — | —"
        out.append(
            f"| {r.target} | {r.concurrency} | {r.requests} | {r.rps:.0f} | {r.p50_ms:.2f} | "
            f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {server} | {r.note} |"
        )
    out += [
        "",
        "Overhead of the gateway (b - a, and g - a for the loopback-gRPC bridge; c is the bridge + auth floor, "
        "without upstream or store):",
        "",
    ]
    out += [
        "| concurrency | bridge transport | RPS (gateway / a) | p50 added ms | p90 added ms | p99 added ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    by = {(r.target, r.concurrency): r for r in runs}
    for c in sorted({r.concurrency for r in runs}):
        a = by.get(("direct to the mock", c))
        for label, target in (("in process (b)", GATEWAY_TARGET), ("loopback gRPC (g)", GATEWAY_GRPC_TARGET)):
            b = by.get((target, c))
            if a and b:
                out.append(
                    f"| {c} | {label} | {b.rps:.0f} / {a.rps:.0f} ({100 * b.rps / a.rps:.1f}%) | "
                    f"{b.p50_ms - a.p50_ms:.2f} | {b.p90_ms - a.p90_ms:.2f} | {b.p99_ms - a.p99_ms:.2f} |"
                )
    bare_rows = [
        (
            c,
            by[(GATEWAY_TARGET, c)],
            by[(BARE_TARGET, c)],
            by.get((BARE_TUNED_TARGET, c)),
            by.get((GATEWAY_GRPC_TARGET, c)),
        )
        for c in sorted({r.concurrency for r in runs})
        if (GATEWAY_TARGET, c) in by and (BARE_TARGET, c) in by
    ]
    if bare_rows:
        out += [
            "",
            "Against the bare path (b vs e; the issue's target: b at ≥ 81% of e's RPS with everything on; g vs e "
            "is the same comparison with the bridge over loopback gRPC, as in e):",
            "",
            "| concurrency | RPS gateway / bare (e) | RPS gateway / bare with the gateway's GC settings (f) "
            "| RPS gateway over loopback gRPC (g) / bare (e) | p50 ms gateway / g / bare "
            "| server CPU µs/req gateway / g / bare |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {c} | {b.rps:.0f} / {e.rps:.0f} (**{100 * b.rps / e.rps:.0f}%**) | "
            + (f"{b.rps:.0f} / {f.rps:.0f} (**{100 * b.rps / f.rps:.0f}%**)" if f else "—")
            + " | "
            + (f"{g.rps:.0f} / {e.rps:.0f} (**{100 * g.rps / e.rps:.0f}%**)" if g else "—")
            + f" | {b.p50_ms:.2f} / {g.p50_ms if g else float('nan'):.2f} / {e.p50_ms:.2f} | "
            f"{b.cpu_us:.0f} / {g.cpu_us if g else float('nan'):.0f} / {e.cpu_us:.0f} "
            f"({e.cpu_us and b.cpu_us / e.cpu_us:.2f}x) |"
            for c, b, e, f, g in bare_rows
        ]
    openai_rows = [
        (c, by[(GATEWAY_TARGET, c)], by[(OPENAI_TARGET, c)])
        for c in sorted({r.concurrency for r in runs})
        if (GATEWAY_TARGET, c) in by and (OPENAI_TARGET, c) in by
    ]
    if openai_rows:
        out += [
            "",
            "The OpenAI-compatible API against the reference's (h vs b; the issue's target: within 10%):",
            "",
            "| concurrency | RPS /openai/v1/chat/completions (h) / /v1/process (b) | p50 ms h / b | p99 ms h / b "
            "| server CPU µs/req h / b |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {c} | {h.rps:.0f} / {b.rps:.0f} (**{100 * h.rps / b.rps:.0f}%**) | {h.p50_ms:.2f} / {b.p50_ms:.2f} | "
            f"{h.p99_ms:.2f} / {b.p99_ms:.2f} | {h.cpu_us:.0f} / {b.cpu_us:.0f} |"
            for c, b, h in openai_rows
        ]
    bridge_rows = [
        (c, by[(GATEWAY_TARGET, c)], by.get((GATEWAY_GRPC_TARGET, c)), by[(GRPC_TARGET, c)])
        for c in sorted({r.concurrency for r in runs})
        if (GATEWAY_TARGET, c) in by and (GRPC_TARGET, c) in by
    ]
    if bridge_rows:
        out += [
            "",
            "REST against gRPC clients (d): the bridge's HTTP/JSON side is g - d; b - d is what REST costs "
            "with the default in-process bridge (negative: faster than a gRPC client over loopback):",
            "",
            "| concurrency | RPS REST in process (b) / REST over loopback gRPC (g) / gRPC (d) "
            "| p50 added ms b - d | p50 added ms g - d |",
            "| ---: | ---: | ---: | ---: |",
        ]
        out += [
            f"| {c} | {b.rps:.0f} / {g.rps if g else float('nan'):.0f} / {d.rps:.0f} | {b.p50_ms - d.p50_ms:.2f} | "
            f"{(g.p50_ms - d.p50_ms) if g else float('nan'):.2f} |"
            for c, b, g, d in bridge_rows
        ]
    if profile:
        out += ["", "## Where the gateway spends its time", "", *profile]
    # Hand-written notes below the marker survive a re-run.
    notes = ""
    if path.exists() and NOTES_MARKER in (previous := path.read_text()):
        notes = previous[previous.index(NOTES_MARKER) :]
    path.write_text("\n".join(out) + "\n" + ("\n" + notes if notes else ""))


if __name__ == "__main__":
    main()
