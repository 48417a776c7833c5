#!/usr/bin/env bash
# Makes sure a Docker engine answers, and that the offline test image `corral-test/busybox:latest` exists.
#
# - If no engine answers on $DOCKER_HOST (or /var/run/docker.sock), installs Debian's docker.io when
#   dockerd is missing and starts dockerd in the background (there is no systemd on the project's
#   machines). The daemon logs to $CORRAL_CACHE_DIR/dockerd.log.
#   By default (CORRAL_DOCKER_STORAGE=btrfs) that dockerd uses the `btrfs` storage driver on a
#   data-root that is a loop-mounted btrfs filesystem with quotas enabled, so the Corral driver can
#   limit each sandbox's whole writable layer (`--storage-opt size=`). The sparse image file
#   ($CORRAL_DOCKER_BTRFS_IMAGE, default $CORRAL_STATE_DIR/docker-btrfs.img, CORRAL_STATE_DIR
#   defaulting to /var/lib/corral) is made once, of $CORRAL_DOCKER_BTRFS_SIZE (default: half the free
#   space where it lives, at least 4 GiB; it is the ceiling of everything Docker stores) and mounted
#   on $CORRAL_DOCKER_BTRFS_ROOT (default $CORRAL_STATE_DIR/docker); later runs reuse the file and the
#   mount, and mount it again after a reboot. CORRAL_DOCKER_STORAGE=overlay2 starts dockerd with its
#   default settings instead (only the sandbox workspace is then disk-limited). When the kernel has
#   no btrfs and CORRAL_DOCKER_STORAGE is unset, it falls back to overlay2 with a warning.
# - An engine that already answers is left as it is, whatever its storage driver. btrfs-progs is
#   installed when missing either way (unless CORRAL_DOCKER_STORAGE=overlay2), for the btrfs tests.
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

# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

STORAGE="${CORRAL_DOCKER_STORAGE:-}"
STATE_DIR="${CORRAL_STATE_DIR:-/var/lib/corral}"
BTRFS_IMAGE="${CORRAL_DOCKER_BTRFS_IMAGE:-$STATE_DIR/docker-btrfs.img}"
BTRFS_ROOT="${CORRAL_DOCKER_BTRFS_ROOT:-$STATE_DIR/docker}"

btrfs_in_kernel() {
  grep -qw btrfs /proc/filesystems && return 0
  if command -v modprobe >/dev/null 2>&1; then $SUDO modprobe btrfs >/dev/null 2>&1 || true; fi
  grep -qw btrfs /proc/filesystems
}

# Size for a new image file: $CORRAL_DOCKER_BTRFS_SIZE, else half the free space of the filesystem
# holding it (in GiB, at least 4).
btrfs_image_size() {
  if [ -n "${CORRAL_DOCKER_BTRFS_SIZE:-}" ]; then echo "$CORRAL_DOCKER_BTRFS_SIZE"; return; fi
  local free_kib gib
  free_kib="$(df -Pk "$(dirname "$BTRFS_IMAGE")" | awk 'NR == 2 { print $4 }')"
  gib=$((free_kib / 2 / 1024 / 1024))
  if [ "$gib" -lt 4 ]; then gib=4; fi
  echo "${gib}G"
}

# Makes $BTRFS_ROOT a mounted btrfs with quotas enabled: reuses a mount that is there, mounts an
# existing image file (after a reboot), or creates the image file first.
prepare_btrfs_root() {
  if ! command -v mkfs.btrfs >/dev/null 2>&1 || ! command -v btrfs >/dev/null 2>&1; then
    log "installing btrfs-progs"
    apt_install btrfs-progs
  fi
  $SUDO mkdir -p "$(dirname "$BTRFS_IMAGE")" "$BTRFS_ROOT"
  if mountpoint -q "$BTRFS_ROOT"; then
    local fstype
    fstype="$(findmnt -n -o FSTYPE --mountpoint "$BTRFS_ROOT")"
    if [ "$fstype" != "btrfs" ]; then
      log "$BTRFS_ROOT is mounted but is $fstype, not btrfs; unmount it or set CORRAL_DOCKER_BTRFS_ROOT"
      exit 1
    fi
    log "reusing btrfs data-root $BTRFS_ROOT"
  else
    if [ ! -f "$BTRFS_IMAGE" ]; then
      local size
      size="$(btrfs_image_size)"
      log "creating sparse btrfs image $BTRFS_IMAGE ($size)"
      # Built under a temporary name, so an interrupted run never leaves a half-made image behind.
      $SUDO rm -f "$BTRFS_IMAGE.new"
      $SUDO truncate -s "$size" "$BTRFS_IMAGE.new"
      $SUDO mkfs.btrfs -q -f "$BTRFS_IMAGE.new" >/dev/null
      $SUDO mv "$BTRFS_IMAGE.new" "$BTRFS_IMAGE"
    fi
    log "mounting $BTRFS_IMAGE on $BTRFS_ROOT"
    # discard: space freed inside btrfs is punched out of the sparse file on the host.
    $SUDO mount -o loop,discard=async "$BTRFS_IMAGE" "$BTRFS_ROOT"
  fi
  # Idempotent; dockerd's btrfs driver sets per-subvolume qgroup limits for --storage-opt size=.
  $SUDO btrfs quota enable "$BTRFS_ROOT"
}

if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io"
  # iptables: dockerd's bridge networking and the driver's egress rules need it.
  apt_install docker.io iptables ca-certificates
fi
# nftables, conntrack, ipset: egress policy enforcement; dnsmasq-base: the egress tests' little internet.
if ! command -v nft >/dev/null 2>&1 || ! command -v dnsmasq >/dev/null 2>&1; then
  apt_install nftables conntrack ipset dnsmasq-base
fi

# btrfs-progs also serves docker-runtime-btrfs.conformance.test.ts, which runs its own btrfs dockerd
# even when the main engine was already running.
if [ "$STORAGE" != "overlay2" ] && [ "$STORAGE" != "default" ] && ! command -v mkfs.btrfs >/dev/null 2>&1 && btrfs_in_kernel; then
  log "installing btrfs-progs"
  apt_install btrfs-progs
fi

if engine_answers; then
  log "engine answers ($(docker version --format '{{.Server.Version}}'))"
else
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer and is not the local default socket; not starting dockerd"
    exit 1
  fi
  DOCKERD_ARGS=()
  case "$STORAGE" in
    "" | btrfs)
      if btrfs_in_kernel; then
        prepare_btrfs_root
        DOCKERD_ARGS=(--data-root "$BTRFS_ROOT" --storage-driver btrfs)
      elif [ "$STORAGE" = "btrfs" ]; then
        log "CORRAL_DOCKER_STORAGE=btrfs but the kernel has no btrfs"
        exit 1
      else
        log "WARNING: the kernel has no btrfs; starting dockerd with its default storage (overlay2):" \
          "sandboxes' disk limits will cover only their workspace"
      fi
      ;;
    overlay2 | default) ;;
    *)
      log "CORRAL_DOCKER_STORAGE must be btrfs or overlay2, not '$STORAGE'"
      exit 1
      ;;
  esac
  log "starting dockerd ${DOCKERD_ARGS[*]:-(default storage)} (log: $CACHE_DIR/dockerd.log)"
  # Packages' postinst may have left a stale pid file when no init system ran the daemon.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    $SUDO rm -f /var/run/docker.pid
  fi
  # containerd is started by dockerd itself when no system containerd socket answers.
  $SUDO sh -c 'nohup dockerd "$@" >>"$0" 2>&1 </dev/null &' "$CACHE_DIR/dockerd.log" "${DOCKERD_ARGS[@]}"
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

STORAGE_DRIVER="$(docker info --format '{{.Driver}}' 2>/dev/null || echo unknown)"
case "$STORAGE_DRIVER" in
  btrfs | zfs) log "storage driver $STORAGE_DRIVER: sandboxes' whole writable layer is disk-limited" ;;
  *) log "storage driver $STORAGE_DRIVER: sandboxes' disk limit covers only their workspace (see docs/runtime-docker.md)" ;;
esac

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
