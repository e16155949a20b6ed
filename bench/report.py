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
    lines = [
        f"{data['date']} · {data['machine']} · `{data['command']}`",
        "",
        *data["table"],
    ]
    return lines


def streams_block(data: dict[str, Any]) -> list[str]:
    t = data.get("targets", {})
    lines = [
        f"{data.get('date', '?')} · {data.get('machine', '?')} · `{data.get('command', '?')}` "
        "(details: bench/STREAMS_RESULTS.md)",
        "",
        "| run | streams | errors (target 0) | complete / missing chunks | added delay p99 ms "
        f"(target ≤ {t.get('added_p99_ms', 20)}) | RSS KiB per stream (target ≤ {t.get('rss_per_stream_kib', 30)}) "
        f"| back to idle after leave / disconnect, s (target ≤ {t.get('recovery_s', 5)}) |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]

    def recovered(run: dict[str, Any], kind: str) -> str:
        seconds = ((run.get("recovery") or {}).get(kind) or {}).get("seconds") or {}
        if not seconds:
            return "—"
        values = list(seconds.values())
        return "not back" if any(v is None for v in values) else f"{max(values):.1f}"

    for run in data.get("runs", []):
        workers = run.get("workers", 1)
        delay = (run.get("delay_ms") or {}).get("p99")
        rss = run.get("rss_per_stream_kib")
        lines.append(
            f"| {run.get('endpoint', '?')}, {run.get('store', '?')}, {workers} worker{'s' if workers != 1 else ''} "
            f"| {run.get('streams', '?')} | {run.get('errors', '?')} "
            f"| {run.get('complete_streams', '?')} / {run.get('missing_chunks', '?')} "
            f"| {f'{delay:.1f}' if isinstance(delay, int | float) else '—'} "
            f"| {f'{rss:.1f}' if isinstance(rss, int | float) else '—'} "
            f"| {recovered(run, 'leave')} / {recovered(run, 'disconnect')} |"
        )
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
