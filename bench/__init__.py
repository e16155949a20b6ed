"""Benchmarks: `make bench` runs bench.run, which appends its figures to BENCHMARKS.md."""
