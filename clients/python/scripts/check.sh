#!/usr/bin/env bash
# Lint, type-check, verify generated stubs and run the tests of the Python SDK.
# Usage: clients/python/scripts/check.sh [python]   (default: the repository's .venv, else python3)
# Live tests run too when PLUTOS_TEST_BASE_URL / PLUTOS_TEST_API_KEY (/ PLUTOS_TEST_GRPC_TARGET) are set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [[ -z "$PY" ]]; then
  if [[ -x ../../.venv/bin/python ]]; then PY=../../.venv/bin/python; else PY=python3; fi
fi
"$PY" -m pip install -q -e '.[dev]'
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
"$PY" scripts/gen.py --check
"$PY" -m pytest -q
