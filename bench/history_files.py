"""bench/history/: one Markdown file per benchmark run, kept verbatim (BENCHMARKS.md shows only the
current figures). Names sort by time: ``YYYY-MM-DD-HHMM-<scenario>.md`` (UTC)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

HISTORY = Path(__file__).resolve().parent / "history"


def write_history(scenario: str, started: dt.datetime, text: str) -> Path:
    """Write one run's report to bench/history/; a second run in the same minute gets a suffix."""
    HISTORY.mkdir(exist_ok=True)
    stem = f"{started:%Y-%m-%d-%H%M}-{scenario}"
    path = HISTORY / f"{stem}.md"
    n = 2
    while path.exists():
        path = HISTORY / f"{stem}-{n}.md"
        n += 1
    path.write_text(text.rstrip() + "\n")
    return path
