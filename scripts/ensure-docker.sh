#!/usr/bin/env bash
# Makes sure a Docker engine answers, and that the offline test image `corral-test/busybox:latest` exists.
#
# - If no engine answers on $DOCKER_HOST (or /var/run/docker.sock), installs Debian's docker.io when
#   dockerd is missing and starts dockerd in the background (there is no systemd on the project's
#   machines). The daemon logs to $CORRAL_CACHE_DIR/dockerd.log.
# - Installs busybox-static and imports a tiny busybox rootfs as corral-test/busybox:latest, so tests
#   need no registry.
# Idempotent: running it again when everything is in place does nothing but check.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
TEST_IMAGE="${CORRAL_TEST_IMAGE:-corral-test/busybox:latest}"
mkdir -p "$CACHE_DIR"

log() { echo "ensure-docker: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  # iptables: dockerd's bridge networking and the driver's egress rules need it.
  apt_install docker.io iptables ca-certificates
fi

if engine_answers; then
  log "engine answers ($(docker version --format '{{.Server.Version}}'))"
else
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer and is not the local default socket; not starting dockerd"
    exit 1
  fi
  log "starting dockerd (log: $CACHE_DIR/dockerd.log)"
  # Packages' postinst may have left a stale pid file when no init system ran the daemon.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    $SUDO rm -f /var/run/docker.pid
  fi
  # containerd is started by dockerd itself when no system containerd socket answers.
  $SUDO sh -c "nohup dockerd >>'$CACHE_DIR/dockerd.log' 2>&1 </dev/null &"
  for _ in $(seq 1 60); do
    if engine_answers; then break; fi
    sleep 0.5
  done
  if ! engine_answers; then
    log "dockerd did not answer within 30 s; last log lines:"
    tail -n 30 "$CACHE_DIR/dockerd.log" >&2 || true
    exit 1
  fi
  log "engine answers ($(docker version --format '{{.Server.Version}}'))"
fi

if docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
  log "image $TEST_IMAGE present"
  exit 0
fi

if [ ! -x /bin/busybox ]; then
  log "installing busybox-static"
  apt_install busybox-static
fi

log "building $TEST_IMAGE from /bin/busybox"
ROOTFS="$(mktemp -d "$CACHE_DIR/busybox-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT
mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,tmp,etc,root,dev,proc,sys,sandbox-workspace}
cp /bin/busybox "$ROOTFS/bin/busybox"
# `--install -s DIR` would write absolute links to the host's paths; make them relative to the rootfs.
for applet in $(/bin/busybox --list-full); do
  target="$ROOTFS/$applet"
  mkdir -p "$(dirname "$target")"
  if [ ! -e "$target" ]; then ln -s /bin/busybox "$target"; fi
done
chmod 1777 "$ROOTFS/tmp"
chmod 700 "$ROOTFS/root"
cat >"$ROOTFS/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$ROOTFS/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
tar -C "$ROOTFS" --numeric-owner -c . |
  docker import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$TEST_IMAGE" >/dev/null
log "image $TEST_IMAGE built"
