#!/usr/bin/env bash
# make bench-peers: install the peers and tools into .bench/ (git-ignored, throwaway) and the Debian
# packages the run needs; idempotent (a second run only checks). Everything comes from package
# registries: nginx and wrk (apt-get), LiteLLM's proxy (PyPI, pinned in
# bench/peers/requirements-litellm.txt, its own venv), Portkey's gateway (npm ci from
# bench/peers/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PYTHON="${PYTHON:-python3.11}"
BENCH=.bench
mkdir -p "$BENCH"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> [bench-peers] installing ${need[*]} with apt-get"
  $SUDO apt-get update -qq
  # bench/peers.py runs its own nginx (own prefix and port); the package's service is not used.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "==> [bench-peers] nginx $(nginx -v 2>&1 | sed 's|.*/||'), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), node $(node --version)"

# LiteLLM's proxy in its own venv (its dependencies would clash with the gateway's).
REQ=bench/peers/requirements-litellm.txt
STAMP="$BENCH/litellm-venv/.installed"
if [ ! -f "$STAMP" ] || ! cmp -s "$REQ" "$STAMP"; then
  echo "==> [bench-peers] installing LiteLLM's proxy ($(grep -v '^#' $REQ)) into $BENCH/litellm-venv (~1-2 min)"
  rm -rf "$BENCH/litellm-venv"
  "$PYTHON" -m venv "$BENCH/litellm-venv"
  "$BENCH/litellm-venv/bin/pip" install -q --upgrade pip
  "$BENCH/litellm-venv/bin/pip" install --progress-bar on -r "$REQ"
  cp "$REQ" "$STAMP"
else
  echo "==> [bench-peers] LiteLLM's proxy already in $BENCH/litellm-venv"
fi

# Portkey's gateway from the committed lockfile.
if ! cmp -s bench/peers/package-lock.json "$BENCH/portkey/package-lock.json" || [ ! -d "$BENCH/portkey/node_modules" ]; then
  echo "==> [bench-peers] npm ci: Portkey's gateway ($(grep -o '"@portkey-ai/gateway": "[^"]*"' bench/peers/package.json)) into $BENCH/portkey"
  rm -rf "$BENCH/portkey"
  mkdir -p "$BENCH/portkey"
  cp bench/peers/package.json bench/peers/package-lock.json "$BENCH/portkey/"
  (cd "$BENCH/portkey" && npm ci --no-audit --no-fund)
else
  echo "==> [bench-peers] Portkey's gateway already in $BENCH/portkey"
fi
echo "==> [bench-peers] peers installed"
