#!/usr/bin/env bash
# Runs every test from a clean clone on a fresh machine: installs npm dependencies and the Debian
# packages the tests use (Docker Engine, PostgreSQL, a local registry, image tools, Chromium, a one-node
# Kubernetes built from Debian's source package), starts them, typechecks, lints, then runs every
# *.test.ts with node's test runner. Exits non-zero on any failure.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh path/a.test.ts  # only these files (services are still started)
#   CORRAL_TEST_KUBERNETES=0 scripts/test.sh   # without the Kubernetes cluster: its tests skip
#
# The Kubernetes binaries are built once into $CORRAL_CACHE_DIR/kubernetes/bin (7-20 minutes, in
# parallel with the rest of the setup); a cluster this script started is stopped when it exits.
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
  bash scripts/ensure-criu.sh >/dev/null
  bash scripts/ensure-docker.sh
  bash scripts/ensure-postgres.sh >"$CORRAL_CACHE_DIR/logs/pg-url"
  bash scripts/start-registry.sh --auth corral:corral-secret
  bash scripts/build-images.sh
  bash scripts/ensure-chromium.sh >/dev/null
}
run_bg system system_setup; sys_pid=$BG_PID
export CORRAL_TEST_KUBERNETES="${CORRAL_TEST_KUBERNETES:-1}"
kubernetes="$CORRAL_TEST_KUBERNETES"
if [ "$kubernetes" = 1 ]; then
  # Building needs apt too; apt_install waits for the other job's lock.
  run_bg kubernetes-build bash scripts/ensure-kubernetes.sh --build-only; kbuild_pid=$BG_PID
fi
run_bg node bash scripts/setup-node.sh; node_pid=$BG_PID
wait_step node "$node_pid"

log "linting; typechecking the tests, the benchmarks (neither is built into dist, both must keep compiling) and the dashboard"
npx eslint .
npx tsc -p tsconfig.test.json
npx tsc -p bench --noEmit
npx tsc -p packages/server/dashboard

wait_step system "$sys_pid"
# The CRIU ensure-criu.sh built (memory checkpoints), for servers the tests start.
export CORRAL_CRIU="${CORRAL_CRIU:-$CORRAL_CACHE_DIR/criu/current}"
if [ "$kubernetes" = 1 ]; then
  wait_step kubernetes-build "$kbuild_pid"
  # The kubelet runs Pods on the Docker Engine system_setup started.
  # A cluster that was already up (a developer's) is left running; one started here is stopped.
  if ! curl -skf --max-time 2 "https://127.0.0.1:${CORRAL_K8S_API_PORT:-6443}/readyz" >/dev/null 2>&1; then
    trap 'bash scripts/stop-kubernetes.sh >&2 || true' EXIT
  fi
  CORRAL_K8S_KUBECONFIG="$(bash scripts/ensure-kubernetes.sh 2>"$CORRAL_CACHE_DIR/logs/kubernetes-start.log" | tail -n 1)"
  export CORRAL_K8S_KUBECONFIG
  log "Kubernetes cluster up; kubeconfig $CORRAL_K8S_KUBECONFIG"
fi
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
