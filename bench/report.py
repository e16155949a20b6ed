"""BENCHMARKS.md's current tables and the plots, regenerated from the figures the benchmarks leave
in .bench/ (git-ignored): ``peers.json`` (bench/peers.py), ``workers.json`` (bench/workers.py),
``streams.json`` (bench/concurrent_streams.py). Each table lives between
``<!-- current:NAME:begin -->`` and ``<!-- current:NAME:end -->`` in BENCHMARKS.md; a table whose
figures are missing is left as it is (a fresh clone keeps the committed figures). The text around
the blocks is written by hand.

    .venv/bin/python -m bench.report      (make bench and make bench-peers run it at their end)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"
DATA = ROOT / ".bench"


def update_block(name: str, lines: list[str], path: Path = REPORT) -> bool:
    """Replace the lines between ``<!-- current:NAME:begin -->`` and ``<!-- current:NAME:end -->``
    in ``path``; False (and nothing written) when the file has no such block."""
    text = path.read_text()
    pattern = re.compile(
        rf"(<!-- current:{re.escape(name)}:begin -->\n).*?(<!-- current:{re.escape(name)}:end -->)", re.S
    )
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda m: m.group(1) + "\n".join(lines).rstrip() + "\n" + m.group(2), text, count=1)
    path.write_text(new)
    return True


def _fmt_ratio(x: float | None) -> str:
    return f"{x:.2f}x" if x is not None else "—"


def peers_block(data: dict[str, Any]) -> list[str]:
    by = {(r["target"], r["concurrency"]): r for r in data["rows"]}
    levels = sorted({r["concurrency"] for r in data["rows"]})

    def cell(target: str, c: int) -> str:
        r = by.get((target, c))
        if r is None:
            return "—"
        if target == "direct":
            return f"{r['rps']:,.0f} (p50 {r['p50_ms']:.2f})"
        return f"{r['rps']:,.0f} (+{r['added_p50_ms']:.2f})"

    def ratio(ours: str, peer: str, c: int) -> float | None:
        a, b = by.get((ours, c)), by.get((peer, c))
        return a["rps"] / b["rps"] if a and b and b["rps"] else None

    lines = [
        f"{data['date']} · {data['machine']} · `{data['command']}` · LiteLLM {data['litellm']}, "
        f"Portkey {data['portkey']}, PlutosAI {data['plutos']} · {data['rounds']} rounds x {data['seconds']} s, "
        f"medians · {data['duration_s'] / 60:.0f} min in all",
        "",
        "RPS (added p50 ms over the mock):",
        "",
        "| c | mock (nginx) | LiteLLM proxy | Portkey | PlutosAI /openai/v1 | PlutosAI /v1/process "
        "| PlutosAI ÷ Portkey (process / openai) | PlutosAI ÷ LiteLLM (process) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in levels:
        lines.append(
            f"| {c} | {cell('direct', c)} | {cell('litellm', c)} | {cell('portkey', c)} | {cell('plutos-openai', c)} "
            f"| {cell('plutos-process', c)} | {_fmt_ratio(ratio('plutos-process', 'portkey', c))} / "
            f"{_fmt_ratio(ratio('plutos-openai', 'portkey', c))} "
            f"| {_fmt_ratio(ratio('plutos-process', 'litellm', c))} |"
        )
    lines += ["", "| target (issue 24) | measured | status |", "| --- | --- | --- |"]
    for c in (16, 64):
        p, o = ratio("plutos-process", "portkey", c), ratio("plutos-openai", "portkey", c)
        if p is None and o is None:
            continue
        worst = min(x for x in (p, o) if x is not None)
        lines.append(
            f"| PlutosAI ≥ 3x Portkey's RPS at c = {c} | /v1/process {_fmt_ratio(p)}, /openai/v1 {_fmt_ratio(o)} | "
            + ("met" if worst >= 3 else "**missed**")
            + " |"
        )
    ours = [by.get((t, 1)) for t in ("plutos-process", "plutos-openai")]
    theirs = by.get(("portkey", 1))
    if theirs and all(ours):
        worst_p50 = max(r["added_p50_ms"] for r in ours if r)
        lines.append(
            f"| PlutosAI's added p50 at c = 1 below Portkey's | /v1/process +{ours[0]['added_p50_ms']:.2f} ms, "  # type: ignore[index]
            f"/openai/v1 +{ours[1]['added_p50_ms']:.2f} ms vs Portkey +{theirs['added_p50_ms']:.2f} ms | "  # type: ignore[index]
            + ("met" if worst_p50 < theirs["added_p50_ms"] else "**missed**")
            + " |"
        )
    return lines


def workers_block(data: dict[str, Any]) -> list[str]:
    load = f" · load average at the start {data['load_start']}" if data.get("load_start") else ""
    lines = [
        f"{data['date']} · {data['machine']}{load} · `{data['command']}`",
        "",
        *data["table"],
    ]
    return lines


def _num(value: Any, spec: str = ".1f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "—"


def _within(seconds: Any, limit: float) -> bool:
    return isinstance(seconds, int | float) and seconds <= limit


def _stream_label(run: dict[str, Any]) -> str:
    endpoint = run.get("endpoint", "?")
    return "/openai/v1 (chat completions)" if "openai" in endpoint else endpoint


def streams_block(data: dict[str, Any]) -> list[str]:
    """The streams table from ``.bench/streams.json`` (bench/concurrent_streams.py): one row per
    measured run, then each target with the runs that meet and miss it. Recovery is split in two:
    the concurrency slots and upstream connections (the resources a stream holds), and the RSS."""
    t = {"errors": 0, "added_p99_ms": 20, "rss_per_stream_kib": 30, "recovery_s": 5, **data.get("targets", {})}
    limit = float(t["recovery_s"])
    runs: list[dict[str, Any]] = data.get("runs", [])
    dates = sorted(r["date"] for r in runs if r.get("date")) or [data.get("date", "?")]
    when = dates[0] if dates[0][:13] == dates[-1][:13] else f"{dates[0]} to {dates[-1]}"
    loads = [r["loadavg_before"][0] for r in runs if r.get("loadavg_before")]
    loads += [r["loadavg_after"][0] for r in runs if r.get("loadavg_after")]
    load = (
        f"load average (1 min) {min(loads):.1f} to {max(loads):.1f} around the runs" if loads else "load not recorded"
    )
    lines = [
        f"{when} · {data.get('machine', '?')} · {load} · the gateway, the Go mock upstream and the Go load "
        "client share the machine's cores",
        "",
        f"Command: `{data.get('command', '?')}`. Every row: that many concurrent streams, each a chunk every "
        "*chunk every* ms for *length* s (opened evenly over streams / 500 s), everything on (auth, limits, quota, "
        "records), then all clients leave; then the same again, all disconnecting at once mid-stream. "
        f"Raw figures: `{data.get('json', '.bench/streams.json')}`; method and analysis: bench/STREAMS_RESULTS.md.",
        "",
        "| scenario | store | workers | streams | chunk every ms | length s | errors | complete streams | chunks lost "
        "| added delay p50 / p99 ms | RSS KiB / open stream | gateway CPU µs / chunk "
        f"| slots + upstream conns back ≤ {limit:g} s (leave / drop) | RSS back ≤ {limit:g} s (leave / drop) "
        "| load 1 min before → after |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]

    def back(run: dict[str, Any], kind: str, names: tuple[str, ...]) -> str:
        seconds = ((run.get("recovery") or {}).get(kind) or {}).get("seconds") or {}
        if not seconds:
            return "—"
        times = [seconds.get(n) for n in names]
        if all(_within(s, limit) for s in times):
            return f"yes ({max(times):.1f} s)"  # type: ignore[type-var]
        return "no"

    def recovered(run: dict[str, Any], names: tuple[str, ...]) -> str:
        return f"{back(run, 'leave', names)} / {back(run, 'disconnect', names)}"

    resources = ("slots", "upstream_connections")
    for run in runs:
        delay = run.get("delay_ms") or {}
        chunks, interval = run.get("chunks_per_stream"), run.get("interval_ms")
        length = chunks * interval / 1000 if isinstance(chunks, int) and isinstance(interval, int | float) else None
        before, after = run.get("loadavg_before") or [None], run.get("loadavg_after") or [None]
        lines.append(
            f"| {_stream_label(run)} | {run.get('store', '?')} | {run.get('workers', 1)} "
            f"| {_num(run.get('streams'), ',')} "
            f"| {_num(interval, 'g')} | {_num(length, 'g')} | {_num(run.get('errors'), ',')} "
            f"| {_num(run.get('complete_streams'), ',')} | {_num(run.get('missing_chunks'), ',')} "
            f"| {_num(delay.get('p50'))} / {_num(delay.get('p99'))} | {_num(run.get('rss_per_stream_kib'))} "
            f"| {_num(run.get('cpu_us_per_chunk'))} | {recovered(run, resources)} | {recovered(run, ('rss',))} "
            f"| {_num(before[0], '.2f')} → {_num(after[0], '.2f')} |"
        )
    direct = data.get("direct")
    if direct and direct.get("delay_ms"):
        d = direct["delay_ms"]
        lines += [
            "",
            f"Straight to the mock (no gateway, the floor of loopback, mock and client): {direct['streams']:,} "
            "streams, "
            f"delay p50 / p99 {_num(d.get('p50'), '.2f')} / {_num(d.get('p99'), '.2f')} ms.",
        ]

    def label(run: dict[str, Any]) -> str:
        workers = run.get("workers", 1)
        return (
            f"{_num(run.get('streams'), ',')} x {_num(run.get('interval_ms'), 'g')} ms {_stream_label(run)} "
            f"{run.get('store', '?')} {workers}w"
        )

    def verdict(name: str, ok: Any) -> str:
        judged = [(run, ok(run)) for run in runs]
        judged = [(run, v) for run, v in judged if v is not None]
        if not judged:
            return f"| {name} | not measured | — |"
        missed = [label(run) for run, v in judged if not v]
        met = len(judged) - len(missed)
        if not missed:
            return f"| {name} | met in {'the one run' if len(judged) == 1 else f'all {len(judged)} runs'} | met |"
        return f"| {name} | met in {met} of {len(judged)} runs; missed: {'; '.join(missed)} | **missed** |"

    def p99(run: dict[str, Any]) -> bool | None:
        value = (run.get("delay_ms") or {}).get("p99")
        return None if value is None else value <= t["added_p99_ms"]

    def rss(run: dict[str, Any]) -> bool | None:
        value = run.get("rss_per_stream_kib")
        return None if value is None else value <= t["rss_per_stream_kib"]

    def came_back(names: tuple[str, ...]) -> Any:
        def ok(run: dict[str, Any]) -> bool | None:
            rec = run.get("recovery") or {}
            if not rec:
                return None
            return all(_within((rec.get(k) or {}).get("seconds", {}).get(n), limit) for k in rec for n in names)

        return ok

    lines += [
        "",
        "| target (issue 24) | measured | status |",
        "| --- | --- | --- |",
        verdict(f"{t['errors']} errors", lambda r: r.get("errors") == t["errors"] if "errors" in r else None),
        verdict(
            "every stream gets every chunk",
            lambda r: (
                r.get("missing_chunks") == 0 and r.get("complete_streams") == r.get("streams")
                if "missing_chunks" in r
                else None
            ),
        ),
        verdict(f"added per-chunk delay p99 ≤ {t['added_p99_ms']} ms", p99),
        verdict(f"RSS ≤ {t['rss_per_stream_kib']} KiB per open stream", rss),
        verdict(
            f"slots and upstream connections back within {limit:g} s (leave and mass disconnect)", came_back(resources)
        ),
        verdict(f"memory back to the idle baseline within {limit:g} s", came_back(("rss",))),
    ]
    return lines


BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "peers": ("peers.json", peers_block),
    "workers": ("workers.json", workers_block),
    "streams": ("streams.json", streams_block),
}


def main() -> int:
    for name, (file, build) in BLOCKS.items():
        path = DATA / file
        if not path.exists():
            print(f"[report] .bench/{file} not found: the {name} table in BENCHMARKS.md is left as it is")
            continue
        try:
            lines = build(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError) as exc:
            print(f"[report] .bench/{file}: cannot read ({type(exc).__name__}: {exc}); table left as it is")
            continue
        if update_block(name, lines):
            print(f"[report] BENCHMARKS.md: {name} table regenerated from .bench/{file}")
        else:
            print(f"[report] BENCHMARKS.md has no {name} block")
    from bench import plots

    return plots.main()


if __name__ == "__main__":
    sys.exit(main())
