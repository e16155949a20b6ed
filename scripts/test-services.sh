#!/usr/bin/env bash
# Make sure a PostgreSQL server (with role/database plutos) and a Redis server run on loopback.
# Installs them with apt-get when missing (root, or sudo). Idempotent.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need_install=()
command -v pg_ctlcluster >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_install+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
if [ ${#need_install[@]} -gt 0 ]; then
  echo "==> installing ${need_install[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

# PostgreSQL: start the first cluster, create role and database.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  read -r ver cluster _ < <(pg_lsclusters -h | head -n1)
  if [ -z "${ver:-}" ]; then
    ver=$(ls /usr/lib/postgresql | sort -n | tail -n1)
    $SUDO pg_createcluster "$ver" main >/dev/null
    cluster=main
  fi
  echo "==> starting PostgreSQL $ver/$cluster"
  $SUDO pg_ctlcluster "$ver" "$cluster" start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if [ -z "$SUDO" ]; then
  psql_su() { runuser -u postgres -- psql -h 127.0.0.1 -v ON_ERROR_STOP=1 -qtA "$@" 2>/dev/null || runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
else
  psql_su() { sudo -u postgres psql -v ON_ERROR_STOP=1 -qtA "$@"; }
fi
if [ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname='plutos'")" != "1" ]; then
  psql_su -c "CREATE ROLE plutos LOGIN SUPERUSER PASSWORD 'plutos'"
fi
for db in plutos_test plutos_bench; do
  if [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname='$db'")" != "1" ]; then
    psql_su -c "CREATE DATABASE $db OWNER plutos"
  fi
done
echo "==> PostgreSQL ready on 127.0.0.1:5432 (plutos/plutos)"

# Redis: a loopback server on 6379 (tests start their own extra ones where they need to kill them).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "==> starting redis-server on 127.0.0.1:6379"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no >/dev/null
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
echo "==> Redis ready on 127.0.0.1:6379"
