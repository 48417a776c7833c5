#!/usr/bin/env bash
# Stops the test Kubernetes cluster that scripts/ensure-kubernetes.sh started, and undoes what it
# changed on the machine. The cached binaries, certificates and etcd data stay (a later ensure run
# starts the same cluster again); pass --purge to also delete the etcd data and the kubelet's state.
#
#   scripts/stop-kubernetes.sh [--purge]
#
# In order:
#  1. stops kubelet, kube-controller-manager, kube-scheduler, kube-apiserver, etcd (pid files under
#     <cache>/kubernetes/run/; SIGTERM, then SIGKILL after 20 s);
#  2. removes the Docker containers the kubelet made for Pods (label io.kubernetes.docker.type);
#  3. unmounts everything under the kubelet root dir (its own bind mount, Pods' tmpfs volumes);
#  4. restores the sysctls the kubelet changed, from run/sysctls.saved (saved before it first ran);
#  5. deletes KUBE-* iptables/ip6tables chains and the rules that jump to them (the ensure script's
#     kubelet makes none, but a kubelet run with other settings would);
#  6. removes the kubelet's empty kubepods cgroups and the host log directories it created;
#  7. removes the images the ensure script added to Docker (the pause image, the pulled test image)
#     when nothing uses them.
# Idempotent: with nothing running it only checks. Uses $CORRAL_CACHE_DIR (default <repo>/.cache).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
K8S_DIR="$CACHE_DIR/kubernetes"
BIN_DIR="$K8S_DIR/bin"
RUN_DIR="$K8S_DIR/run"
KUBELET_ROOT="$K8S_DIR/kubelet"

log() { echo "stop-kubernetes: $*" >&2; }

PURGE=0
case "${1:-}" in
  "") ;;
  --purge) PURGE=1 ;;
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) log "unknown argument: $1"; exit 2 ;;
esac

if [ ! -d "$K8S_DIR" ]; then
  log "nothing under $K8S_DIR"
  exit 0
fi
mkdir -p "$RUN_DIR"
exec 9>"$K8S_DIR/ensure.lock"
flock 9

# 1. processes, the kubelet first so that it restarts nothing while the rest goes down.
stop_process() {
  local name="$1" match="$2" pid i
  [ -f "$RUN_DIR/$name.pid" ] || return 0
  pid="$(cat "$RUN_DIR/$name.pid")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$match"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 80; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 20 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$RUN_DIR/$name.pid"
}
stop_process kubelet "$BIN_DIR/kubelet"
stop_process kube-controller-manager "$BIN_DIR/kube-controller-manager"
stop_process kube-scheduler "$BIN_DIR/kube-scheduler"
stop_process kube-apiserver "$BIN_DIR/kube-apiserver"
stop_process etcd "$K8S_DIR/etcd"

# 2. the Pods' containers (sandboxes and app containers); dockershim labels both.
if docker version >/dev/null 2>&1; then
  mapfile -t containers < <(docker ps -aq --filter label=io.kubernetes.docker.type)
  if [ "${#containers[@]}" -gt 0 ]; then
    log "removing ${#containers[@]} Pod container(s)"
    docker rm -f -v "${containers[@]}" >/dev/null
  fi
else
  log "Docker does not answer: Pod containers (label io.kubernetes.docker.type) not checked"
fi

# 3. mounts under the kubelet root dir, deepest first; the root dir's own bind mount last.
if [ -d "$KUBELET_ROOT" ]; then
  root="$(realpath "$KUBELET_ROOT")"
  mapfile -t mounts < <(awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | uniq)
  for m in "${mounts[@]}"; do
    # /proc/self/mountinfo escapes spaces and the like as \040: printf %b decodes them.
    m="$(printf '%b' "$m")"
    umount "$m" 2>/dev/null || umount -l "$m" || log "could not unmount $m"
  done
  # The bind mount can be stacked (one per kubelet start); unmount until none is left.
  for _ in 1 2 3 4 5; do
    mountpoint -q "$root" || break
    umount "$root" 2>/dev/null || umount -l "$root" || break
  done
  if [ "${#mounts[@]}" -gt 0 ]; then log "unmounted ${#mounts[@]} mount(s) under $root"; fi
fi

# 4. sysctls
if [ -f "$RUN_DIR/sysctls.saved" ]; then
  while IFS='=' read -r key value; do
    [ -n "$key" ] || continue
    current="$(sysctl -n "$key" 2>/dev/null || true)"
    if [ "$current" != "$value" ]; then
      log "sysctl $key: $current -> $value (as before the kubelet)"
      sysctl -q -w "$key=$value" || log "could not restore $key"
    fi
  done <"$RUN_DIR/sysctls.saved"
  rm -f "$RUN_DIR/sysctls.saved"
fi

# 5. KUBE-* chains: first the rules that jump to them (from any chain), then the chains themselves.
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null 2>&1 || continue
  for table in filter nat mangle; do
    rules="$("$ipt" -w 5 -t "$table" -S 2>/dev/null || true)"
    grep -Eq -- '-j KUBE-|^-N KUBE-' <<<"$rules" || continue
    # Rules of other chains that jump to a KUBE-* chain, deleted by number (highest first, so the
    # numbers of the rest hold). In `-S CHAIN` output the first line is -P/-N, rule n is line n+1.
    mapfile -t from_chains < <(grep -E -- '^-A ' <<<"$rules" | grep -E -- '-j KUBE-' | awk '$2 !~ /^KUBE-/ { print $2 }' | sort -u)
    for c in "${from_chains[@]}"; do
      mapfile -t numbers < <("$ipt" -w 5 -t "$table" -S "$c" | awk 'NR > 1 && / -j KUBE-/ { print NR - 1 }' | sort -rn)
      for n in "${numbers[@]}"; do
        "$ipt" -w 5 -t "$table" -D "$c" "$n" || log "$ipt -t $table: could not delete rule $n of $c"
      done
    done
    mapfile -t chains < <(grep -E -- '^-N KUBE-' <<<"$rules" | awk '{ print $2 }')
    for c in "${chains[@]}"; do "$ipt" -w 5 -t "$table" -F "$c" 2>/dev/null || true; done
    for c in "${chains[@]}"; do "$ipt" -w 5 -t "$table" -X "$c" 2>/dev/null || log "$ipt -t $table: could not delete chain $c"; done
    log "$ipt -t $table: removed ${#chains[@]} KUBE-* chain(s)"
  done
done

# 6. the kubepods cgroup trees (empty once the Pods' containers are gone), and the host log dirs.
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$d" ] || continue
  find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  if [ -d "$d" ]; then log "could not remove cgroup $d (still in use?)"; fi
done
if [ -f "$RUN_DIR/host-dirs.created" ]; then
  while read -r d; do
    if [ -z "$d" ] || [ ! -d "$d" ]; then continue; fi
    log "removing $d (created by the kubelet)"
    rm -rf "$d"
  done <"$RUN_DIR/host-dirs.created"
  rm -f "$RUN_DIR/host-dirs.created"
fi

# 7. images the ensure script added, unless something still uses them (rmi without -f).
if [ -f "$RUN_DIR/added-images" ] && docker version >/dev/null 2>&1; then
  while read -r image; do
    [ -n "$image" ] || continue
    if docker image inspect "$image" >/dev/null 2>&1; then
      if docker rmi "$image" >/dev/null 2>&1; then log "removed image $image"; else log "kept image $image (in use)"; fi
    fi
  done < <(sort -u "$RUN_DIR/added-images")
  rm -f "$RUN_DIR/added-images"
fi

if [ "$PURGE" -eq 1 ]; then
  log "removing etcd data and kubelet state"
  rm -rf "$K8S_DIR/etcd" "$KUBELET_ROOT" "$K8S_DIR/dockershim"
fi
log "stopped; binaries kept in $BIN_DIR"
