#!/usr/bin/env bash
# buf lint on protos/ (google/api imports from the googleapis-common-protos wheel; see scripts/buf.sh).
set -euo pipefail
bash "$(dirname "$0")/buf.sh" lint
echo "buf lint: clean"
