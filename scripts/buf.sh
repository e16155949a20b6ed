#!/usr/bin/env bash
# buf on this repository's workspace, working offline on a fresh clone:
#   - google/api/*.proto come from the googleapis-common-protos wheel (copied into .tools/googleapis,
#     the workspace's second module), so no Buf Schema Registry access is needed;
#   - buf itself comes from npm (@bufbuild/buf, pinned);
#   - `generate` with buf.gen.yaml's protoc built-in generators needs protoc: Debian's
#     protobuf-compiler, installed with apt-get when missing.
# Usage: bash scripts/buf.sh lint | bash scripts/buf.sh generate   (PYTHON: a Python with
# googleapis-common-protos; default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
api_dir=$("$PYTHON" -c "import google.api, os; print(os.path.dirname(list(google.api.__path__)[0]))")
rm -rf .tools/googleapis && mkdir -p .tools/googleapis/google/api
cp "$api_dir"/api/{annotations,http,field_behavior,launch_stage,client}.proto .tools/googleapis/google/api/ 2>/dev/null || \
  cp "$api_dir"/api/*.proto .tools/googleapis/google/api/
BUF=${BUF:-.tools/node_modules/.bin/buf}
if [[ ! -x "$BUF" ]]; then
  echo "==> installing @bufbuild/buf@$BUF_VERSION from npm"
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >/dev/null
  BUF=.tools/node_modules/.bin/buf
fi
if [[ "${1:-}" == generate ]] && ! command -v protoc >/dev/null; then
  echo "==> installing protobuf-compiler with apt-get (protoc, for buf.gen.yaml's built-in generators)"
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
exec "$BUF" "$@"
