#!/usr/bin/env bash
# Builds the default sandbox images offline and imports them into the local Docker engine:
#   python:3.11-slim  Debian bookworm minbase + python3 (3.11), pip, ca-certificates (mmdebstrap, ~20-40 s once)
#   busybox:latest    Debian's busybox-static in an otherwise empty rootfs (< 1 s)
# No container registry is needed. Rootfs tarballs are cached under $CORRAL_CACHE_DIR/images (default
# <repo>/.cache/images) by a content key, and an image that is already present and current is kept,
# so a second run takes about a second. Images built here carry the label io.corral.image.recipe.
#
# Usage: bash scripts/build-images.sh [--force] [--try-pull]
#   --force     rebuild the rootfs tarballs and re-import the images
#   --try-pull  try `docker pull` first (only useful on a machine that can reach Docker Hub)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CORRAL_CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
mkdir -p "$CORRAL_CACHE_DIR"

log() { echo "build-images: $*" >&2; }

FORCE=0
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1; ARGS+=(--force) ;;
    --try-pull) ARGS+=(--try-pull) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) log "unknown argument: $arg"; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
}

# mmdebstrap builds the python rootfs; busybox-static (not the dynamically linked `busybox`) the busybox
# one; umoci and skopeo build and push OCI images, docker-registry and apache2-utils (htpasswd) run the
# loopback registries of the image-pull tests (scripts/start-registry.sh starts long-running ones).
apt_install mmdebstrap busybox-static umoci skopeo docker-registry apache2-utils ca-certificates

if [ -x "$REPO/scripts/ensure-docker.sh" ] || [ -f "$REPO/scripts/ensure-docker.sh" ]; then
  bash "$REPO/scripts/ensure-docker.sh"
elif ! docker version >/dev/null 2>&1; then
  log "no Docker engine answers and scripts/ensure-docker.sh is missing"
  exit 1
fi

if [ ! -d "$REPO/node_modules/tsx" ]; then
  log "node_modules is missing: run 'npm ci' in $REPO first"
  exit 1
fi

started=$(date +%s%N)
cd "$REPO"
node --conditions=development --import tsx packages/server/src/images/cli.ts ensure-defaults "${ARGS[@]}"
log "done in $(( ($(date +%s%N) - started) / 1000000 )) ms (force=$FORCE)"
