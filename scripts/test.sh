#!/usr/bin/env bash
# Runs every test from a clean clone on a fresh machine: installs npm dependencies and the Debian
# packages the tests use (Docker Engine, PostgreSQL, a local registry, image tools), starts them,
# typechecks, lints, then runs every *.test.ts with node's test runner. Exits non-zero on any failure.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh path/a.test.ts  # only these files (services are still started)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CORRAL_CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
mkdir -p "$CORRAL_CACHE_DIR/logs"
log() { echo "test: $*" >&2; }
# shellcheck source=lib/apt.sh
source "$REPO/scripts/lib/apt.sh"
start=$(date +%s)

# Independent setup steps run in parallel; each logs to its own file.
run_bg() {
  local name="$1"; shift
  ( "$@" >"$CORRAL_CACHE_DIR/logs/$name.out" 2>"$CORRAL_CACHE_DIR/logs/$name.log" ) &
  BG_PID=$!
}
wait_step() {
  local name="$1" pid="$2"
  if ! wait "$pid"; then
    log "setup step '$name' failed; its log:"
    tail -n 60 "$CORRAL_CACHE_DIR/logs/$name.log" >&2 || true
    exit 1
  fi
  log "setup step '$name' done"
}

# Debian packages the tests drive directly: tmux (interactive PTY sessions), OpenSSH's client.
test_tools() {
  apt_install tmux openssh-client curl openssl
}

# apt-get takes a lock: the steps that install Debian packages run one after another in one job.
system_setup() {
  test_tools
  bash scripts/ensure-oci.sh --crun
  bash scripts/ensure-docker.sh
  bash scripts/ensure-postgres.sh >"$CORRAL_CACHE_DIR/logs/pg-url"
  bash scripts/start-registry.sh --auth corral:corral-secret
  bash scripts/build-images.sh
}
run_bg system system_setup; sys_pid=$BG_PID
run_bg node bash scripts/setup-node.sh; node_pid=$BG_PID
wait_step node "$node_pid"

log "linting; typechecking the tests and the benchmarks (neither is built into dist, both must keep compiling)"
npx eslint .
npx tsc -p tsconfig.test.json
npx tsc -p bench --noEmit

wait_step system "$sys_pid"
CORRAL_TEST_DATABASE_URL="$(tail -n 1 "$CORRAL_CACHE_DIR/logs/pg-url")"
export CORRAL_TEST_DATABASE_URL
# Pulls reach loopback registries only when listed: these are the local ones start-registry.sh runs.
export CORRAL_REGISTRY_INSECURE="${CORRAL_REGISTRY_INSECURE:-127.0.0.1:5000,127.0.0.1:5001}"
log "setup took $(( $(date +%s) - start ))s; PostgreSQL at $CORRAL_TEST_DATABASE_URL"

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find packages -path '*/node_modules' -prune -o -path '*/dist' -prune -o -name '*.test.ts' -print | sort)
fi
log "running ${#files[@]} test file(s)"
node --conditions=development --import tsx --test --test-concurrency="${CORRAL_TEST_CONCURRENCY:-2}" "${files[@]}"
log "all tests passed in $(( $(date +%s) - start ))s"
