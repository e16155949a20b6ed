#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the dashboard's browser tests (Playwright for Python
# drives it through its executable path; no browser is downloaded by Playwright). Idempotent.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "==> chromium ready: $(command -v chromium)"
