#!/usr/bin/env bash
# Stops the test PostgreSQL cluster that scripts/ensure-postgres.sh started. Keeps its data;
# pass --purge to delete the data directory too. Idempotent: does nothing when it is not running.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CORRAL_CACHE_DIR:-$repo/.cache}"
pgdir="$cache/pg"

log() { echo "stop-postgres: $*" >&2; }

if [[ ! -f "$pgdir/datadir" ]]; then
  log "no cluster recorded under $pgdir"
  exit 0
fi
data="$(cat "$pgdir/datadir")"

pg_bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [[ -f "$data/postmaster.pid" ]]; then
  if [[ -z "$pg_bin" ]]; then
    log "PostgreSQL binaries not found; cannot stop $data"
    exit 1
  fi
  if [[ "$(id -u)" -eq 0 ]]; then
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
  else
    as_pg() { (cd / && "$@"); }
  fi
  if as_pg "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping $data"
    as_pg "$pg_bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2
  fi
fi

if [[ "${1:-}" == "--purge" ]]; then
  log "removing $data"
  rm -rf "$data"
  rm -f "$pgdir/datadir"
fi
