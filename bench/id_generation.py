"""Id generation: ``secrets.token_hex(8)`` (one ``getrandom`` system call per id; what
:mod:`core.ids` uses) against a buffer (the kernel's random bytes taken 4 KiB at a time, handed out
8 at a time under a lock; what core/ids.py did before). Both are the kernel's CSPRNG; the question
is only the cost per id, which matters because every call makes two ids (its request id and its
result id). The buffer would be kept only if it saved a measurable share of a call's cost.

    .venv/bin/python -m bench.id_generation [--rounds 7] [--number 200000]

Prints ns per id (the best and the median of the rounds, ``timeit``) for each, in one process,
interleaved; writes bench/ID_RESULTS.md. Results on this machine: see that file.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import threading
import timeit
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "ID_RESULTS.md"


class BufferedHex:
    """The former core/ids.py generator: 4 KiB of ``os.urandom`` at a time, handed out under a lock."""

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk
        self.lock = threading.Lock()
        self.buffer = b""
        self.offset = 0

    def __call__(self, nbytes: int = 8) -> str:
        with self.lock:
            if self.offset + nbytes > len(self.buffer):
                self.buffer, self.offset = os.urandom(max(self.chunk, nbytes)), 0
            start = self.offset
            self.offset += nbytes
            return self.buffer[start : start + nbytes].hex()


_buffered = BufferedHex()
CANDIDATES = {
    "secrets.token_hex(8) (core/ids.py)": lambda: secrets.token_hex(8),
    "buffered os.urandom(4096), 8 bytes at a time": lambda: _buffered(8),
}


def measure(rounds: int, number: int) -> dict[str, list[float]]:
    """ns per id, one figure per round and candidate; candidates alternate round by round."""
    figures: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for _ in range(rounds):
        for name, make in CANDIDATES.items():
            figures[name].append(timeit.timeit(make, number=number) / number * 1e9)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    figures = measure(args.rounds, args.number)
    lines = [
        "# Id generation: ns per id",
        "",
        f"`.venv/bin/python -m bench.id_generation --rounds {args.rounds} --number {args.number}` "
        f"({platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"kernel {platform.release()})",
        "",
        "| generator | best ns | median ns |",
        "|---|---:|---:|",
    ]
    for name, values in figures.items():
        lines.append(f"| {name} | {min(values):,.0f} | {statistics.median(values):,.0f} |")
    library, buffered = (statistics.median(values) for values in figures.values())
    lines += [
        "",
        f"Per call (two ids) the buffer saves {2 * (library - buffered) / 1000:.2f} µs (medians): noise beside the "
        "700-1,100 µs of server CPU per upstream call (bench/UPSTREAM_RESULTS.md), "
        "so core/ids.py uses `secrets.token_hex`.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
