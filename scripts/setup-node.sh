#!/usr/bin/env bash
# Installs the npm dependencies (when package-lock.json changed or node_modules is missing) and
# compiles every workspace, and bundles the web dashboard (npm run build does the same). Idempotent and quick when nothing changed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
log() { echo "setup-node: $*" >&2; }

stamp="node_modules/.corral-lock-stamp"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund
  echo "$lock_sum" >"$stamp"
fi
# tsc -b never deletes outputs: when what a build includes changes (a tsconfig.json), start dist/ afresh
# so nothing it no longer compiles (tests, benchmarks) stays behind to ship.
build_stamp="node_modules/.corral-build-stamp"
build_sum="$(cat tsconfig.base.json packages/*/tsconfig.json | sha256sum | cut -d' ' -f1)"
if [ ! -f "$build_stamp" ] || [ "$(cat "$build_stamp")" != "$build_sum" ]; then
  log "build settings changed: cleaning dist/"
  rm -rf packages/server/dist packages/sdk/dist packages/cli/dist
fi
log "compiling TypeScript"
npx tsc -b packages/server packages/sdk packages/cli
log "bundling the web dashboard (packages/server/dist/dashboard)"
node packages/server/dashboard/build.mjs >&2
echo "$build_sum" >"$build_stamp"
