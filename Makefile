# PlutosAI — every target installs what it needs (virtualenv, packages, generated code).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+asyncpg://plutos:plutos@127.0.0.1:5432/plutos_test
REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: help install tools sdk-deps clients protos check-generated run test test-sqlite test-postgres lint bench bench-peers plots clean services browser dashboard-vendor

help:
	@echo "make run    - install, generate code, serve REST on :3000 and gRPC on :50051 (prints a dev key)"
	@echo "make test   - install, start PostgreSQL/Redis if needed, run the whole test suite"
	@echo "make lint   - ruff, mypy, import-linter, buf lint;  make bench - benchmarks (BENCHMARKS.md, bench/history/);  make bench-peers - beside LiteLLM and Portkey"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@test -d $(VENV) || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing Python packages (llama-cpp-python compiles from source the first time: ~5-10 min on 2 cores)"
	$(VENV)/bin/pip install --progress-bar on --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(VENV)/bin/pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# grpcurl (for the reflection test and the README's gRPC examples), from the Go module proxy.
TOOLS := .tools/bin
$(TOOLS)/ghz:
	@if command -v go >/dev/null; then echo "==> installing ghz"; GOBIN=$(CURDIR)/$(TOOLS) go install github.com/bojand/ghz/cmd/ghz@v0.120.0; \
	else echo "go not found: skipping ghz"; fi

$(TOOLS)/grpcurl:
	@if command -v go >/dev/null; then echo "==> installing grpcurl"; GOBIN=$(CURDIR)/$(TOOLS) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3; \
	else echo "go not found: skipping grpcurl"; fi

# protoc (Debian's protobuf-compiler) for buf.gen.yaml's built-in generators (scripts/buf.sh generate).
tools: $(TOOLS)/grpcurl
	@command -v protoc >/dev/null || { echo "==> installing protobuf-compiler with apt-get"; \
	  S=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq protobuf-compiler >/dev/null; }

# gen/python is the one generation of the Python stubs; the Python SDK's plutos_ai/_gen is derived
# from it (not committed; its package build does the same through clients/python/hatch_build.py).
protos: $(STAMP)
	$(PY) scripts/gen_protos.py
	$(PY) clients/python/scripts/gen.py

# CI: regenerating from protos/ must leave the committed code unchanged.
check-generated: clients
	@git diff --exit-code --stat -- gen/ clients/ || { echo "generated code is stale: run 'make clients' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen/ clients/)" || { git status --porcelain -- gen/ clients/; echo "untracked generated files"; exit 1; }

# SDK dependencies: the Python SDK into the venv, the TypeScript SDK's npm packages, Go modules, and
# the openai npm package the /openai/v1 tests drive.
SDK_STAMP := $(VENV)/.sdk-installed
$(SDK_STAMP): $(STAMP) clients/python/pyproject.toml clients/typescript/package-lock.json clients/go/go.sum tests/js/openai/package-lock.json
	$(VENV)/bin/pip install --progress-bar on -e 'clients/python[grpc]'
	@if command -v npm >/dev/null; then echo "==> npm ci (clients/typescript)"; cd clients/typescript && npm ci --no-audit --no-fund; fi
	@if command -v npm >/dev/null; then echo "==> npm ci (tests/js/openai: the openai npm package)"; cd tests/js/openai && npm ci --no-audit --no-fund; fi
	@if command -v go >/dev/null; then echo "==> go mod download (clients/go)"; cd clients/go && go mod download; fi
	@touch $(SDK_STAMP)

sdk-deps: $(SDK_STAMP)

# Regenerate every SDK's stubs from protos/ (pinned plugin versions).
clients: $(SDK_STAMP) protos
	$(PY) scripts/gen_error_tables.py
	$(PY) clients/python/scripts/gen_types.py
	cd clients/typescript && PYTHON=$(CURDIR)/$(PY) npm run gen
	cd clients/go && PYTHON=$(CURDIR)/$(PY) ./gen.sh

run: $(STAMP) protos
	$(VENV)/bin/plutos serve --dev-key

services:
	@bash scripts/test-services.sh

# Debian's chromium for the dashboard's browser tests (Playwright drives it by its path).
browser:
	@bash scripts/test-browser.sh

# The dashboard's third-party files (Chart.js), committed under server/dashboard/static/vendor/:
# this target re-creates them from the npm lockfile (server/dashboard/package-lock.json).
DASH := server/dashboard
dashboard-vendor:
	cd $(DASH) && npm ci --no-audit --no-fund --ignore-scripts
	cp $(DASH)/node_modules/chart.js/dist/chart.umd.min.js $(DASH)/static/vendor/chart.umd.min.js
	cp $(DASH)/node_modules/chart.js/LICENSE.md $(DASH)/static/vendor/chart.js-LICENSE.md

test: $(STAMP) protos services browser tools sdk-deps
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: $(STAMP)
	@echo "==> tests against SQLite, REST bridge in process"
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

test-postgres: $(STAMP)
	@echo "==> tests against PostgreSQL ($(PG_URL)), REST bridge over the loopback gRPC channel"
	PLUTOS_TEST_DATABASE_URL=$(PG_URL) PLUTOS_TEST_BRIDGE_TRANSPORT=grpc $(PY) -m pytest -q -p no:cacheprovider --durations=15 -m "not sqlite_only"

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway server bridge core tests scripts bench
	$(VENV)/bin/ruff format --check gateway server bridge core tests scripts bench
	$(VENV)/bin/mypy gateway server bridge core bench tests
	$(VENV)/bin/lint-imports
	bash scripts/buf-lint.sh

# The bench extra (matplotlib for the report's plots), on top of the dev install.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --progress-bar on -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP) protos services tools $(TOOLS)/ghz
	@command -v wrk >/dev/null || { echo "==> installing wrk"; $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq wrk >/dev/null; }
	@command -v valgrind >/dev/null || { echo "==> installing valgrind"; $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq valgrind >/dev/null; }
	PATH=$(CURDIR)/$(TOOLS):$$PATH $(PY) -m bench.run

# PlutosAI beside LiteLLM's proxy and Portkey's gateway on one nginx mock (bench/peers.py); installs
# the peers into .bench/ (git-ignored) first. ~7 min of load with the defaults (BENCH_SECONDS=8).
bench-peers: $(STAMP) $(BENCH_STAMP) protos
	bash scripts/bench-peers.sh
	$(PY) -m bench.peers
	$(PY) -m bench.report

# BENCHMARKS.md's generated tables and bench/plots/*.png from the figures in .bench/.
plots: $(BENCH_STAMP)
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) .plutos .pytest_cache .mypy_cache .ruff_cache
