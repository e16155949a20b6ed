# PlutosAI — every target installs what it needs (virtualenv, packages, generated code).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+asyncpg://plutos:plutos@127.0.0.1:5432/plutos_test
REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: help install tools protos check-generated run test test-sqlite test-postgres lint bench clean services

help:
	@echo "make run    - install, generate code, serve REST on :3000 and gRPC on :50051 (prints a dev key)"
	@echo "make test   - install, start PostgreSQL/Redis if needed, run the whole test suite"
	@echo "make lint   - ruff, mypy, buf lint;  make bench - benchmarks (writes BENCHMARKS.md)"

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
$(TOOLS)/grpcurl:
	@if command -v go >/dev/null; then echo "==> installing grpcurl"; GOBIN=$(CURDIR)/$(TOOLS) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3; \
	else echo "go not found: skipping grpcurl"; fi

tools: $(TOOLS)/grpcurl

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

# CI: regenerating from protos/ must leave the committed code unchanged.
check-generated: protos
	@git diff --exit-code --stat -- gen/ || { echo "generated code is stale: run 'make protos' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen/)" || { git status --porcelain -- gen/; echo "untracked generated files"; exit 1; }

run: $(STAMP) protos
	$(VENV)/bin/plutos serve --dev-key

services:
	@bash scripts/test-services.sh

test: $(STAMP) protos services tools
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: $(STAMP)
	@echo "==> tests against SQLite"
	$(PY) -m pytest -q -p no:cacheprovider

test-postgres: $(STAMP)
	@echo "==> tests against PostgreSQL ($(PG_URL))"
	PLUTOS_TEST_DATABASE_URL=$(PG_URL) $(PY) -m pytest -q -p no:cacheprovider -m "not sqlite_only"

lint: $(STAMP)
	$(VENV)/bin/ruff check server bridge tests scripts bench
	$(VENV)/bin/ruff format --check server bridge tests scripts bench
	$(VENV)/bin/mypy server bridge
	bash scripts/buf-lint.sh

bench: $(STAMP) protos services
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .plutos .pytest_cache .mypy_cache .ruff_cache
