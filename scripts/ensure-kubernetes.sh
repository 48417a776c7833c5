#!/usr/bin/env bash
# Makes sure a one-node Kubernetes 1.20 test cluster runs on this machine, and prints its kubeconfig
# path as the last line of stdout (everything else goes to stderr).
#
#   scripts/ensure-kubernetes.sh               # -> <cache>/kubernetes/kubeconfig
#   scripts/ensure-kubernetes.sh --build-only  # only build (or check) the cached binaries
#
# No Kubernetes binary is packaged for Debian, so the first run builds Debian's `kubernetes` source
# package (1.20.2 with upstream vendor/, debian/patches applied, plus the two-line OOM-score patch
# these machines need: they lack CAP_SYS_RESOURCE, so a negative oom_score_adj fails runc; and the
# vendored reflect2 replaced by Debian's 1.0.2, without which Go 1.19 builds crash) into
# $CORRAL_CACHE_DIR/kubernetes/bin/ (default cache: <repo>/.cache): kube-apiserver, kube-scheduler,
# kube-controller-manager, kubelet, kubectl, and the static `pause` binary. The source tree (2.7 GB
# once built) lives in a temporary directory that is deleted afterwards. The binaries are keyed by a
# stamp (a hash of the build recipe below): a changed recipe rebuilds. Build log:
# $CORRAL_CACHE_DIR/logs/kubernetes-build.log. It needs apt (golang-go, rsync, gcc, libc6-dev, and a
# deb-src entry, added in a file of its own: /etc/apt/sources.list.d/corral-deb-src.sources).
#
# Then it starts, all on 127.0.0.1 and each with a pid file under <cache>/kubernetes/run/:
#   etcd (Debian etcd-server; data in <cache>/kubernetes/etcd)       127.0.0.1:$CORRAL_K8S_ETCD_PORT (2379)
#   kube-apiserver (RBAC + Node authorization, client certs + a static admin token)
#                                                                     https://127.0.0.1:$CORRAL_K8S_API_PORT (6443)
#   kube-scheduler, kube-controller-manager (no insecure ports, no leader election)
#   kubelet (dockershim against the running dockerd, cgroupfs, no CNI: pods sit on Docker's default
#            bridge, so Pod IPs are reachable from the host; the node is named 127.0.0.1)
# Certificates (openssl), the service-account key pair and the admin token are made once under
# <cache>/kubernetes/pki/. The pause image is `docker import`ed as k8s.gcr.io/pause:3.2 (the kubelet
# never pulls it), and 127.0.0.1:5000/corral/busybox:latest is pulled from the local registry
# (started with scripts/start-registry.sh when it does not answer). Before the kubelet first
# starts, the kernel sysctls it changes are saved to <cache>/kubernetes/run/sysctls.saved;
# scripts/stop-kubernetes.sh restores them. Waits for /readyz, for the node to be Ready and for the
# default service account. Idempotent: with everything up it only checks; a component that died is
# started again. See docs/kubernetes-test-cluster.md.
# Stop with scripts/stop-kubernetes.sh (the cached binaries stay); smoke test: scripts/check-kubernetes.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
K8S_DIR="$CACHE_DIR/kubernetes"
BIN_DIR="$K8S_DIR/bin"
PKI_DIR="$K8S_DIR/pki"
RUN_DIR="$K8S_DIR/run"
LOG_DIR="$CACHE_DIR/logs"
BUILD_LOG="$LOG_DIR/kubernetes-build.log"
BUILD_JOBS="${CORRAL_K8S_BUILD_JOBS:-2}"

log() { echo "ensure-kubernetes: $*" >&2; }

BUILD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) BUILD_ONLY=1; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) log "unknown argument: $1"; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

mkdir -p "$K8S_DIR" "$LOG_DIR"

# ---------------------------------------------------------------------------------------------
# Build (once): everything that decides what the binaries are lives in the functions below and the
# constants next to them; the stamp is a hash of their text, so editing the recipe rebuilds.
# ---------------------------------------------------------------------------------------------
K8S_BINARIES=(kube-apiserver kube-scheduler kube-controller-manager kubelet kubectl)
RECIPE_NOTE="debian kubernetes source + debian/patches + OOM adj 0 + reflect2 1.0.2; CGO_ENABLED=0; pause gcc -static"

# A deb-src entry for each deb entry of debian.sources (same URIs and suites), in a file of our own.
ensure_deb_src() {
  if apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then return 0; fi
  local src=/etc/apt/sources.list.d/debian.sources
  local dst=/etc/apt/sources.list.d/corral-deb-src.sources
  if [ ! -f "$src" ]; then
    log "no $src to mirror; add a deb-src line for bookworm yourself"
    exit 1
  fi
  log "adding $dst (deb-src entries mirroring $src)"
  {
    echo "# Added by Corral's scripts/ensure-kubernetes.sh for 'apt-get source kubernetes':"
    echo "# the deb entries of debian.sources, as deb-src."
    # Keep each stanza's URIs/Suites/Components/Signed-By; turn Types: deb into deb-src.
    awk '/^Types:/ { print "Types: deb-src"; next } /^#/ { next } { print }' "$src"
  } | $SUDO tee "$dst.new" >/dev/null
  $SUDO mv "$dst.new" "$dst"
  apt_get update -qq >&2
  # shellcheck disable=SC2034 # read by apt_install (lib/apt.sh): the index is fresh
  APT_UPDATED=1
}

# The two constants that make the kubelet ask for a negative oom_score_adj, set to 0.
patch_oom_scores() {
  sed -i -E 's/^(\s*defaultSandboxOOMAdj\s+int\s*=\s*)-998$/\10/' pkg/kubelet/dockershim/docker_sandbox.go
  sed -i -E 's/^(\s*guaranteedOOMScoreAdj\s+int\s*=\s*)-997$/\10/' pkg/kubelet/qos/policy.go
  grep -Eq 'defaultSandboxOOMAdj\s+int\s*=\s*0$' pkg/kubelet/dockershim/docker_sandbox.go
  grep -Eq 'guaranteedOOMScoreAdj\s+int\s*=\s*0$' pkg/kubelet/qos/policy.go
}

# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, whose map iteration breaks under Go
# >= 1.18: built with Debian's Go 1.19, kube-apiserver dies within a minute ("unexpected fault
# address", SIGSEGV in runtime.mapiterinit under json-iterator). v1.0.2 is the upstream fix; Debian
# packages it (golang-github-modern-go-reflect2-dev), so the vendored copy is replaced by that one.
patch_reflect2() {
  local debian_src=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -f "$debian_src/unsafe_map.go" ] || { echo "missing $debian_src"; return 1; }
  rm -rf vendor/github.com/modern-go/reflect2
  mkdir -p vendor/github.com/modern-go/reflect2
  find "$debian_src" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' -o -name LICENSE \) ! -name '*_test.go' \
    -exec cp {} vendor/github.com/modern-go/reflect2/ \;
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' go.mod vendor/modules.txt
  grep -q 'modern-go/reflect2 v1.0.2' vendor/modules.txt
}

# Builds in $2 (a scratch directory) into $1 (a new directory): the five binaries, pause, and
# VERSION (what was built from what).
build_kubernetes() {
  local out="$1" work="$2" src
  (
    cd "$work"
    apt_get source --download-only kubernetes
    tar xzf kubernetes_*.orig.tar.gz
    src="$(find . -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)"
    tar xJf kubernetes_*.debian.tar.xz -C "$src"
    cd "$src"
    local p
    while read -r p; do
      case "$p" in "" | "#"*) continue ;; esac
      echo "applying debian/patches/$p"
      patch -p1 --forward --batch <"debian/patches/$p"
    done <debian/patches/series
    patch_oom_scores
    patch_reflect2
    mkdir -p .go/src/k8s.io
    ln -s ../../.. .go/src/k8s.io/kubernetes
    local targets=()
    local b
    for b in "${K8S_BINARIES[@]}"; do targets+=("cmd/$b"); done
    # The build tree's own GOPATH and Go cache, so nothing outlives the temp dir; -p limits how
    # many packages compile at once on these 2-core machines.
    env GOPATH="$PWD/.go" GOCACHE="$work/go-cache" HOME="$work" CGO_ENABLED=0 GOFLAGS="-p=$BUILD_JOBS" \
      nice -n 10 make WHAT="${targets[*]}"
    for b in "${K8S_BINARIES[@]}"; do install -m 0755 "_output/bin/$b" "$out/$b"; done
    gcc -Os -Wall -Werror -static -DVERSION=v3.2-corral -o "$out/pause" build/pause/linux/pause.c
    {
      echo "source: $(basename "$(ls ../kubernetes_*.dsc)" .dsc)"
      echo "go: $(go version)"
      echo "recipe: $RECIPE_NOTE"
      echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$out/VERSION"
  )
}

recipe_stamp() {
  { declare -f ensure_deb_src patch_oom_scores patch_reflect2 build_kubernetes; echo "${K8S_BINARIES[*]}|$RECIPE_NOTE"; } |
    sha256sum | cut -c1-16
}

ensure_binaries() {
  local stamp
  stamp="$(recipe_stamp)"
  if [ -f "$BIN_DIR/.stamp" ] && [ "$(cat "$BIN_DIR/.stamp")" = "$stamp" ]; then
    local b ok=1
    for b in "${K8S_BINARIES[@]}" pause; do [ -x "$BIN_DIR/$b" ] || ok=0; done
    if [ "$ok" -eq 1 ]; then
      log "binaries cached in $BIN_DIR (stamp $stamp)"
      return 0
    fi
  fi
  log "building Kubernetes from Debian's source package into $BIN_DIR (stamp $stamp);" \
    "takes 7-20 minutes; log: $BUILD_LOG"
  apt_install golang-go rsync gcc libc6-dev patch xz-utils ca-certificates golang-github-modern-go-reflect2-dev
  ensure_deb_src
  local started new work rc
  started="$(date +%s)"
  new="$K8S_DIR/bin.new"
  rm -rf "$new"
  mkdir -p "$new"
  work="$(mktemp -d "${TMPDIR:-/tmp}/corral-k8s-build.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the trap outlives this function's locals
  trap "rm -rf '$work'" EXIT
  # A subshell that is not a condition, so `set -e` holds inside it.
  set +e
  (set -e; build_kubernetes "$new" "$work") >"$BUILD_LOG" 2>&1
  rc=$?
  set -e
  rm -rf "$work"
  trap - EXIT
  if [ "$rc" -ne 0 ]; then
    log "build failed; last lines of $BUILD_LOG:"
    tail -n 40 "$BUILD_LOG" >&2 || true
    rm -rf "$new"
    exit 1
  fi
  echo "$stamp" >"$new/.stamp"
  rm -rf "$BIN_DIR"
  mv "$new" "$BIN_DIR"
  log "built in $(($(date +%s) - started)) s: $(du -sh "$BIN_DIR" | cut -f1) in $BIN_DIR"
}

# Two ensure runs at once (parallel test files) must not both build or start.
exec 9>"$K8S_DIR/ensure.lock"
flock 9

ensure_binaries
if [ "$BUILD_ONLY" -eq 1 ]; then exit 0; fi

# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------
# The node is named after its address: the kubelet refuses a loopback --node-ip ("nodeIP can't be
# loopback address"), but takes an IP given as its hostname as its InternalIP unchecked, and the
# API server reaches the kubelet (exec, logs) at that InternalIP, where it listens.
NODE_NAME="127.0.0.1"
API_PORT="${CORRAL_K8S_API_PORT:-6443}"
ETCD_PORT="${CORRAL_K8S_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${CORRAL_K8S_ETCD_PEER_PORT:-2380}"
KUBELET_PORT="${CORRAL_K8S_KUBELET_PORT:-10250}"
KUBELET_HEALTHZ_PORT="${CORRAL_K8S_KUBELET_HEALTHZ_PORT:-10248}"
SCHEDULER_PORT="${CORRAL_K8S_SCHEDULER_PORT:-10259}"
CONTROLLER_MANAGER_PORT="${CORRAL_K8S_CONTROLLER_MANAGER_PORT:-10257}"
SERVICE_CIDR="${CORRAL_K8S_SERVICE_CIDR:-10.96.0.0/16}"
SERVICE_IP="${CORRAL_K8S_SERVICE_IP:-10.96.0.1}"
PAUSE_IMAGE="k8s.gcr.io/pause:3.2"
TEST_IMAGE="${CORRAL_K8S_TEST_IMAGE:-127.0.0.1:${CORRAL_REGISTRY_PORT:-5000}/corral/busybox:latest}"
KUBECONFIG_OUT="$K8S_DIR/kubeconfig"
ETCD_DATA="$K8S_DIR/etcd"
KUBELET_ROOT="$K8S_DIR/kubelet"
DOCKERSHIM_ROOT="$K8S_DIR/dockershim"
CONF_DIR="$K8S_DIR/conf"
# The kernel settings the kubelet (container manager and the no-op network plugin) writes.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)
# Host paths the kubelet hard-codes (pod and container log links).
KUBELET_HOST_DIRS=(/var/log/pods /var/log/containers)

KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_OUT")

apt_install etcd-server openssl curl iproute2
# fd 9 (the lock) closed: a daemon started there would hold the lock for good.
"$REPO/scripts/ensure-docker.sh" >&2 9>&-
# Pods sit on docker0, whose MAC address dockerd leaves unset: a Linux bridge then takes its lowest
# port's address, so it changed as Pods came and went, and a Pod that had resolved the host (its
# gateway) sent its replies into the void until the ARP entry aged out. Setting the address it has
# pins it (addr_assign_type 3) without changing it; a bridge without ports has 00:00:00:00:00:00,
# which must not be pinned, so it gets a random locally administered one.
if [ -e /sys/class/net/docker0 ]; then
  docker0_mac="$(cat /sys/class/net/docker0/address)"
  if [ "$docker0_mac" = 00:00:00:00:00:00 ]; then
    docker0_mac="$(od -An -N5 -tx1 /dev/urandom | tr -s ' ' ':' | sed 's/^:/02:/; s/:$//')"
    ip link set dev docker0 address "$docker0_mac"
  elif [ "$(cat /sys/class/net/docker0/addr_assign_type)" != 3 ]; then
    ip link set dev docker0 address "$docker0_mac"
  fi
fi
mkdir -p "$RUN_DIR" "$PKI_DIR" "$CONF_DIR" "$ETCD_DATA" "$KUBELET_ROOT" "$DOCKERSHIM_ROOT"
chmod 700 "$PKI_DIR" "$ETCD_DATA"

# --- certificates, keys, token, kubeconfigs (made once) ---------------------------------------

# make_cert NAME CN ORG EKU [SAN]: a key (EC P-256) and a certificate signed by the cluster CA.
make_cert() {
  local name="$1" cn="$2" org="$3" eku="$4" san="${5:-}" subj ext
  [ -s "$PKI_DIR/$name.crt" ] && [ -s "$PKI_DIR/$name.key" ] && return 0
  subj="/CN=$cn"
  if [ -n "$org" ]; then subj="/O=$org$subj"; fi
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku"
  if [ -n "$san" ]; then ext="$ext
subjectAltName=$san"; fi
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/$name.key" 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" -out "$PKI_DIR/$name.csr"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile <(echo "$ext") -out "$PKI_DIR/$name.crt.new" 2>/dev/null
  mv "$PKI_DIR/$name.crt.new" "$PKI_DIR/$name.crt"
  rm -f "$PKI_DIR/$name.csr"
}

# make_kubeconfig FILE CERT_NAME: a kubeconfig with the CA and the client cert/key embedded.
make_kubeconfig() {
  local file="$1" name="$2"
  cat >"$file.new" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: corral
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$name.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$name.key")
contexts:
- name: corral
  context:
    cluster: corral
    user: $name
current-context: corral
KUBECONFIG
  chmod 600 "$file.new"
  mv "$file.new" "$file"
}

if [ ! -s "$PKI_DIR/ca.crt" ] || [ ! -s "$PKI_DIR/ca.key" ]; then
  log "creating the cluster CA and keys under $PKI_DIR"
  rm -f "$PKI_DIR"/*.crt "$PKI_DIR"/*.key
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/ca.key" -subj "/CN=corral-test-kubernetes-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI_DIR/ca.crt"
fi
make_cert apiserver kube-apiserver "" serverAuth \
  "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
make_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
make_cert admin corral-admin system:masters clientAuth
make_cert kube-scheduler system:kube-scheduler "" clientAuth
make_cert kube-controller-manager system:kube-controller-manager "" clientAuth
make_cert kubelet-client "system:node:$NODE_NAME" system:nodes clientAuth
make_cert kubelet-serving "$NODE_NAME" "" serverAuth "IP:127.0.0.1,DNS:localhost"
if [ ! -s "$PKI_DIR/sa.key" ] || [ ! -s "$PKI_DIR/sa.pub" ]; then
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
fi
# A static bearer token for the admin (simplest credential for a client library): token,user,uid,groups.
if [ ! -s "$PKI_DIR/admin.token" ]; then
  openssl rand -hex 32 >"$PKI_DIR/admin.token"
fi
printf '%s,corral-admin,corral-admin,"system:masters"\n' "$(cat "$PKI_DIR/admin.token")" >"$PKI_DIR/tokens.csv"
chmod 600 "$PKI_DIR"/*

# Kubeconfigs are rewritten every run (cheap; follows a changed API port).
make_kubeconfig "$KUBECONFIG_OUT" admin
make_kubeconfig "$CONF_DIR/kube-scheduler.kubeconfig" kube-scheduler
make_kubeconfig "$CONF_DIR/kube-controller-manager.kubeconfig" kube-controller-manager
make_kubeconfig "$CONF_DIR/kubelet.kubeconfig" kubelet-client

cat >"$CONF_DIR/kubelet.yaml" <<KUBELETCONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI_DIR/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failSwapOn: false
# These machines lack CAP_SYS_RESOURCE: no negative oom_score_adj for the kubelet itself.
oomScoreAdj: 0
# The kubelet shares dockerd with everything else on the machine: never garbage-collect images,
# and no image-filesystem eviction (which would also delete images). Only its own pods are evicted.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
# No KUBE-* iptables chains: nothing here needs them (no kube-proxy, no kubenet), and the machine's
# firewall belongs to the Corral drivers under test. stop-kubernetes.sh removes any it finds anyway.
makeIPTablesUtilChains: false
serializeImagePulls: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
maxPods: 110
KUBELETCONF

# --- processes ----------------------------------------------------------------------------------

# Whether the pid file's process is alive and is still that program (pids get reused).
running() {
  local name="$1" pid
  [ -f "$RUN_DIR/$name.pid" ] || return 1
  pid="$(cat "$RUN_DIR/$name.pid")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# start NAME MATCH COMMAND...: starts COMMAND in the background (its own session, log in
# $LOG_DIR/kubernetes-NAME.log) unless it is already running.
start() {
  local name="$1" match="$2"
  shift 2
  if running "$name" "$match"; then
    log "$name running (pid $(cat "$RUN_DIR/$name.pid"))"
    return 0
  fi
  log "starting $name (log: $LOG_DIR/kubernetes-$name.log)"
  echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$LOG_DIR/kubernetes-$name.log"
  setsid nohup "$@" >>"$LOG_DIR/kubernetes-$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN_DIR/$name.pid"
}

# wait_for NAME SECONDS COMMAND...: polls COMMAND every 0.25 s.
wait_for() {
  local what="$1" seconds="$2" i
  shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  log "$what not ready after $seconds s"
  return 1
}

fail_with_log() {
  log "last lines of $LOG_DIR/kubernetes-$1.log:"
  tail -n 30 "$LOG_DIR/kubernetes-$1.log" >&2 || true
  exit 1
}

port_taken_by_other() {
  local name="$1" port="$2"
  if running "$name" "$3"; then return 1; fi
  ss -Hltn "sport = :$port" | grep -q .
}
check_port() {
  if port_taken_by_other "$@"; then
    log "port $2 (for $1) is taken by another process; set the CORRAL_K8S_*_PORT variables"
    exit 1
  fi
}
check_port etcd "$ETCD_PORT" "$ETCD_DATA"
check_port etcd "$ETCD_PEER_PORT" "$ETCD_DATA"
check_port kube-apiserver "$API_PORT" "$BIN_DIR/kube-apiserver"
check_port kube-scheduler "$SCHEDULER_PORT" "$BIN_DIR/kube-scheduler"
check_port kube-controller-manager "$CONTROLLER_MANAGER_PORT" "$BIN_DIR/kube-controller-manager"
check_port kubelet "$KUBELET_PORT" "$BIN_DIR/kubelet"

t0="$(date +%s%N)"
ms_since_start() { echo $((($(date +%s%N) - t0) / 1000000)); }

start etcd "$ETCD_DATA" etcd --name corral --data-dir "$ETCD_DATA" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "corral=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
  --quota-backend-bytes 2147483648 --snapshot-count 10000
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health" || fail_with_log etcd

start kube-apiserver "$BIN_DIR/kube-apiserver" "$BIN_DIR/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
  --tls-cert-file "$PKI_DIR/apiserver.crt" --tls-private-key-file "$PKI_DIR/apiserver.key" \
  --client-ca-file "$PKI_DIR/ca.crt" --token-auth-file "$PKI_DIR/tokens.csv" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI_DIR/sa.pub" --service-account-signing-key-file "$PKI_DIR/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --kubelet-client-certificate "$PKI_DIR/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI_DIR/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI_DIR/ca.crt" --kubelet-preferred-address-types InternalIP \
  --endpoint-reconciler-type none --profiling=false --enable-bootstrap-token-auth=false
readyz() { curl -fsS --cacert "$PKI_DIR/ca.crt" -H "Authorization: Bearer $(cat "$PKI_DIR/admin.token")" \
  "https://127.0.0.1:$API_PORT/readyz"; }
wait_for kube-apiserver 90 readyz || fail_with_log kube-apiserver
log "kube-apiserver ready ($(ms_since_start) ms)"

start kube-controller-manager "$BIN_DIR/kube-controller-manager" "$BIN_DIR/kube-controller-manager" \
  --kubeconfig "$CONF_DIR/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig "$CONF_DIR/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig "$CONF_DIR/kube-controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" --port 0 --leader-elect=false \
  --service-account-private-key-file "$PKI_DIR/sa.key" --root-ca-file "$PKI_DIR/ca.crt" \
  --use-service-account-credentials \
  --cluster-signing-cert-file "$PKI_DIR/ca.crt" --cluster-signing-key-file "$PKI_DIR/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false
start kube-scheduler "$BIN_DIR/kube-scheduler" "$BIN_DIR/kube-scheduler" \
  --kubeconfig "$CONF_DIR/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig "$CONF_DIR/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig "$CONF_DIR/kube-scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --port 0 --leader-elect=false --profiling=false

# The pause image: imported from the cached static binary, so the kubelet never pulls it.
if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
  log "importing $PAUSE_IMAGE from $BIN_DIR/pause"
  pause_root="$(mktemp -d "${TMPDIR:-/tmp}/corral-pause.XXXXXX")"
  install -m 0755 "$BIN_DIR/pause" "$pause_root/pause"
  tar -C "$pause_root" --numeric-owner --owner=0 --group=0 -c pause |
    docker import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$pause_root"
  echo "$PAUSE_IMAGE" >>"$RUN_DIR/added-images"
fi

if ! running kubelet "$BIN_DIR/kubelet"; then
  # Saved once, before the kubelet first changes them; stop-kubernetes.sh restores and removes the file.
  if [ ! -f "$RUN_DIR/sysctls.saved" ]; then
    for s in "${KUBELET_SYSCTLS[@]}"; do
      if v="$(sysctl -n "$s" 2>/dev/null)"; then echo "$s=$v"; fi
    done >"$RUN_DIR/sysctls.saved.new"
    mv "$RUN_DIR/sysctls.saved.new" "$RUN_DIR/sysctls.saved"
  fi
  if [ ! -f "$RUN_DIR/host-dirs.created" ]; then
    for d in "${KUBELET_HOST_DIRS[@]}"; do [ -e "$d" ] || echo "$d"; done >"$RUN_DIR/host-dirs.created"
  fi
fi
docker_endpoint="${DOCKER_HOST:-unix:///var/run/docker.sock}"
start kubelet "$BIN_DIR/kubelet" "$BIN_DIR/kubelet" \
  --config "$CONF_DIR/kubelet.yaml" --kubeconfig "$CONF_DIR/kubelet.kubeconfig" \
  --container-runtime docker --docker-endpoint "$docker_endpoint" --network-plugin= \
  --pod-infra-container-image "$PAUSE_IMAGE" \
  --root-dir "$KUBELET_ROOT" --experimental-dockershim-root-directory "$DOCKERSHIM_ROOT" \
  --hostname-override "$NODE_NAME"

# The test image, from the local registry (started when it does not answer).
registry="${TEST_IMAGE%%/*}"
if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
  if ! curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && [[ "$registry" == 127.0.0.1:* ]]; then
    log "registry $registry does not answer: running scripts/start-registry.sh"
    CORRAL_CACHE_DIR="$CACHE_DIR" CORRAL_REGISTRY_PORT="${registry#*:}" "$REPO/scripts/start-registry.sh" >&2 9>&-
  fi
  log "pulling $TEST_IMAGE"
  docker pull -q "$TEST_IMAGE" >/dev/null
  echo "$TEST_IMAGE" >>"$RUN_DIR/added-images"
fi

node_ready() {
  [ "$("${KUBECTL[@]}" get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = "True" ]
}
wait_for "node $NODE_NAME" 120 node_ready || fail_with_log kubelet
log "node $NODE_NAME Ready ($(ms_since_start) ms)"
# Pods cannot be created in a namespace before its default service account exists.
wait_for "the default service account" 60 "${KUBECTL[@]}" -n default get serviceaccount default ||
  fail_with_log kube-controller-manager
for c in kube-scheduler kube-controller-manager; do
  running "$c" "$BIN_DIR/$c" || fail_with_log "$c"
done
log "cluster up in $(ms_since_start) ms; kubeconfig (admin client cert): $KUBECONFIG_OUT;" \
  "admin bearer token: $PKI_DIR/admin.token"
echo "$KUBECONFIG_OUT"
