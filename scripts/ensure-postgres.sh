#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for tests and prints its URL as the last line of stdout.
#
#   scripts/ensure-postgres.sh        # -> postgres://postgres@127.0.0.1:55432/corral_test
#
# - Installs Debian's `postgresql` when no server binaries are present (needs root).
# - The cluster lives under ${CORRAL_CACHE_DIR:-<repo>/.cache}/pg, listens only on 127.0.0.1:${CORRAL_PG_PORT:-55432}
#   (no Unix socket), trusts every loopback connection, and runs with fsync off: test data only.
# - As root, the cluster is owned by and runs as the `postgres` user (initdb refuses root). When that user
#   cannot reach the cache directory (e.g. a checkout under /root), the data directory goes to
#   /var/tmp/corral-pg-<port> instead; the chosen path is recorded in <cache>/pg/datadir.
# - Idempotent: with the server already running it only makes sure the database exists and prints the URL.
# - Everything except the URL goes to stderr. Stop the server with scripts/stop-postgres.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CORRAL_CACHE_DIR:-$repo/.cache}"
port="${CORRAL_PG_PORT:-55432}"
database="${CORRAL_PG_DATABASE:-corral_test}"
pgdir="$cache/pg"
url="postgres://postgres@127.0.0.1:${port}/${database}"

log() { echo "ensure-postgres: $*" >&2; }
# shellcheck source=lib/apt.sh
source "$repo/scripts/lib/apt.sh"

find_bin() {
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$dir" && -x "$dir/pg_ctl" && -x "$dir/initdb" && -x "$dir/psql" ]]; then
    echo "$dir"
  fi
}

pg_bin="$(find_bin)"
if [[ -z "$pg_bin" ]]; then
  if [[ "$(id -u)" -ne 0 ]]; then
    log "PostgreSQL is not installed and this script is not root: run 'apt-get install postgresql' first"
    exit 1
  fi
  log "installing Debian postgresql"
  apt_install postgresql
  pg_bin="$(find_bin)"
  if [[ -z "$pg_bin" ]]; then
    log "postgresql installed but no server binaries found under /usr/lib/postgresql"
    exit 1
  fi
fi

# Run PostgreSQL's programs as `postgres` when we are root; as ourselves otherwise.
if [[ "$(id -u)" -eq 0 ]]; then
  if ! id postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  as_pg() { (cd / && runuser -u postgres -- "$@"); }
  owner="postgres"
else
  as_pg() { (cd / && "$@"); }
  owner="$(id -un)"
fi

mkdir -p "$pgdir"
if [[ "$(id -u)" -eq 0 ]]; then
  chown "$owner:" "$pgdir"
fi
# Two callers at once (parallel test files) must not both initdb or start. The lock's descriptor
# is closed for the server (`9>&-` below): a postmaster that inherited it would hold it forever.
exec 9>"$pgdir/ensure.lock"
flock 9

# The data directory: inside the cache when its owner can reach it, else a fallback outside it.
if [[ -f "$pgdir/datadir" ]]; then
  data="$(cat "$pgdir/datadir")"
elif as_pg test -w "$pgdir" 2>/dev/null; then
  data="$pgdir/data"
else
  data="/var/tmp/corral-pg-${port}/data"
  log "user $owner cannot write $pgdir; using $data"
fi
echo "$data" >"$pgdir/datadir"
mkdir -p "$(dirname "$data")"
if [[ "$(id -u)" -eq 0 ]]; then
  chown "$owner:" "$(dirname "$data")"
fi
logfile="$(dirname "$data")/postgres.log"

if [[ ! -f "$data/PG_VERSION" ]]; then
  log "initdb $data"
  rm -rf "$data"
  as_pg "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >&2
fi

if as_pg "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  log "already running ($data)"
else
  if as_pg "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
    log "port $port already has a PostgreSQL server that is not $data; stop it or set CORRAL_PG_PORT"
    exit 1
  fi
  log "starting on 127.0.0.1:$port (log: $logfile)"
  as_pg "$pg_bin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >&2 9>&- || {
    log "server failed to start; last lines of $logfile:"
    tail -n 30 "$logfile" >&2 || true
    exit 1
  }
fi

# Wait until it accepts connections (pg_ctl -w already did; this covers a server that was still starting).
for _ in $(seq 1 60); do
  if as_pg "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then break; fi
  sleep 0.5
done

psql_pg() { as_pg "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
if [[ "$(psql_pg -tAc "select 1 from pg_database where datname = '$database'")" != "1" ]]; then
  log "creating database $database"
  # Another caller may create it at the same moment: only fail if it still does not exist.
  psql_pg -c "create database \"$database\"" >&2 2>/dev/null ||
    [[ "$(psql_pg -tAc "select 1 from pg_database where datname = '$database'")" == "1" ]]
fi

echo "$url"
