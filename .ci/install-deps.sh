#!/usr/bin/env bash
# Installs, when missing, what the tests need on Debian 12 (bookworm):
#   redis-server + redis-tools   redis-server, redis-cli
#   postgresql                   initdb, pg_ctl, postgres in /usr/lib/postgresql/*/bin
#   postgresql-client            psql, pg_dump, pg_isready
#   ansible-core                 ansible-playbook
#   nodejs + npm, then the npm package chdb (global)   the ClickHouse engine
#                                as a library, for batch/servertest's ClickHouse
#   clickhouse-server            Debian's 18.16, for the native-protocol tests
# Idempotent and quiet: prints nothing when everything is there, runs
# `apt-get update` only when something must be installed, and shows apt's
# output only if it fails. Runs as root, or through sudo when available.
#
# The tests start their own servers on free loopback ports (see
# batch/servertest), so the daemons that Debian's packages start by default
# are not wanted: redis-server (6379) and the "main" PostgreSQL cluster
# (5432) are kept from starting during the install (policy-rc.d), and a
# running default redis-server is stopped and its autostart disabled.
# Set KEEP_DEFAULT_SERVICES=1 to leave the default services alone.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { echo "install-deps: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo env DEBIAN_FRONTEND=noninteractive)
  else
    log "must run as root (no sudo found)"
    exit 1
  fi
fi
as_root() { "${SUDO[@]}" "$@"; }

# Newest /usr/lib/postgresql/N/bin, or nothing.
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$d" ] && echo "$d"
}

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have redis-server || missing+=(redis-server)
have redis-cli || missing+=(redis-tools)
pgbin=$(pg_bindir || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ] || [ ! -x "$pgbin/postgres" ]; then
  missing+=(postgresql)
fi
{ have psql && have pg_dump && have pg_isready; } || missing+=(postgresql-client)
have ansible-playbook || missing+=(ansible-core)
have node || missing+=(nodejs)
have npm || missing+=(npm)
{ have clickhouse-server || [ -x /usr/sbin/clickhouse-server ]; } || missing+=(clickhouse-server)

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  aptlog=$(mktemp)
  policy_added=""
  cleanup() {
    rm -f "$aptlog"
    if [ -n "$policy_added" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
  }
  trap cleanup EXIT
  # Keep the packages' maintainer scripts from starting their daemons.
  if [ -z "${KEEP_DEFAULT_SERVICES:-}" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  if ! as_root apt-get -qq update >"$aptlog" 2>&1 ||
    ! as_root apt-get -qq install -y --no-install-recommends \
      -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" >>"$aptlog" 2>&1; then
    log "apt-get failed:"
    cat "$aptlog" >&2
    exit 1
  fi
fi

# Tests look for initdb/pg_ctl/postgres in PATH and in
# /usr/lib/postgresql/*/bin; link them into PATH too for other tools.
pgbin=$(pg_bindir || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  log "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin after install"
  exit 1
fi
for tool in initdb pg_ctl postgres; do
  if ! have "$tool"; then
    as_root ln -sf "$pgbin/$tool" "/usr/local/bin/$tool"
  fi
done
# PostgreSQL refuses to run as root: the tests run it as "postgres" (made by
# postgresql-common) or else "nobody".
if ! id postgres >/dev/null 2>&1 && ! id nobody >/dev/null 2>&1; then
  as_root useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

# Stop and disable the package's default redis-server, found by its own pid
# file only (never a test's server).
stop_default() { # service pidfile...
  local svc=$1 pidfile pid
  shift
  for pidfile in "$@"; do
    [ -r "$pidfile" ] || continue
    pid=$(head -n 1 "$pidfile" 2>/dev/null | tr -dc '0-9')
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    if have service; then
      as_root service "$svc" stop >/dev/null 2>&1 || true
    fi
    if kill -0 "$pid" 2>/dev/null; then
      as_root kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    log "stopped the default $svc (pid $pid)"
  done
  if [ -d /run/systemd/system ] && have systemctl; then
    as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
  elif [ -e "/etc/init.d/$svc" ] && have update-rc.d; then
    as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
}
if [ -z "${KEEP_DEFAULT_SERVICES:-}" ]; then
  stop_default redis-server /run/redis/redis-server.pid /var/run/redis/redis-server.pid
  stop_default clickhouse-server /run/clickhouse-server/clickhouse-server.pid /var/run/clickhouse-server/clickhouse-server.pid
fi

# The ClickHouse engine for the tests: chdb's libchdb.so (npm package chdb,
# which brings @chdb/lib-linux-x64-gnu), installed globally; servertest finds
# it with `npm root -g` (or CHDB_NODE_PATH). Pinned: the test endpoint
# (batch/servertest/clickhouse_http.js) is written against this version.
CHDB_VERSION=3.4.0
chdb_root=$(npm root -g 2>/dev/null || true)
if [ -z "$chdb_root" ] ||
  [ "$(NODE_PATH="$chdb_root" node -p 'require("chdb/package.json").version' 2>/dev/null || true)" != "$CHDB_VERSION" ] ||
  ! NODE_PATH="$chdb_root" node -e 'require("chdb")' >/dev/null 2>&1; then
  log "installing the npm package chdb@$CHDB_VERSION (ClickHouse engine for the tests)"
  npmlog=$(mktemp)
  if ! as_root npm install -g --no-audit --no-fund --loglevel=error "chdb@$CHDB_VERSION" >"$npmlog" 2>&1; then
    log "npm install failed:"
    cat "$npmlog" >&2
    rm -f "$npmlog"
    exit 1
  fi
  rm -f "$npmlog"
fi
