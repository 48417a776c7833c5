#!/usr/bin/env bash
# Smoke check of the test Kubernetes cluster started by scripts/ensure-kubernetes.sh: runs real Pods
# and prints what it measured. Exits non-zero at the first check that fails.
#
#   scripts/ensure-kubernetes.sh && scripts/check-kubernetes.sh
#
# In a namespace of its own (corral-check, deleted at the end, also on failure):
#  1. `kubectl run` a Burstable busybox Pod from the local registry ($CORRAL_K8S_TEST_IMAGE, default
#     127.0.0.1:5000/corral/busybox:latest, pulled by the kubelet) with requests and limits, serving
#     HTTP on port 8080; times create -> Ready;
#  2. reads the limits back from the container's cgroups (memory 64 MiB, CPU quota 0.5 core);
#  3. `kubectl exec` into it 5 times and prints each latency and the median;
#  4. dials the Pod IP from the host with `nc` and reads the page it serves;
#  5. runs a Guaranteed Pod (requests = limits, 32 MiB) whose main process allocates 128 MiB, and
#     times create -> the container terminated with reason OOMKilled and exit code 137; reads its log;
#  6. deletes the namespace and times it.
# Uses $CORRAL_CACHE_DIR (default <repo>/.cache) to find the kubeconfig and kubectl.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
K8S_DIR="$CACHE_DIR/kubernetes"
TEST_IMAGE="${CORRAL_K8S_TEST_IMAGE:-127.0.0.1:${CORRAL_REGISTRY_PORT:-5000}/corral/busybox:latest}"
NS="corral-check"
KUBECTL=("$K8S_DIR/bin/kubectl" --kubeconfig "$K8S_DIR/kubeconfig")
k() { "${KUBECTL[@]}" -n "$NS" "$@"; }

log() { echo "check-kubernetes: $*" >&2; }
fail() {
  log "FAILED: $*"
  exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
if ! command -v nc >/dev/null 2>&1; then apt_install netcat-openbsd; fi

if [ ! -x "${KUBECTL[0]}" ] || [ ! -f "$K8S_DIR/kubeconfig" ]; then
  fail "no cluster under $K8S_DIR: run scripts/ensure-kubernetes.sh"
fi
node_ready="$("${KUBECTL[@]}" get nodes -o 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" ||
  fail "the API server does not answer: run scripts/ensure-kubernetes.sh"
[ "$node_ready" = "True" ] || fail "node not Ready ($node_ready)"

cleanup() { "${KUBECTL[@]}" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
if "${KUBECTL[@]}" get namespace "$NS" >/dev/null 2>&1; then
  log "deleting a namespace $NS left by an earlier run"
  "${KUBECTL[@]}" delete namespace "$NS" --wait=true --timeout=120s >/dev/null
fi
"${KUBECTL[@]}" create namespace "$NS" >/dev/null
trap cleanup EXIT
# The namespace's default service account comes from the controller-manager, just after.
for _ in $(seq 1 40); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.25; done

# 1. a Burstable Pod with limits, serving HTTP.
t="$(now_ms)"
k run web --image="$TEST_IMAGE" --restart=Never \
  --requests=cpu=50m,memory=16Mi --limits=cpu=500m,memory=64Mi \
  --command -- sh -c 'echo corral-ok >/tmp/index.html; exec httpd -f -p 8080 -h /tmp' >/dev/null
k wait --for=condition=Ready pod/web --timeout=120s >/dev/null || {
  k describe pod web >&2
  fail "pod web not Ready"
}
echo "pod create -> Ready: $(($(now_ms) - t)) ms (image pulled from the registry, imagePullPolicy $(k get pod web -o 'jsonpath={.spec.containers[0].imagePullPolicy}'))"
echo "pod web QoS class: $(k get pod web -o 'jsonpath={.status.qosClass}')"

# 2. the limits, as the container's cgroups (v1) see them.
mem="$(k exec web -- cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
quota="$(k exec web -- cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
period="$(k exec web -- cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
[ "$mem" = "$((64 * 1024 * 1024))" ] || fail "memory limit in the container is $mem, not 64 MiB"
[ "$((quota * 1000 / period))" = "500" ] || fail "CPU quota in the container is $quota/$period, not 0.5 core"
echo "limits seen in the container: memory $mem bytes, CPU $quota/$period us"

# 3. exec latency.
times=()
for _ in 1 2 3 4 5; do
  t="$(now_ms)"
  out="$(k exec web -- echo exec-ok)"
  times+=("$(($(now_ms) - t))")
  [ "$out" = "exec-ok" ] || fail "exec printed '$out'"
done
median="$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)"
echo "kubectl exec (process start included): ${times[*]} ms, median $median ms"

# 4. the Pod IP, dialled from the host.
ip="$(k get pod web -o 'jsonpath={.status.podIP}')"
[ -n "$ip" ] || fail "pod web has no IP"
nc -z -w 5 "$ip" 8080 || fail "cannot connect from the host to $ip:8080"
body="$(printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 5 "$ip" 8080 | tail -n 1)"
[ "$body" = "corral-ok" ] || fail "GET http://$ip:8080/ returned '$body'"
echo "host -> pod IP $ip:8080: connected, page read"

# 5. a Guaranteed Pod that goes over its memory limit.
t="$(now_ms)"
k run oom --image="$TEST_IMAGE" --restart=Never \
  --requests=cpu=100m,memory=32Mi --limits=cpu=100m,memory=32Mi \
  --command -- sh -c 'echo allocating; exec dd if=/dev/zero of=/dev/null bs=128M count=1' >/dev/null
reason=""
for _ in $(seq 1 240); do
  reason="$(k get pod oom -o 'jsonpath={.status.containerStatuses[0].state.terminated.reason}' 2>/dev/null || true)"
  [ -n "$reason" ] && break
  sleep 0.25
done
elapsed=$(($(now_ms) - t))
code="$(k get pod oom -o 'jsonpath={.status.containerStatuses[0].state.terminated.exitCode}')"
if [ "$reason" != "OOMKilled" ] || [ "$code" != "137" ]; then
  k describe pod oom >&2
  fail "pod oom ended with '$reason' (exit code $code), not OOMKilled (137)"
fi
[ "$(k logs oom)" = "allocating" ] || fail "kubectl logs oom printed '$(k logs oom)'"
echo "Guaranteed pod ($(k get pod oom -o 'jsonpath={.status.qosClass}')) create -> OOMKilled: $elapsed ms (exit code $code); kubectl logs ok"

# 6. delete.
t="$(now_ms)"
"${KUBECTL[@]}" delete namespace "$NS" --wait=true --timeout=120s >/dev/null
echo "namespace (2 pods) deleted: $(($(now_ms) - t)) ms"
trap - EXIT
echo "check-kubernetes: all checks passed"
