#!/usr/bin/env bash
# Regenerates gen/plutos/v1 (protobuf messages + grpc-go stubs) from ../../protos.
#
# Deterministic: the output depends only on the protos, the plugin versions pinned below and the
# protoc bundled with grpcio-tools (pinned in the repository's pyproject.toml). protoc is run as
# `python -m grpc_tools.protoc`; the Python is $PYTHON, else the repository's .venv, else python3,
# and needs grpcio-tools and googleapis-common-protos (for google/api/*.proto).
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.11
PROTOC_GEN_GO_GRPC_VERSION=v1.6.1
MODULE=github.com/plutos-ai/go-sdk

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
protos="$repo/protos"
bin="$here/.bin"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi

GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"

googleapis="$("$PYTHON" -c 'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))')"
wellknown="$("$PYTHON" -c 'import grpc_tools, os; print(os.path.join(list(grpc_tools.__path__)[0], "_proto"))')"

cd "$protos"
mapfile -t files < <(find plutos -name '*.proto' | LC_ALL=C sort)

rm -rf "$here/gen"
mkdir -p "$here/gen"
"$PYTHON" -m grpc_tools.protoc \
  -I"$protos" -I"$googleapis" -I"$wellknown" \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out="$here" --go_opt=module="$MODULE" \
  --go-grpc_out="$here" --go-grpc_opt=module="$MODULE" \
  "${files[@]}"

echo "generated ${#files[@]} protos into gen/ (protoc-gen-go ${PROTOC_GEN_GO_VERSION}, protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION})"
