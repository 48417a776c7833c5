#!/usr/bin/env bash
# Builds the default sandbox images offline and imports them into the local Docker engine:
#   python:3.11-slim  Debian bookworm minbase + python3 (3.11), pip, ca-certificates (mmdebstrap, ~20-40 s once)
#   busybox:latest    Debian's busybox-static in an otherwise empty rootfs (< 1 s)
# No container registry and no node_modules are needed (scripts/test.sh runs this while npm installs).
# Rootfs tarballs are cached under $CORRAL_CACHE_DIR/images/rootfs (default <repo>/.cache) by a content
# key; an image that is present and current (label io.corral.image.recipe=<key>) is kept, and an image
# without that label (e.g. a real pulled one) is never replaced, so a second run takes about a second.
# The recipes and keys are the same as packages/server/src/images/recipes.ts (images.test checks that).
# Also installs the tools the image library and its tests use: mmdebstrap, busybox-static, umoci,
# skopeo, docker-registry, apache2-utils.
#
# Usage: bash scripts/build-images.sh [--force] [--try-pull] [--print-keys]
#   --force       rebuild the rootfs tarballs and re-import the images
#   --try-pull    try `docker pull` first (only useful on a machine that can reach Docker Hub)
#   --print-keys  print the content keys and exit (installs busybox-static if needed)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
ROOTFS_DIR="$CACHE_DIR/images/rootfs"

# --- recipes: keep in step with packages/server/src/images/recipes.ts -------------------------------
SUITE=bookworm
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PY_VERSION=1
PY_PACKAGES=python3,python3-pip,python-is-python3,ca-certificates
PY_ENV=("PATH=$STD_PATH" "LANG=C.UTF-8")
PY_CMD='["python3"]'
BB_VERSION=1
BB_PACKAGES=busybox-static
BB_ENV=("PATH=$STD_PATH")
BB_CMD='["sh"]'
LABEL=io.corral.image.recipe
# ------------------------------------------------------------------------------------------------------

log() { echo "build-images: $*" >&2; }

FORCE=0
TRY_PULL=0
PRINT_KEYS=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --try-pull) TRY_PULL=1 ;;
    --print-keys) PRINT_KEYS=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) log "unknown argument: $arg"; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

join_by() { local sep="$1" out="" item; shift; for item in "$@"; do out="${out:+$out$sep}$item"; done; printf '%s' "$out"; }
# key KIND VERSION PACKAGES ENV_JOINED CMD_JSON EXTRA -> KIND-vVERSION-<12 hex of sha256(material)>
key() {
  local material="$1|$2|$SUITE|$3|$4|$5|$6"
  printf '%s-v%s-%s' "$1" "$2" "$(printf '%s' "$material" | sha256sum | cut -c1-12)"
}

if [ "$PRINT_KEYS" -eq 1 ]; then
  apt_install busybox-static >&2
else
  # mmdebstrap builds the python rootfs; busybox-static (not the dynamically linked `busybox`) the
  # busybox one; umoci + skopeo build and push OCI images; docker-registry + apache2-utils (htpasswd)
  # run the loopback registries of the image-pull tests.
  apt_install mmdebstrap busybox-static umoci skopeo docker-registry apache2-utils ca-certificates
fi

BB_BIN=/bin/busybox
PY_KEY="$(key python "$PY_VERSION" "$PY_PACKAGES" "$(join_by ';' "${PY_ENV[@]}")" "$PY_CMD" "")"
BB_KEY="$(key busybox "$BB_VERSION" "$BB_PACKAGES" "$(join_by ';' "${BB_ENV[@]}")" "$BB_CMD" "$(sha256sum "$BB_BIN" | cut -d' ' -f1)")"
if [ "$PRINT_KEYS" -eq 1 ]; then
  echo "python $PY_KEY"
  echo "busybox $BB_KEY"
  exit 0
fi

if [ -f "$REPO/scripts/ensure-docker.sh" ]; then
  bash "$REPO/scripts/ensure-docker.sh"
elif ! docker version >/dev/null 2>&1; then
  log "no Docker engine answers and scripts/ensure-docker.sh is missing"
  exit 1
fi

mkdir -p "$ROOTFS_DIR"
# An interrupted build leaves no partial tarball behind.
trap 'rm -rf "$ROOTFS_DIR"/*.tmp-$$.tar' EXIT

# build_python OUT.tar
build_python() {
  log "mmdebstrap --variant=minbase --include=$PY_PACKAGES $SUITE (about 20-40 s)"
  mmdebstrap --quiet --variant=minbase --format=tar "--include=$PY_PACKAGES" \
    '--aptopt=APT::Install-Recommends "false"' \
    '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    '--customize-hook=echo sandbox > "$1"/etc/hostname' \
    "$SUITE" "$1"
}

# build_busybox OUT.tar: the static binary, one symlink per applet, a minimal /etc.
build_busybox() {
  local out="$1" tmp applet dir
  tmp="$(mktemp -d "$ROOTFS_DIR/.busybox.XXXXXX")"
  mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,dev,proc,sys,var,home}
  cp "$BB_BIN" "$tmp/bin/busybox"
  chmod 755 "$tmp/bin/busybox"
  for applet in $("$BB_BIN" --list-full); do
    applet="${applet#/}"
    dir="$(dirname "$applet")"
    mkdir -p "$tmp/$dir"
    if [ ! -e "$tmp/$applet" ] && [ ! -L "$tmp/$applet" ]; then ln -s /bin/busybox "$tmp/$applet"; fi
  done
  chmod 1777 "$tmp/tmp"
  chmod 700 "$tmp/root"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
  printf 'sandbox\n' >"$tmp/etc/hostname"
  tar -C "$tmp" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$out" .
  rm -rf "$tmp"
}

# ensure_image TAG KIND KEY CMD_JSON ENV...
ensure_image() {
  local tag="$1" kind="$2" key="$3" cmd="$4" started current old_id="" tar tmp action id
  shift 4
  started=$(date +%s%N)
  if docker image inspect "$tag" >/dev/null 2>&1; then
    current="$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$tag" 2>/dev/null || true)"
    if [ "$FORCE" -eq 0 ] && { [ -z "$current" ] || [ "$current" = "<no value>" ] || [ "$current" = "$key" ]; }; then
      if [ -z "$current" ] || [ "$current" = "<no value>" ]; then
        log "$tag: present (not built by corral; kept)"
      else
        log "$tag: present ($key)"
      fi
      return 0
    fi
    old_id="$(docker image inspect -f '{{.Id}}' "$tag")"
  elif [ "$TRY_PULL" -eq 1 ]; then
    log "$tag: pulling"
    if timeout 120 docker pull -q "$tag" >/dev/null 2>&1; then
      log "$tag: pulled"
      return 0
    fi
    log "$tag: pull failed; building offline"
  fi
  tar="$ROOTFS_DIR/$key.tar"
  if [ "$FORCE" -eq 1 ] || [ ! -f "$tar" ]; then
    # Keep the .tar suffix: mmdebstrap picks its output format from it.
    tmp="$ROOTFS_DIR/$key.tmp-$$.tar"
    rm -rf "$tmp"
    "build_$kind" "$tmp"
    mv -f "$tmp" "$tar"
    log "built $kind rootfs $tar ($(du -h "$tar" | cut -f1))"
  else
    log "cached $kind rootfs $tar"
  fi
  local changes=(--change "CMD $cmd" --change "LABEL $LABEL=$key") entry
  for entry in "$@"; do changes+=(--change "ENV $entry"); done
  id="$(docker import "${changes[@]}" "$tar" "$tag")"
  action=built
  if [ -n "$old_id" ]; then
    action=rebuilt
    if [ "$old_id" != "$id" ] && docker rmi "$old_id" >/dev/null 2>&1; then log "removed replaced image ${old_id:0:19}"; fi
  fi
  log "$tag: $action in $(( ($(date +%s%N) - started) / 1000000 )) ms ($key)"
}

overall=$(date +%s%N)
ensure_image python:3.11-slim python "$PY_KEY" "$PY_CMD" "${PY_ENV[@]}"
ensure_image busybox:latest busybox "$BB_KEY" "$BB_CMD" "${BB_ENV[@]}"
log "done in $(( ($(date +%s%N) - overall) / 1000000 )) ms"
