#!/usr/bin/env bash
# Runs Corral on a fresh machine: installs what it needs (npm dependencies, Docker Engine from
# Debian, the default python:3.11-slim image built offline), compiles, and starts `corral serve`.
# Arguments are passed to `corral serve` (try --help). Settings come from CORRAL_* variables.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CORRAL_CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"

bash scripts/setup-node.sh
if [ "${CORRAL_RUNTIME:-docker}" = "docker" ]; then
  bash scripts/ensure-docker.sh
  bash scripts/build-images.sh
fi
exec node packages/cli/bin/corral.js serve "$@"
