#!/usr/bin/env bash
# buf lint on protos/, with google/api imports resolved from the installed googleapis-common-protos
# wheel (no network access to the Buf Schema Registry needed). buf comes from npm (@bufbuild/buf).
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
api_dir=$(.venv/bin/python -c "import google.api, os; print(os.path.dirname(list(google.api.__path__)[0]))")
rm -rf .tools/googleapis && mkdir -p .tools/googleapis/google/api
cp "$api_dir"/api/{annotations,http,field_behavior,launch_stage,client}.proto .tools/googleapis/google/api/ 2>/dev/null || \
  cp "$api_dir"/api/*.proto .tools/googleapis/google/api/
if [ ! -x .tools/node_modules/.bin/buf ]; then
  echo "==> installing @bufbuild/buf@$BUF_VERSION from npm"
  npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
.tools/node_modules/.bin/buf lint
echo "buf lint: clean"
