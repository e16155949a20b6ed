"""The benchmark report's plots (PNG, matplotlib), drawn from the figures the runs leave in .bench/:

- ``bench/plots/peers_rps.png``: RPS against concurrency per gateway (``.bench/peers.json``, from
  ``make bench-peers``);
- ``bench/plots/peers_latency.png``: p50 / p90 / p99 per gateway at each concurrency (same file);
- ``bench/plots/streams_rss.png``: the gateway's RSS against open streams, per run
  (``.bench/streams.json``, from bench/concurrent_streams.py);
- ``bench/plots/streams_delay.png``: added per-chunk delay p50 / p90 / p99 per run (same file).

A plot whose figures are missing is skipped (said on stdout). The PNGs are build outputs: written by
``make bench`` / ``make bench-peers`` (or this module alone), git-ignored, never committed.

    .venv/bin/python -m bench.plots
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".bench"
OUT = ROOT / "bench" / "plots"

COLOURS = {
    "direct": "#9e9e9e",
    "litellm": "#d62728",
    "portkey": "#ff7f0e",
    "plutos-openai": "#1f77b4",
    "plutos-process": "#2ca02c",
}


SHORT = {
    "direct": "mock (nginx)",
    "litellm": "LiteLLM",
    "portkey": "Portkey",
    "plutos-openai": "PlutosAI\n/openai/v1",
    "plutos-process": "PlutosAI\n/v1/process",
}


def _load(name: str) -> dict[str, Any] | None:
    path = DATA / name
    if not path.exists():
        print(f"[plots] {path.relative_to(ROOT)} not found: skipped (run the benchmark that writes it)")
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def peers(data: dict[str, Any]) -> list[Path]:
    plt = _pyplot()
    rows = data["rows"]
    targets: dict[str, str] = {}
    for r in rows:
        targets.setdefault(r["target"], r["label"])
    levels = sorted({r["concurrency"] for r in rows})
    subtitle = f"{data['date']} · {data['machine'].split(',')[0]} · {data['command'].split(' (')[0]}"

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, label in targets.items():
        if name == "direct":
            continue  # the mock's own RPS is two orders of magnitude above: it would flatten the rest
        pts = sorted((r["concurrency"], r["rps"]) for r in rows if r["target"] == name)
        ax.plot([c for c, _ in pts], [v for _, v in pts], "o-", label=label, color=COLOURS.get(name))
        for c, v in pts:
            ax.annotate(f"{v:,.0f}", (c, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent connections (wrk)")
    ax.set_ylabel("requests / s (median of the rounds, log scale)")
    ax.set_title("Gateways in front of the same nginx mock: throughput", fontsize=11)
    fig.text(0.01, 0.01, subtitle, fontsize=7, color="#555")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    rps_png = OUT / "peers_rps.png"
    fig.savefig(rps_png, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 4.6), squeeze=False)
    names = list(targets)
    for ax, c in zip(axes[0], levels, strict=True):
        width = 0.27
        for i, (pct, alpha) in enumerate((("p50_ms", 1.0), ("p90_ms", 0.65), ("p99_ms", 0.35))):
            values = [next((r[pct] for r in rows if r["target"] == n and r["concurrency"] == c), 0) for n in names]
            ax.bar(
                [x + (i - 1) * width for x in range(len(names))],
                values,
                width,
                color=[COLOURS.get(n, "#444") for n in names],
                alpha=alpha,
                label=pct.split("_")[0],
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), [SHORT.get(n, targets[n]) for n in names], fontsize=7)
        ax.set_title(f"c = {c}", fontsize=10)
        ax.set_ylabel("latency ms (log scale)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, title="p50 / p90 / p99", title_fontsize=7, loc="upper left")
    fig.suptitle("Latency percentiles per gateway (median of the rounds)", fontsize=11)
    fig.text(0.01, 0.01, subtitle, fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    lat_png = OUT / "peers_latency.png"
    fig.savefig(lat_png, dpi=110)
    plt.close(fig)
    return [rps_png, lat_png]


def _run_label(run: dict[str, Any]) -> str:
    workers = run.get("workers", 1)
    return f"{run.get('endpoint', '?')}, {run.get('store', '?')}, {workers} worker{'s' if workers != 1 else ''}"


def streams(data: dict[str, Any]) -> list[Path]:
    plt = _pyplot()
    runs = [r for r in data.get("runs", []) if r.get("samples")]
    written = []
    subtitle = f"{data.get('date', '?')} · {str(data.get('machine', '?')).split(',')[0]} · {data.get('command', '')}"
    if runs:
        fig, ax = plt.subplots(figsize=(8, 5))
        for run in runs:
            samples = run["samples"]
            slope = run.get("rss_per_stream_kib")
            label = _run_label(run) + (f" ({slope:.1f} KiB/stream)" if isinstance(slope, int | float) else "")
            ax.plot([s[1] for s in samples], [s[2] / 2**20 for s in samples], ".", markersize=3, label=label)
        target = data.get("targets", {}).get("rss_per_stream_kib")
        ax.set_xlabel("open streams")
        ax.set_ylabel("gateway RSS MiB (all its processes)")
        ax.set_title(
            "Memory against open streams" + (f" (target ≤ {target} KiB per stream)" if target else ""), fontsize=11
        )
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.text(0.01, 0.01, subtitle, fontsize=7, color="#555")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = OUT / "streams_rss.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    delays = [r for r in data.get("runs", []) if r.get("delay_ms")]
    if delays:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        width = 0.27
        for i, pct in enumerate(("p50", "p90", "p99")):
            ax.bar(
                [x + (i - 1) * width for x in range(len(delays))],
                [r["delay_ms"].get(pct) or 0 for r in delays],
                width,
                label=pct,
            )
        target = data.get("targets", {}).get("added_p99_ms")
        if target:
            ax.axhline(target, color="#d62728", linestyle="--", linewidth=1, label=f"target p99 ≤ {target} ms")
        ax.set_xticks(range(len(delays)), [_run_label(r).replace(", ", "\n", 1) for r in delays], fontsize=7)
        ax.set_ylabel("per-chunk delay added to the mock's schedule, ms")
        ax.set_title("Concurrent streams: per-chunk delay", fontsize=11)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        fig.text(0.01, 0.01, subtitle, fontsize=7, color="#555")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = OUT / "streams_delay.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    try:
        _pyplot()
    except ImportError:
        print("[plots] matplotlib is missing: pip install -e '.[bench]' (make bench / make bench-peers do)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, draw in (("peers.json", peers), ("streams.json", streams)):
        data = _load(name)
        if data is None:
            continue
        try:
            written += draw(data)
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a format this module does not know
            print(f"[plots] .bench/{name}: cannot draw ({type(exc).__name__}: {exc})")
    for path in written:
        print(f"[plots] wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
