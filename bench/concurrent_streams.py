"""Concurrent streams: thousands of SSE streams held open through the gateway at once.

The load: ``--streams`` concurrent ``POST /v1/stream`` calls (and the same through
``POST /openai/v1/chat/completions`` with ``"stream": true``) to a catalogue model served by a mock
OpenAI-compatible upstream that sends one chunk every ``--interval-ms`` for ``--duration`` seconds.
The streams open evenly over ``--ramp`` seconds and are held to their end. The gateway is
``plutos serve`` (``--workers``), with everything on (auth, rate and concurrency limits, quota,
records and ledger written to the store), on SQLite (in-memory limiter) or PostgreSQL + Redis.

The mock upstream and the load client are Go programs (``bench/go/streams/``, built into
``.bench/bin/``), so that on a small machine the gateway gets the CPU. The mock stamps each chunk
with the time it was due (``|<seq>|<Unix ns>|`` in the content); the client checks that every stream got
every chunk, once and in order, and takes each chunk's delay: arrival minus the time it was due,
i.e. what the gateway (and loopback) add to the mock's own schedule.

Measured per run: errors; complete streams and missing chunks; per-chunk delay p50/p90/p99/max;
RSS (sum over the gateway's processes) against open streams while the streams open, whose slope is
the memory per open stream; then, after all clients leave — and, in a second round, after they all
disconnect at once mid-stream — how long until the limiter's concurrency slots
(``plutos_concurrency_slots_in_flight``, and the Redis slot sets with the Redis limiter), the
gateway's sockets to the upstream and its RSS are back at the idle baseline taken before the load.

    .venv/bin/python -m bench.concurrent_streams [--streams 5000] [--duration 30] [--interval-ms 50]
        [--ramp 10] [--store sqlite|postgres] [--workers 1] [--endpoints stream,openai]
        [--output bench/STREAMS_RESULTS.md] [--json .bench/streams.json] [--append]

``--streams``, ``--store`` and ``--workers`` take comma-separated lists: every combination is run
(each endpoint in each); ``--append`` adds the runs to those already in the JSON file.
``--database-url`` / ``--redis-url`` choose PostgreSQL and Redis (defaults: the test services, Redis
database 13).

The JSON file (for plots; ``--json``) is one object::

    {
      "schema": 1,
      "date": "2026-12-01T01:00:00Z", "machine": "...", "command": "...",
      "targets": {"errors": 0, "added_p99_ms": 20, "rss_per_stream_kib": 30, "recovery_s": 5},
      "runs": [
        {
          "date": "2026-12-01T01:00:00Z",
          "endpoint": "/v1/stream", "store": "sqlite", "workers": 1,
          "streams": 5000, "chunks_per_stream": 600, "interval_ms": 50, "ramp_s": 10,
          "loadavg_before": [1m, 5m, 15m], "loadavg_after": [1m, 5m, 15m],
          "errors": 0, "error_kinds": {"status 503: ...": 3},
          "complete_streams": 5000, "missing_chunks": 0, "out_of_order": 0,
          "chunks_received": 3000000, "events_per_s": 100000.0,
          "delay_ms": {"p50": ..., "p90": ..., "p99": ..., "p999": ..., "max": ...},
          "delay_histogram_ms": [[bucket upper bound ms, count], ...],
          "rss_idle_mb": ..., "rss_peak_mb": ...,
          "rss_per_stream_kib": ...,              # least-squares slope while the streams open
          "samples": [[t_s, open_streams, rss_bytes], ...],   # RSS against open streams, every 0.25 s
          "records": {"expected": n, "stored": n, "seconds": s},  # both rounds' calls in GET /v1/usage
          "cpu_s": ..., "cpu_us_per_chunk": ...,  # the gateway's CPU (all processes) over the run
          "client_cpu_us_per_chunk": ..., "mock_cpu_s": ...,  # the Go client's and mock's CPU
          "recovery": {
            "leave": {"slots": [idle, after], "upstream_connections": [idle, after], "upstream_bound": n,
                      "rss_mb": [idle, when the clients left, after], "seconds": {"slots": s,
                      "upstream_connections": s, "rss": s}},   # null: not back within --recovery-wait s
            "disconnect": {...the same, after every client closed at once mid-stream; its RSS idle
                           level is the one after the first round (CPython keeps freed memory)...}
          }
        },
        ...
      ],
      "direct": {...the same figures for the load client straight to the mock (no gateway)...}
    }

Nothing here is a test: the figures are compared with the targets in the Markdown report only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import psutil

from bench.harness import Server, plutos_server, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".bench" / "bin"
GO_SOURCE = ROOT / "bench" / "go" / "streams"
RESULTS = ROOT / "bench" / "STREAMS_RESULTS.md"
JSON_RESULTS = ROOT / ".bench" / "streams.json"
MODEL = "bench-streams"
NOTES_MARKER = "<!-- notes: written by hand, kept when the benchmark rewrites this file -->"
TARGETS = {"errors": 0, "added_p99_ms": 20, "rss_per_stream_kib": 30, "recovery_s": 5}
ENDPOINTS = {"stream": ("/v1/stream", "reference"), "openai": ("/openai/v1/chat/completions", "openai")}
DEFAULT_PG = "postgresql+asyncpg://plutos:plutos@127.0.0.1:5432/plutos_test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"


def log(message: str) -> None:
    print(f"[streams] {message}", flush=True)


def build_tools() -> tuple[Path, Path]:
    """``go build`` the mock upstream and the load client into .bench/bin (incremental)."""
    if shutil.which("go") is None:
        sys.exit("Go is needed to build the mock upstream and the load client (bench/go/streams)")
    BIN.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("mock", "load"):
        binary = BIN / f"streams-{name}"
        subprocess.run(["go", "build", "-o", str(binary), f"./{name}"], cwd=GO_SOURCE, check=True)
        out.append(binary)
    return out[0], out[1]


@contextlib.contextmanager
def mock_upstream(binary: Path, interval_ms: int) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [str(binary), "-addr", "127.0.0.1:0", "-interval", f"{interval_ms}ms"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the mock upstream did not start: {line!r}")
        yield proc, int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait()


@dataclass
class Gateway:
    """``plutos serve`` (bench/harness.py's Server) in front of the mock upstream on ``mock_port``."""

    server: Server
    mock_port: int
    redis_url: str
    workers: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def key(self) -> str:
        return self.server.key

    def rss(self) -> int:
        return self.server.rss()

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds()

    def upstream_connections(self) -> int:
        """The gateway's TCP sockets to the mock upstream (any state but closed)."""
        count = 0
        for p in self.server.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                for c in p.net_connections(kind="tcp"):
                    if c.raddr and c.raddr.port == self.mock_port and c.status != psutil.CONN_CLOSE:
                        count += 1
        return count

    def slots(self) -> int:
        """Concurrency slots held: the gateway's gauge (summed over workers) or, with the Redis
        limiter, the live members of the Redis slot sets, whichever is larger."""
        held = 0
        try:
            text = httpx.get(f"{self.base}/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith("plutos_concurrency_slots_in_flight "):
                    held = round(float(line.split()[1]))
        except httpx.HTTPError:
            held = -1
        if self.redis_url:
            held = max(held, redis_slots(self.redis_url))
        return held


def redis_slots(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        now_ms = int(time.time() * 1000)
        # redis-py types the sync client's replies as ResponseT (Awaitable | Any): ZCOUNT answers an int.
        return sum(cast(int, client.zcount(k, now_ms, "+inf")) for k in client.scan_iter("plutos:cc:*"))
    finally:
        client.close()


def gateway_config(*, mock_port: int, redis_url: str, pool: int) -> str:
    big = 10**9
    return f"""
[server]
redis_url = "{redis_url}"

# The bench key's plan must admit every stream: its concurrency limit is the number of streams a
# key may hold open at once (the default enterprise plan allows 100).
[plans.enterprise]
requests_per_minute = {big}
requests_per_hour = {big}
requests_per_day = {big}
concurrent_requests = 1000000
monthly_tokens = {big * 1000}

[[models]]
id = "{MODEL}"
name = "Concurrent-streams benchmark upstream"
backend = "openai-compatible"
base_url = "http://127.0.0.1:{mock_port}/v1"
upstream_model = "bench"
max_tokens = 100000
# One upstream connection per open stream (HTTP/1.1): the pool must hold them all.
max_connections = {pool}
pricing = {{ input_tokens = 0.01, output_tokens = 0.03 }}
"""


@contextlib.contextmanager
def gateway(
    mock_port: int, *, store: str, workers: int, pool: int, database_url: str, redis_url: str
) -> Iterator[Gateway]:
    """The gateway on ``store`` (sqlite: a fresh file and the in-memory limiter; postgres: the
    PostgreSQL and Redis given), once every worker serves; its log is kept in .bench/."""
    if store == "sqlite":
        database, redis_url = None, ""
    else:
        database = database_url
    config = gateway_config(mock_port=mock_port, redis_url=redis_url, pool=pool)
    # The last gateway's log, for a look at what its errors were.
    keep_log = ROOT / ".bench" / "streams-gateway.log"
    with plutos_server(config, workers, database_url=database, keep_log=keep_log) as server:
        (ROOT / ".bench" / "streams-gateway.pid").write_text(f"{server.proc.pid}\n")  # for py-spy and the like
        yield Gateway(server, mock_port, redis_url, workers)


@dataclass
class LoadRun:
    summary: dict[str, Any]
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, open, rss bytes)
    cpu_s: float = 0.0


def run_load(
    load_bin: Path,
    url: str,
    api: str,
    key: str,
    *,
    streams: int,
    chunks: int,
    ramp: float,
    abort_after: float = 0.0,
    gw: Gateway | None = None,
) -> LoadRun:
    """Run the Go load client; while it runs, pair each progress line with the gateway's RSS."""
    cmd = [
        str(load_bin),
        "-url",
        url,
        "-api",
        api,
        "-key",
        key,
        "-model",
        MODEL,
        "-streams",
        str(streams),
        "-chunks",
        str(chunks),
        "-ramp",
        f"{ramp}s",
    ]
    if abort_after:
        cmd += ["-abort-after", f"{abort_after}s"]
    cpu0 = gw.cpu_seconds() if gw else 0.0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    samples: list[tuple[float, int, int]] = []
    summary: dict[str, Any] = {}
    for line in proc.stdout:
        obj = json.loads(line)
        if obj.get("final"):
            summary = obj
        elif gw is not None:
            samples.append((round(obj["t"], 3), int(obj["open"]), gw.rss()))
    proc.wait()
    if not summary:
        raise RuntimeError(f"the load client ended without a summary (exit {proc.returncode})")
    return LoadRun(summary, samples, (gw.cpu_seconds() - cpu0) if gw else 0.0)


def slope_kib(samples: list[tuple[float, int, int]]) -> float | None:
    """Least-squares slope of RSS against open streams over the samples taken while streams were
    opening (up to the first sample at the peak count), in KiB per stream."""
    if not samples:
        return None
    peak = max(s[1] for s in samples)
    ramp = []
    for s in samples:
        ramp.append(s)
        if s[1] >= peak:
            break
    if len(ramp) < 3 or peak == 0:
        return None
    xs = [float(s[1]) for s in ramp]
    ys = [float(s[2]) for s in ramp]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx / 1024


@dataclass
class Idle:
    slots: int
    upstream: int
    rss: int


def idle_state(gw: Gateway) -> Idle:
    return Idle(gw.slots(), gw.upstream_connections(), gw.rss())


def recovery(gw: Gateway, baseline: Idle, wait: float, idle_pool: int, rss_baseline: int) -> dict[str, Any]:
    """Poll until slots, upstream sockets and RSS are back at the baseline (or ``wait`` s pass).

    Back means: slots at the baseline's count; upstream sockets at most the baseline's or the idle
    pool's bound (kept-alive connections), whichever is larger; RSS within 10% of what the load
    added above ``rss_baseline``, or 8 MiB, whichever is larger."""
    started = time.monotonic()
    seconds: dict[str, float | None] = {"slots": None, "upstream_connections": None, "rss": None}
    peak_rss = gw.rss()
    upstream_bound = max(baseline.upstream, idle_pool * gw.workers)
    last = baseline
    while time.monotonic() - started < wait:
        now = idle_state(gw)
        last = now
        elapsed = round(time.monotonic() - started, 2)
        rss_bound = rss_baseline + max(8 << 20, (peak_rss - rss_baseline) // 10)
        checks = {
            "slots": now.slots == baseline.slots,
            "upstream_connections": now.upstream <= upstream_bound,
            "rss": now.rss <= rss_bound,
        }
        for name, ok in checks.items():
            if ok and seconds[name] is None:
                seconds[name] = elapsed
            elif not ok:
                seconds[name] = None
        if all(v is not None for v in seconds.values()):
            break
        time.sleep(0.2)
    return {
        "slots": [baseline.slots, last.slots],
        "upstream_connections": [baseline.upstream, last.upstream],
        "upstream_bound": upstream_bound,
        "rss_mb": [round(rss_baseline / 2**20, 1), round(peak_rss / 2**20, 1), round(last.rss / 2**20, 1)],
        "seconds": seconds,
    }


def stored_requests(gw: Gateway) -> int:
    """The key's requests this month as GET /v1/usage counts them (every call is recorded, billed
    for what it produced, however it ended)."""
    r = httpx.get(f"{gw.base}/v1/usage", headers={"Authorization": f"Bearer {gw.key}"}, timeout=30)
    r.raise_for_status()
    return int(r.json()["usage"]["totalRequests"])


def records_stored(gw: Gateway, before: int, expected: int, wait: float) -> dict[str, Any]:
    """Wait (up to ``wait`` s) until ``expected`` more requests are recorded than ``before``."""
    started = time.monotonic()
    stored = stored_requests(gw) - before
    while stored < expected and time.monotonic() - started < wait:
        time.sleep(0.5)
        stored = stored_requests(gw) - before
    return {"expected": expected, "stored": stored, "seconds": round(time.monotonic() - started, 1)}


def one_run(load_bin: Path, gw: Gateway, endpoint: str, args: argparse.Namespace, idle_pool: int) -> dict[str, Any]:
    path, api = ENDPOINTS[endpoint]
    url = f"{gw.base}{path}"
    chunks = max(1, round(args.duration * 1000 / args.interval_ms))
    warm = min(args.streams, 200)
    log(f"{path}: warm-up, {warm} streams of 5 chunks")
    run_load(load_bin, url, api, gw.key, streams=warm, chunks=5, ramp=1.0)
    time.sleep(2)
    baseline = idle_state(gw)
    stored_before = stored_requests(gw)
    load_before = os.getloadavg()
    log(
        f"{path}: {args.streams} streams x {chunks} chunks every {args.interval_ms} ms, opened over {args.ramp}s "
        f"(idle: RSS {baseline.rss / 2**20:.0f} MiB, {baseline.upstream} upstream sockets, {baseline.slots} slots)"
    )
    main = run_load(load_bin, url, api, gw.key, streams=args.streams, chunks=chunks, ramp=args.ramp, gw=gw)
    load_after = os.getloadavg()
    leave = recovery(gw, baseline, args.recovery_wait, idle_pool, baseline.rss)
    s = main.summary
    log(
        f"{path}: {s['complete_streams']}/{args.streams} complete, {s['errors']} errors, "
        f"{s['missing_chunks']} missing chunks, delay p99 {s['delay_ms']['p99']:.1f} ms; "
        f"back to idle: {leave['seconds']}"
    )
    time.sleep(1)
    warm_rss = gw.rss()  # the idle level after one round: CPython keeps much of what it freed
    abort_after = args.ramp + min(5.0, args.duration / 2)
    log(f"{path}: {args.streams} streams again, all closed at once {abort_after:.0f}s in")
    cut = run_load(
        load_bin, url, api, gw.key, streams=args.streams, chunks=chunks, ramp=args.ramp, abort_after=abort_after
    )
    disconnect = recovery(gw, baseline, args.recovery_wait, idle_pool, warm_rss)
    log(f"{path}: after the mass disconnect ({cut.summary['aborted_streams']} aborted): {disconnect['seconds']}")
    # Every call admitted is recorded (a refusal, e.g. 503 with no limiter, is not a call that ran).
    admitted = args.streams - int(s["refused_streams"])
    admitted += int(cut.summary["started"]) - int(cut.summary["refused_streams"])
    records = records_stored(gw, stored_before, admitted, args.recovery_wait)
    log(f"{path}: requests recorded for the key: {records}")
    peak = max((r for _, _, r in main.samples), default=0)
    elapsed = main.samples[-1][0] if main.samples else 0.0
    return {
        "endpoint": path,
        "store": "sqlite" if not gw.redis_url else "postgres+redis",
        "workers": gw.workers,
        "streams": args.streams,
        "chunks_per_stream": chunks,
        "interval_ms": args.interval_ms,
        "ramp_s": args.ramp,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "errors": s["errors"],
        "error_kinds": s["error_kinds"],
        "complete_streams": s["complete_streams"],
        "missing_chunks": s["missing_chunks"],
        "out_of_order": s["out_of_order"],
        "chunks_received": s["chunks"],
        "events_per_s": round(s["chunks"] / elapsed, 1) if elapsed else None,
        "delay_ms": s["delay_ms"],
        "delay_histogram_ms": s["delay_histogram_ms"],
        "rss_idle_mb": round(baseline.rss / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_per_stream_kib": _round(slope_kib(main.samples)),
        "cpu_s": round(main.cpu_s, 1),
        "cpu_us_per_chunk": round(1e6 * main.cpu_s / s["chunks"], 1) if s["chunks"] else None,
        "client_cpu_us_per_chunk": round(1e6 * s["cpu_s"] / s["chunks"], 1) if s.get("cpu_s") and s["chunks"] else None,
        "samples": main.samples,
        "recovery": {"leave": leave, "disconnect": disconnect},
        "records": records,
        "disconnect_errors": cut.summary["errors"],
        "disconnect_aborted": cut.summary["aborted_streams"],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def direct_run(load_bin: Path, mock_port: int, args: argparse.Namespace) -> dict[str, Any]:
    """The load client straight to the mock: the delay floor of loopback, mock and client."""
    chunks = max(1, round(args.duration * 1000 / args.interval_ms))
    log(f"straight to the mock: {args.streams} streams x {chunks} chunks")
    run = run_load(
        load_bin,
        f"http://127.0.0.1:{mock_port}/v1/chat/completions",
        "openai",
        "",
        streams=args.streams,
        chunks=chunks,
        ramp=args.ramp,
    )
    s = run.summary
    return {
        "streams": args.streams,
        "errors": s["errors"],
        "complete_streams": s["complete_streams"],
        "delay_ms": s["delay_ms"],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def _ok(value: bool) -> str:
    return "✅" if value else "❌"


def _secs(value: float | None) -> str:
    return "not within the wait" if value is None else f"{value:.1f}"


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    t = report["targets"]
    out = [
        "# Concurrent streams",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
        f"- command: `{report['command']}`",
        "- load: N concurrent streams, one chunk every *interval* ms for "
        f"{report['duration_s']} s each (the mock upstream and the load client in Go, on the same machine), opened "
        "evenly over N / 500 s",
        "",
        f"Targets: {t['errors']} errors; every stream gets every chunk; added per-chunk delay p99 ≤ "
        f"{t['added_p99_ms']} ms; RSS per open stream ≤ {t['rss_per_stream_kib']} KiB; slots, upstream connections "
        f"and memory back at the idle baseline within {t['recovery_s']} s after the clients leave and after they "
        "all disconnect at once.",
        "",
        "| streams, chunk every | endpoint | store | workers | loadavg (1m, after) | errors | complete streams "
        "| peak open streams | missing chunks "
        "| chunk delay p50 / p99 / max ms | gateway CPU µs / chunk | RSS / stream KiB | RSS idle → peak → "
        "after MiB | back to idle after leave s (slots / upstream / RSS) | after mass disconnect s "
        "(slots / upstream / RSS) | calls recorded (both rounds) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in report["runs"]:
        d = r["delay_ms"]
        leave, cut = r["recovery"]["leave"]["seconds"], r["recovery"]["disconnect"]["seconds"]
        per = r["rss_per_stream_kib"]
        out.append(
            f"| {r['streams']}, {r['interval_ms']} ms | {r['endpoint']} | {r['store']} | {r['workers']} "
            f"| {r['loadavg_after'][0]:.2f} | "
            f"{r['errors']} {_ok(r['errors'] == 0)} | {r['complete_streams']}/{r['streams']} "
            f"{_ok(r['complete_streams'] == r['streams'])} | {max((x[1] for x in r['samples']), default=0)} | "
            f"{r['missing_chunks']} | "
            f"{d['p50']:.1f} / {d['p99']:.1f} {_ok(d['p99'] <= t['added_p99_ms'])} / {d['max']:.0f} | "
            f"{r['cpu_us_per_chunk']} | "
            f"{'—' if per is None else f'{per:.1f}'} {_ok(per is not None and per <= t['rss_per_stream_kib'])} | "
            f"{r['rss_idle_mb']:.0f} → {r['rss_peak_mb']:.0f} → {r['recovery']['leave']['rss_mb'][2]:.0f} | "
            + " / ".join(_secs(leave[k]) for k in ("slots", "upstream_connections", "rss"))
            + f" {_ok(all(v is not None and v <= t['recovery_s'] for v in leave.values()))} | "
            + " / ".join(_secs(cut[k]) for k in ("slots", "upstream_connections", "rss"))
            + f" {_ok(all(v is not None and v <= t['recovery_s'] for v in cut.values()))} | "
            + (f"{r['records']['stored']}/{r['records']['expected']} |" if r.get("records") else "— |")
        )
    direct = report.get("direct")
    if direct:
        d = direct["delay_ms"]
        out += [
            "",
            f"Straight to the mock (no gateway; the floor of loopback, mock and client): {direct['streams']} streams, "
            f"{direct['errors']} errors, chunk delay p50 / p99 / max {d['p50']:.2f} / {d['p99']:.2f} / "
            f"{d['max']:.1f} ms (loadavg {direct['loadavg_after'][0]:.2f}).",
        ]
    out += [
        "",
        "The chunk delay is the client's arrival time minus the time the mock was due to send it (stamped in "
        "the chunk): what the "
        "gateway adds to the mock's own schedule, plus loopback. RSS per stream is the least-squares slope of the "
        "gateway's RSS (all its processes) against open streams while they open. Errors count streams that failed "
        "(non-200, `event: error`, broken or incomplete). Peak open streams: the most streams the client held "
        "open at once (a stream is open from its response's headers, which come with its first chunk; a gateway "
        "that cannot keep up admits new streams late, so fewer are open at once). After the mass disconnect, "
        "RSS is compared with the idle "
        "level after the first round (CPython's allocator keeps most of what a burst freed: the first round shows "
        "how much). Raw figures and the RSS samples: "
        f"`{report['json']}` (format in bench/concurrent_streams.py's docstring).",
    ]
    notes = ""
    if path.exists() and NOTES_MARKER in (previous := path.read_text()):
        notes = previous[previous.index(NOTES_MARKER) :]
    path.write_text("\n".join(out) + "\n" + ("\n" + notes if notes else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description="concurrent SSE streams through the gateway")
    parser.add_argument("--streams", default="5000", help="concurrent streams; a list runs each: 1000,5000")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of chunks per stream (default 30)")
    parser.add_argument("--interval-ms", type=int, default=50, help="ms between two chunks (default 50)")
    parser.add_argument("--ramp", type=float, default=None, help="seconds to open all streams (default N/500)")
    parser.add_argument("--store", default="sqlite", help="sqlite, postgres (PostgreSQL + Redis), or both: a,b")
    parser.add_argument("--workers", default="1", help="gateway processes; a list runs each: 1,2")
    parser.add_argument("--endpoints", default="stream,openai", help="stream (/v1/stream), openai, or both")
    parser.add_argument("--pool", type=int, default=0, help="the upstream pool's max_connections (default: N + 100)")
    parser.add_argument("--recovery-wait", type=float, default=15.0, help="seconds to watch for the idle baseline")
    parser.add_argument("--direct", action="store_true", help="also run the client straight to the mock")
    parser.add_argument("--append", action="store_true", help="add the runs to those already in --json")
    parser.add_argument("--database-url", default=os.environ.get("PLUTOS_BENCH_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--redis-url", default=os.environ.get("PLUTOS_BENCH_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path, default=JSON_RESULTS)
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    mock_bin, load_bin = build_tools()
    started = dt.datetime.now(dt.UTC)
    runs: list[dict[str, Any]] = []
    direct = None
    from server.backends.http_client import IDLE_CONNECTIONS

    def sized(n: int) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(args), "streams": n, "ramp": args.ramp or max(1.0, n / 500)})

    with mock_upstream(mock_bin, args.interval_ms) as (mock, mock_port):
        mock_tree = [psutil.Process(mock.pid)]
        if args.direct:
            direct = direct_run(load_bin, mock_port, sized(max(counts)))
        for n in counts:
            for store in args.store.split(","):
                for workers in (int(w) for w in args.workers.split(",")):
                    with gateway(
                        mock_port,
                        store=store,
                        workers=workers,
                        pool=args.pool or n + 100,
                        database_url=args.database_url,
                        redis_url=args.redis_url,
                    ) as gw:
                        for endpoint in args.endpoints.split(","):
                            log(f"== {n} streams, {endpoint} on {store}, {workers} worker(s)")
                            mock_cpu = tree_cpu_seconds(mock_tree)
                            run = one_run(load_bin, gw, endpoint, sized(n), IDLE_CONNECTIONS)
                            run["mock_cpu_s"] = round(tree_cpu_seconds(mock_tree) - mock_cpu, 1)  # both rounds
                            run["date"] = f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
                            runs.append(run)
    mem = psutil.virtual_memory().total / 2**30
    command = "python -m bench.concurrent_streams " + " ".join(sys.argv[1:])
    previous: dict[str, Any] = {}
    if args.append and args.json.exists():
        previous = json.loads(args.json.read_text())
        runs = [*previous.get("runs", []), *runs]
        direct = direct or previous.get("direct")
        command = f"{previous.get('command', '')}; {command}"
    report = {
        "schema": 1,
        "date": previous.get("date") or f"{started:%Y-%m-%dT%H:%M:%SZ}",
        "machine": f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}, Python {platform.python_version()}",
        "command": command,
        "streams": max(r["streams"] for r in runs),
        "duration_s": args.duration,
        "interval_ms": args.interval_ms,
        "ramp_s": "streams / 500" if args.ramp is None else args.ramp,
        "targets": TARGETS,
        "runs": runs,
        "direct": direct,
        "json": str(args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    write_markdown(args.output, report)
    log(f"wrote {args.output} and {args.json}")


if __name__ == "__main__":
    main()
