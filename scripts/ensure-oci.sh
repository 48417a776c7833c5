#!/usr/bin/env bash
# Makes sure this host can run the daemonless `oci` runtime driver (packages/server/src/runtime/oci):
#
# - runc (the OCI runtime the driver calls); gcc, libc6-dev and libseccomp-dev (on first start the
#   driver compiles packages/server/agent/: corral-agent, each sandbox's static PID 1 and shim, and
#   corral-seccomp, which compiles the seccomp profile to BPF once, and corral-nflog, which reads the
#   NFLOG group of the egress connection log and needs the kernel headers of linux-libc-dev);
#   iproute2 (network namespaces, veth, bridge), iptables (egress NAT and isolation), e2fsprogs
#   (per-sandbox ext4 disk images), util-linux (mount, losetup), GNU tar and zstd (layer unpacking),
#   attr (overlay opaque-directory xattrs), busybox-static (test image); buildah and skopeo
#   (Dockerfile builds, POST /api/v1/images/build: docs/images.md); nftables and conntrack
#   (egress policy firewall), dnsmasq-base (the egress tests' little internet), ipset;
# - loads the overlay and loop kernel modules when they are modules and not loaded yet;
# - sets net.ipv4.ip_forward=1 (sandboxes with network access are routed through the host).
#
# crun is not required: the driver defaults to runc, which works on hybrid cgroup hosts as they are.
# Pass --crun to also install crun and, on hybrid-cgroup hosts where hugetlb sits on the cgroup2
# `unified` mount, mount a v1 hugetlb hierarchy (crun 1.8 refuses to start otherwise). That mount
# changes host cgroup layout, so it is opt-in.
# Idempotent: a second run only checks.
set -euo pipefail

log() { echo "ensure-oci: $*" >&2; }

WITH_CRUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --crun) WITH_CRUN=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) log "unknown argument: $1"; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

PACKAGES=(runc buildah skopeo gcc libc6-dev linux-libc-dev libseccomp-dev iproute2 iptables nftables conntrack ipset dnsmasq-base e2fsprogs util-linux bsdutils tar zstd attr busybox-static)
if [ "$WITH_CRUN" -eq 1 ]; then PACKAGES+=(crun); fi
apt_install "${PACKAGES[@]}"

for tool in runc cc ip iptables nft dnsmasq mkfs.ext4 mount losetup tar zstd setfattr mknod; do
  command -v "$tool" >/dev/null 2>&1 || { log "missing $tool after install"; exit 1; }
done

# Kernel modules: fine when built in or already loaded; modprobe may be absent in minimal VMs.
for module in overlay loop; do
  if ! grep -qw "$module" /proc/filesystems 2>/dev/null && [ ! -e "/sys/module/$module" ]; then
    $SUDO modprobe "$module" 2>/dev/null || log "warning: could not load kernel module $module"
  fi
done
[ -e /dev/loop-control ] || log "warning: /dev/loop-control missing: per-sandbox disk limits will not work"

if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "1" ]; then
  log "enabling net.ipv4.ip_forward"
  $SUDO sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
fi

if [ "$WITH_CRUN" -eq 1 ]; then
  # crun 1.8 on a hybrid host wants hugetlb as a v1 hierarchy; move it only when it is not mounted yet.
  if [ -d /sys/fs/cgroup/unified ] && [ -d /sys/fs/cgroup/memory ] && ! grep -q ' /sys/fs/cgroup/hugetlb ' /proc/mounts; then
    log "mounting a v1 hugetlb cgroup hierarchy for crun"
    $SUDO mkdir -p /sys/fs/cgroup/hugetlb
    $SUDO mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
  fi
fi

log "ok: $(runc --version | head -1)$([ "$WITH_CRUN" -eq 1 ] && echo ", $(crun --version | head -1)")"
