"""Benchmarks: `make bench` runs bench.run (a file per run in bench/history/), `make bench-peers`
runs bench.peers; bench.report regenerates BENCHMARKS.md's current tables and the plots."""
