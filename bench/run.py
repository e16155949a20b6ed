"""`make bench`: every scenario side by side, printed and written to bench/history/ (one file per run:
``YYYY-MM-DD-HHMM-run.md``); then bench/report.py regenerates BENCHMARKS.md's tables and the plots.

Environment: BENCH_SECONDS (per load run, default 10), BENCH_SOAK_SECONDS (default 600; 0 skips),
BENCH_HISTORY_ROWS (process records for `history`, default 1,000,000), BENCH_ONLY (comma-separated
scenario names: upstream, idempotency, metrics, instructions, history, limiter, gateway, streaming,
batch, model, workers, streams, soak), BENCH_STREAMS (streams in the `streams` scenario, default 500)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import httpx
import psutil

from bench.harness import (
    ROOT,
    VENV_BIN,
    LoadResult,
    ProcessGroup,
    ResourceMonitor,
    Server,
    free_port,
    ghz,
    log,
    plutos_server,
    run_with_monitor,
    wait_port,
    wrk,
)

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SOAK_SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "600"))
MODEL = "smollm2-135m-instruct"
PROMPT = "Write a short story about a robot who learns to paint."
Section = tuple[str, list[str]]


def table(results: list[LoadResult]) -> list[str]:
    lines = [
        "| scenario | RPS | p50 ms | p90 ms | p99 ms | requests | errors | server CPU % | server peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} | "
            f"{r.errors} | {r.cpu_percent:.0f} | {r.peak_rss_mb:.0f} |"
        )
    return lines


def scenario_gateway_models() -> Section:
    """The gateway's own cost with no model work: GET /v1/models (auth, bridge, gRPC hop)."""
    results = []
    with plutos_server() as server:
        for conns in (1, 64):
            log(f"GET /v1/models, {conns} connections, {SECONDS}s")
            results.append(
                run_with_monitor(
                    server,
                    lambda c=conns: wrk(
                        f"REST GET /v1/models c={c}",
                        f"{server.base_url}/models",
                        key=server.key,
                        connections=c,
                        seconds=SECONDS,
                        threads=1 if c == 1 else 2,
                    ),
                )
            )
        for conc in (1, 64):
            log(f"gRPC ListModels, concurrency {conc}, {SECONDS}s")
            results.append(
                run_with_monitor(
                    server,
                    lambda c=conc: ghz(
                        f"gRPC ListModels c={c}",
                        f"127.0.0.1:{server.grpc_port}",
                        "plutos.v1.ModelsService.ListModels",
                        {},
                        key=server.key,
                        concurrency=c,
                        connections=1 if c == 1 else 4,
                        seconds=SECONDS,
                    ),
                )
            )
    return (
        "Gateway without model work (REST: bridge + auth in process; gRPC: a ghz client over loopback)",
        table(results),
    )


def scenario_workers() -> Section:
    """`plutos serve --workers 2` vs 1 on `/v1/process` with everything on, pinned per core (bench/workers.py)."""
    return _delegate(
        "bench.workers",
        ["--seconds", str(max(3, SECONDS // 2)), "--rounds", "3", "--no-history"],
        "WORKERS_RESULTS.md",
        "More cores: --workers 2 vs 1",
    )


async def _ttfb_rest(base_url: str, key: str, n: int) -> tuple[list[float], list[float]]:
    first, rates = [], []
    body = {"input": PROMPT, "model": MODEL, "options": {"maxTokens": 64, "temperature": 0}}
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        for _ in range(n):
            started = time.perf_counter()
            t_first = None
            chunks = 0
            async with c.stream("POST", "/stream", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("event: chunk"):
                        chunks += 1
                        if t_first is None:
                            t_first = time.perf_counter()
            done = time.perf_counter()
            assert t_first is not None
            first.append((t_first - started) * 1000)
            rates.append(chunks / (done - t_first) if done > t_first else 0)
    return first, rates


async def _ttfb_backend(n: int) -> tuple[list[float], list[float]]:
    from server.backends.base import GenerationParams, GenerationState
    from server.backends.local import LocalLlamaBackend
    from server.config import load_settings

    spec = load_settings(env={}).models[0]
    backend = LocalLlamaBackend(spec)
    await backend.start()
    first, rates = [], []
    for _ in range(n):
        started = time.perf_counter()
        prompt = await backend.prepare(PROMPT, GenerationParams(max_tokens=64, temperature=0))
        t_first = None
        chunks = 0
        async for _piece in backend.stream(prompt, GenerationState()):
            chunks += 1
            if t_first is None:
                t_first = time.perf_counter()
        done = time.perf_counter()
        assert t_first is not None
        first.append((t_first - started) * 1000)
        rates.append(chunks / (done - t_first) if done > t_first else 0)
    await backend.close()
    return first, rates


async def _first_chunk_times(
    url: str, body: Mapping[str, object], headers: dict[str, str], marker: str, n: int
) -> list[float]:
    """Sequential streamed POSTs on one keep-alive connection: ms until the first line starting with ``marker``."""
    times = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as c:
        for i in range(n + 10):
            started = time.perf_counter()
            first = None
            async with c.stream("POST", url, json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if first is None and line.startswith(marker):
                        first = time.perf_counter()
            assert first is not None, f"no {marker!r} line from {url}"
            if i >= 10:  # the first ten warm up connections and caches
                times.append((first - started) * 1000)
    return times


def _upstream_first_chunk(n: int, rounds: int = 5) -> list[str]:
    """Time to first SSE chunk through the gateway (REST → gRPC → openai-compatible backend → mock),
    on /v1/stream and on the OpenAI-compatible API's streamed chat, vs straight from the mock: the
    gateway's own first-chunk overhead, without model time. The three take turns, ``rounds`` times
    ``n / rounds`` streams each (this machine's speed drifts within minutes)."""
    from bench.upstream_overhead import MODEL as UPSTREAM_MODEL

    text = "Summarise the plot of a short story about a fox."
    chat = {"messages": [{"role": "user", "content": text}], "max_tokens": 16, "stream": True}
    times: dict[str, list[float]] = {}
    with upstream_gateway() as (server, mock_port):
        key = {"Authorization": f"Bearer {server.key}"}
        # (name, URL, JSON body, headers, the SSE line that counts as the first chunk)
        paths: tuple[tuple[str, str, Mapping[str, object], dict[str, str], str], ...] = (
            (
                "REST /v1/stream through the gateway → mock upstream",
                f"{server.base_url}/stream",
                {"input": text, "model": UPSTREAM_MODEL, "options": {"maxTokens": 16}},
                key,
                "event: chunk",
            ),
            (
                "POST /openai/v1/chat/completions (stream) through the gateway → mock upstream",
                f"http://127.0.0.1:{server.http_port}/openai/v1/chat/completions",
                {"model": UPSTREAM_MODEL, **chat},
                key,
                "data:",
            ),
            (
                "POST /v1/chat/completions straight to the mock",
                f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                {"model": "bench", **chat, "stream_options": {"include_usage": True}},
                {},
                "data:",
            ),
        )
        log(f"first SSE chunk: {n} streams on each of {len(paths)} paths, {rounds} interleaved rounds")
        load = os.getloadavg()
        for _ in range(rounds):
            for name, url, body, headers, marker in paths:
                times.setdefault(name, []).extend(
                    asyncio.run(_first_chunk_times(url, body, headers, marker, max(1, n // rounds)))
                )
    q = statistics.quantiles
    med = statistics.median
    rows = []
    for name, t in times.items():
        p = q(t, n=100)
        rows.append(f"| {name} | {med(t):.2f} | {p[89]:.2f} | {p[98]:.2f} |")
    stream, openai_chat, direct = (med(t) for t in times.values())
    return [
        f"Load average at the start: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
        "",
        "| path (sequential, keep-alive) | first chunk p50 ms | p90 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"First-chunk overhead of the gateway with an upstream model (p50): /v1/stream "
        f"**{stream - direct:.2f} ms**, /openai/v1 streamed chat **{openai_chat - direct:.2f} ms** "
        "(target ≤ 2 ms).",
    ]


def scenario_streaming() -> Section:
    """Time to first SSE chunk: through the gateway vs straight from the backend, with the mock
    upstream (no model time) and with the embedded model."""
    upstream_lines = _upstream_first_chunk(200)
    rounds, per_round = 3, 5
    rest_first, rest_rate, direct_first, direct_rate = [], [], [], []
    with plutos_server() as server:
        asyncio.run(_ttfb_rest(server.base_url, server.key, 2))  # warm-up
        # The two paths take turns: the prompt's evaluation (~200 ms) moves by tens of ms with the
        # machine's load, more than the difference being measured.
        for i in range(rounds):
            log(f"round {i + 1}/{rounds}: {per_round} streams through the bridge, {per_round} from the backend")
            first, rate = asyncio.run(_ttfb_rest(server.base_url, server.key, per_round))
            rest_first += first
            rest_rate += rate
            first, rate = asyncio.run(_ttfb_backend(per_round))
            direct_first += first
            direct_rate += rate
    med = statistics.median
    lines = [
        *upstream_lines,
        "",
        "With the embedded model (the first chunk waits for the prompt's evaluation):",
        "",
        "| path | first chunk p50 ms | first chunk max ms | chunks/s p50 |",
        "|---|---:|---:|---:|",
        f"| REST /v1/stream (bridge → gRPC service → backend) | {med(rest_first):.1f} | {max(rest_first):.1f} "
        f"| {med(rest_rate):.0f} |",
        f"| backend.stream() in-process | {med(direct_first):.1f} | {max(direct_first):.1f} | {med(direct_rate):.0f} |",
        "",
        f"First-chunk overhead of the gateway with the embedded model (p50): "
        f"**{med(rest_first) - med(direct_first):.1f} ms**. Both include the prompt's evaluation by the model "
        f"(same prompt, 64 tokens, temperature 0); {rounds} interleaved rounds of {per_round} streams each.",
    ]
    return ("Streaming: time to first chunk", lines)


def scenario_batch() -> Section:
    """A batch of 100 inputs vs the same 100 inputs as sequential /v1/process calls (local model)."""
    inputs = [f"Give one word that rhymes with number {i}." for i in range(100)]
    options = {"maxTokens": 8, "temperature": 0}
    with (
        plutos_server() as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.key}"}, timeout=600) as c,
    ):
        c.post("/process", json={"input": "warm up", "model": MODEL, "options": options})
        log("batch of 100 vs 100 sequential /v1/process calls")
        started = time.perf_counter()
        r = c.post("/batch", json={"inputs": inputs, "model": MODEL, "options": options})
        r.raise_for_status()
        batch_s = time.perf_counter() - started
        batch_tokens = r.json()["totalUsage"]["completionTokens"]
        started = time.perf_counter()
        seq_tokens = 0
        for text in inputs:
            reply = c.post("/process", json={"input": text, "model": MODEL, "options": options})
            reply.raise_for_status()
            seq_tokens += reply.json()["usage"]["completionTokens"]
        seq_s = time.perf_counter() - started
    lines = [
        "| path | wall time s | inputs/s | completion tokens |",
        "|---|---:|---:|---:|",
        f"| POST /v1/batch, 100 inputs | {batch_s:.2f} | {100 / batch_s:.1f} | {batch_tokens} |",
        f"| 100 sequential POST /v1/process | {seq_s:.2f} | {100 / seq_s:.1f} | {seq_tokens} |",
        "",
        "The embedded model runs one generation at a time (one llama.cpp context per process), so a batch "
        "saves the per-request round trips, not model time; upstream models fan out up to batch_concurrency.",
    ]
    return ("Batch of 100 vs 100 sequential calls", lines)


def _tokens_per_second(
    url: str, headers: dict[str, str], body: dict[str, object], n: int, usage_path: tuple[str, str]
) -> float:
    total_tokens, total_time = 0, 0.0
    with httpx.Client(timeout=300, headers=headers) as c:
        c.post(url, json=body)  # warm-up
        for _ in range(n):
            started = time.perf_counter()
            r = c.post(url, json=body)
            r.raise_for_status()
            total_time += time.perf_counter() - started
            total_tokens += int(r.json()[usage_path[0]][usage_path[1]])
    return total_tokens / total_time


def scenario_model_speed() -> Section:
    """Tokens/s of the embedded backend vs llama-cpp-python's own server on the same GGUF."""
    from server.backends.local import find_smollm2_gguf

    n = 5
    gguf = find_smollm2_gguf()
    with plutos_server() as server:
        log(f"embedded model: {n} x /v1/process, 256 tokens")
        ours = _tokens_per_second(
            f"{server.base_url}/process",
            {"Authorization": f"Bearer {server.key}"},
            {"input": PROMPT, "model": MODEL, "options": {"maxTokens": 256, "temperature": 0}},
            n,
            ("usage", "completionTokens"),
        )
    port = free_port()
    log("llama_cpp.server on the same GGUF")
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "python"),
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "8192",
            "--n_threads",
            str(os.cpu_count() or 1),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        theirs = _tokens_per_second(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {},
            {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 256, "temperature": 0},
            n,
            ("usage", "completion_tokens"),
        )
    finally:
        proc.terminate()
        proc.wait()
    lines = [
        "| path | completion tokens/s (wall clock, incl. prompt) |",
        "|---|---:|",
        f"| PlutosAI /v1/process (embedded llama.cpp) | {ours:.1f} |",
        f"| llama_cpp.server /v1/chat/completions | {theirs:.1f} |",
        "",
        f"Embedded model at **{100 * ours / theirs:.0f}%** of llama.cpp's own server.",
    ]
    return ("Embedded model speed", lines)


@contextlib.contextmanager
def upstream_gateway() -> Iterator[tuple[Server, int]]:
    """The mock OpenAI-compatible upstream (bench/mock_upstream.py) and `plutos serve` with a model
    routed to it (no embedded model loaded); an enterprise key with limits out of the way."""
    from bench.upstream_overhead import MODEL as UPSTREAM_MODEL

    mock_port = free_port()
    config = f"""
[[models]]
id = "{UPSTREAM_MODEL}"
backend = "openai-compatible"
base_url = "http://127.0.0.1:{mock_port}/v1"
upstream_model = "bench"
max_tokens = 4096
pricing = {{ input_tokens = 0.01, output_tokens = 0.03 }}
"""
    with ProcessGroup() as procs:
        procs.mock_upstream(mock_port)
        wait_port(mock_port)
        with plutos_server(config) as server:
            yield server, mock_port


def scenario_soak() -> Section:
    """BENCH_SOAK_SECONDS of steady load on the full path: POST /v1/process through the openai-compatible
    backend to the mock upstream (auth, limits, upstream call, record + ledger + roll-up written) and
    GET /v1/models, 2 connections each. RSS after a warm-up and at the end."""
    from bench.upstream_overhead import MODEL as UPSTREAM_MODEL

    body = {"input": "Summarise the plot of a short story about a fox.", "model": UPSTREAM_MODEL}
    warmup = min(30, max(5, SOAK_SECONDS // 10))
    with upstream_gateway() as (server, _):
        procs = server.processes()
        rss_cold = sum(p.memory_info().rss for p in procs) / 1e6

        def load(seconds: int, label: str) -> list[LoadResult]:
            results: list[LoadResult] = []

            def run_models() -> None:
                results.append(
                    wrk(
                        f"{label} GET /v1/models c=2",
                        f"{server.base_url}/models",
                        key=server.key,
                        connections=2,
                        seconds=seconds,
                    )
                )

            models = threading.Thread(target=run_models)
            models.start()
            results.insert(
                0,
                wrk(
                    f"{label} POST /v1/process (upstream) c=2",
                    f"{server.base_url}/process",
                    key=server.key,
                    method="POST",
                    body=json.dumps(body),
                    connections=2,
                    seconds=seconds,
                ),
            )
            models.join()
            return results

        log(f"soak warm-up: {warmup}s")
        load(warmup, "warm-up")
        rss0 = sum(p.memory_info().rss for p in procs) / 1e6
        log(f"soak: POST /v1/process via the mock upstream + GET /v1/models, 2 connections each, {SOAK_SECONDS}s")
        with ResourceMonitor(procs) as monitor:
            results = load(SOAK_SECONDS, "soak")
        rss1 = sum(p.memory_info().rss for p in procs) / 1e6
        for r in results:
            r.cpu_percent = monitor.sample.cpu_percent
            r.peak_rss_mb = monitor.sample.peak_rss_mb
        stored = httpx.get(f"{server.base_url}/usage", headers={"Authorization": f"Bearer {server.key}"}).json()
    growth = 100 * (rss1 - rss0) / rss0
    lines = [
        *table(results),
        "",
        f"RSS cold {rss_cold:.0f} MB; after a {warmup}s warm-up {rss0:.0f} MB; at the end {rss1:.0f} MB: growth "
        f"**{growth:+.1f}%** over {SOAK_SECONDS}s (peak {monitor.sample.peak_rss_mb:.0f} MB). Server CPU % is for "
        f"both loads together. /v1/usage counted {stored['usage']['totalRequests']:,} requests for the key "
        "(this month, warm-up included).",
    ]
    return ("Soak", lines)


def _delegate(module: str, args: list[str], results: str, title: str) -> Section:
    """Run one of the focused benchmarks (its own process) and carry its results table over."""
    log(f"python -m {module} {' '.join(args)}")
    subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True)
    text = (ROOT / "bench" / results).read_text()
    body = text.split("<!-- notes:")[0].splitlines()
    return (title, [line for line in body if not line.startswith("# ")] + [f"(details: bench/{results})"])


def scenario_upstream() -> Section:
    """Scenarios 1 and 2 of the benchmark issue: POST /v1/process through the gateway to a fast mock
    OpenAI-compatible upstream vs straight to the mock; GET /v1/models as the floor."""
    return _delegate(
        "bench.upstream_overhead",
        ["--duration", str(SECONDS)],
        "UPSTREAM_RESULTS.md",
        "Gateway overhead in front of an OpenAI-compatible upstream",
    )


def scenario_history() -> Section:
    """Issue 18: GET /v1/process pages with BENCH_HISTORY_ROWS (default 1,000,000) records, both stores."""
    rows = os.environ.get("BENCH_HISTORY_ROWS", "1000000")
    return _delegate(
        "bench.history_bench",
        ["--rows", rows, "--repeat", "20", "--out", "bench/HISTORY_RESULTS.md"],
        "HISTORY_RESULTS.md",
        "Request history (GET /v1/process) at scale",
    )


def scenario_instructions() -> Section:
    """The gateway's instructions per /v1/process beside the bare path's, under callgrind."""
    return _delegate(
        "bench.instructions",
        ["--seconds", str(max(10, 2 * SECONDS)), "--rounds", "2"],
        "INSTRUCTIONS_RESULTS.md",
        "Instructions per request (callgrind)",
    )


def scenario_limiter() -> Section:
    return _delegate(
        "bench.limiter",
        ["--seconds", str(max(2, SECONDS // 2)), "--rounds", "2"],
        "LIMITER_RESULTS.md",
        "Limiter overhead (in-memory and Redis)",
    )


def scenario_metrics() -> Section:
    """Metrics on vs off (and the request log on vs off) through the upstream: the issue-22 budget."""
    return _delegate(
        "bench.metrics_overhead",
        ["--duration", str(max(3, SECONDS // 2)), "--rounds", "3"],
        "METRICS_RESULTS.md",
        "Metrics and request log overhead",
    )


def scenario_idempotency() -> Section:
    """Issue 23's rows: an Idempotency-Key's cost at c=1 through the upstream, a cache hit's p50."""
    return _delegate(
        "bench.idempotency_cache",
        ["--duration", str(max(3, SECONDS // 2)), "--rounds", "3"],
        "IDEMPOTENCY_RESULTS.md",
        "Idempotency keys and response-cache hits",
    )


def scenario_streams() -> Section:
    """Issue 24's concurrent streams, bounded for `make bench`: BENCH_STREAMS (default 500) streams of
    max(10, BENCH_SECONDS) seconds, /v1/stream and /openai/v1, one process, SQLite. The full run
    (5,000 streams, both stores, 1 and 2 workers) is in bench/STREAMS_RESULTS.md with its command."""
    streams = os.environ.get("BENCH_STREAMS", "500")
    out = ROOT / ".bench" / "streams-make-bench.md"
    args = ["--streams", streams, "--duration", str(max(10, SECONDS)), "--output", str(out)]
    args += ["--json", str(ROOT / ".bench" / "streams-make-bench.json")]
    log(f"python -m bench.concurrent_streams {' '.join(args)}")
    subprocess.run([sys.executable, "-m", "bench.concurrent_streams", *args], cwd=ROOT, check=True)
    body = out.read_text().split("<!-- notes:")[0].splitlines()
    return (
        "Concurrent streams (bounded run; the full one: bench/STREAMS_RESULTS.md)",
        [line for line in body if not line.startswith("# ")],
    )


SCENARIOS: dict[str, Callable[[], Section]] = {
    "upstream": scenario_upstream,
    "idempotency": scenario_idempotency,
    "metrics": scenario_metrics,
    "instructions": scenario_instructions,
    "history": scenario_history,
    "limiter": scenario_limiter,
    "gateway": scenario_gateway_models,
    "streaming": scenario_streaming,
    "batch": scenario_batch,
    "model": scenario_model_speed,
    "workers": scenario_workers,
    "streams": scenario_streams,
    "soak": scenario_soak,
}


def main() -> int:
    only = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s]
    names = only or [n for n in SCENARIOS if n != "soak" or SOAK_SECONDS > 0]
    started = dt.datetime.now(dt.UTC)
    sections = []
    for i, name in enumerate(names, 1):
        log(f"scenario {i}/{len(names)}: {name}")
        title, lines = SCENARIOS[name]()
        print("\n".join([f"## {title}", *lines, ""]), flush=True)
        sections.append((title, lines))
    header = [
        f"# Run {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.platform()}, Python {platform.python_version()}",
        f"- command: `make bench` (BENCH_SECONDS={SECONDS}, BENCH_SOAK_SECONDS={SOAK_SECONDS}"
        + (f", BENCH_ONLY={','.join(only)}" if only else "")
        + ")",
        "- load generators run as separate processes (wrk for HTTP, ghz for gRPC) on loopback",
        "",
    ]
    body = [line for title, lines in sections for line in (f"## {title}", "", *lines, "")]
    from bench.history_files import write_history

    path = write_history("run", started, "\n".join(header + body))
    log(f"wrote {path.relative_to(ROOT)}")
    from bench import report

    report.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
