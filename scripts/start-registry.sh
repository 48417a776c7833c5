#!/usr/bin/env bash
# Runs Debian's docker-registry (the reference OCI registry) on loopback, for image-pull tests, and
# pushes the busybox test image into it.
#
#   127.0.0.1:${CORRAL_REGISTRY_PORT:-5000}       no auth; holds corral/busybox:latest
#   127.0.0.1:${CORRAL_REGISTRY_AUTH_PORT:-5001}  only with --auth USER:PASSWORD; htpasswd (bcrypt) auth;
#                                                 holds private/busybox:latest
#
# Each instance has its own config, storage, pid file and log under $CORRAL_CACHE_DIR/registry/<port>/
# (the packaged /etc/docker/registry/config.yml is not used: it wants htpasswd and listens on every
# address). Docker allows plain HTTP to 127.0.0.0/8 registries by default ("Insecure Registries" in
# `docker info`), so `docker pull 127.0.0.1:5000/corral/busybox:latest` works without daemon config.
# Idempotent: a running instance is kept (restarted only when the --auth credentials change).
# Stop with scripts/stop-registry.sh.
#
# Usage: bash scripts/start-registry.sh [--auth USER:PASSWORD] [--no-push]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CORRAL_CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
PORT="${CORRAL_REGISTRY_PORT:-5000}"
AUTH_PORT="${CORRAL_REGISTRY_AUTH_PORT:-5001}"
AUTH=""
PUSH=1

log() { echo "start-registry: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --auth) AUTH="${2:-}"; shift 2 ;;
    --auth=*) AUTH="${1#--auth=}"; shift ;;
    --no-push) PUSH=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) log "unknown argument: $1"; exit 2 ;;
  esac
done
if [ -n "$AUTH" ] && [[ "$AUTH" != ?*:?* ]]; then
  log "--auth wants USER:PASSWORD"
  exit 2
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

apt_install docker-registry curl
if [ -n "$AUTH" ]; then apt_install apache2-utils; fi
if [ "$PUSH" -eq 1 ]; then apt_install umoci skopeo busybox-static; fi

# Prints the HTTP status of GET /v2/ (000 when nothing answers).
v2_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/v2/" 2>/dev/null || true; }

running_pid() {
  local pidfile="$1/registry.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# start_instance PORT [USER:PASSWORD]
start_instance() {
  local port="$1" creds="${2:-}" dir="$CORRAL_CACHE_DIR/registry/$1" restart=0 pid
  mkdir -p "$dir/storage"
  if [ -n "$creds" ]; then
    local user="${creds%%:*}" password="${creds#*:}"
    if [ ! -f "$dir/htpasswd" ] || ! htpasswd -vb "$dir/htpasswd" "$user" "$password" >/dev/null 2>&1; then
      htpasswd -cbB "$dir/htpasswd" "$user" "$password" 2>/dev/null
      chmod 600 "$dir/htpasswd"
      restart=1
    fi
  fi
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "  accesslog:"
    echo "    disabled: true"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $dir/storage"
    echo "  delete:"
    echo "    enabled: true"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    if [ -n "$creds" ]; then
      echo "auth:"
      echo "  htpasswd:"
      echo "    realm: corral"
      echo "    path: $dir/htpasswd"
    fi
  } >"$dir/config.yml.new"
  if ! cmp -s "$dir/config.yml.new" "$dir/config.yml" 2>/dev/null; then restart=1; fi
  mv "$dir/config.yml.new" "$dir/config.yml"

  if pid="$(running_pid "$dir")"; then
    if [ "$restart" -eq 0 ]; then
      log "registry on 127.0.0.1:$port already running (pid $pid)"
      return 0
    fi
    log "restarting registry on 127.0.0.1:$port (config changed)"
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ "$(v2_status "$port")" != "000" ]; then
    log "127.0.0.1:$port is taken by a process this script did not start; set CORRAL_REGISTRY_PORT/CORRAL_REGISTRY_AUTH_PORT"
    exit 1
  fi
  setsid nohup docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 100); do
    case "$(v2_status "$port")" in 200|401) log "registry on 127.0.0.1:$port started (pid $(cat "$dir/registry.pid"))"; return 0 ;; esac
    sleep 0.1
  done
  log "registry on 127.0.0.1:$port did not answer; last log lines:"
  tail -n 20 "$dir/registry.log" >&2 || true
  exit 1
}

# The busybox test image as an OCI layout, built with plain shell tools + umoci (no node_modules needed:
# scripts/test.sh runs this while npm dependencies are still installing). Cached by the binary's digest.
busybox_layout() {
  local bb=/bin/busybox key layout tmp
  key="$(sha256sum "$bb" | cut -c1-12)"
  layout="$CORRAL_CACHE_DIR/registry/oci-busybox-$key"
  if [ ! -f "$layout/index.json" ]; then
    tmp="$(mktemp -d "$CORRAL_CACHE_DIR/registry/.build.XXXXXX")"
    mkdir -p "$tmp/rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,dev,proc,sys}
    cp "$bb" "$tmp/rootfs/bin/busybox"
    local applet
    for applet in $("$bb" --list-full); do
      mkdir -p "$(dirname "$tmp/rootfs/$applet")"
      [ -e "$tmp/rootfs/$applet" ] || ln -s /bin/busybox "$tmp/rootfs/$applet"
    done
    chmod 1777 "$tmp/rootfs/tmp"
    chmod 700 "$tmp/rootfs/root"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/rootfs/etc/group"
    tar -C "$tmp/rootfs" --numeric-owner --owner=0 --group=0 -cf "$tmp/layer.tar" .
    umoci init --layout "$tmp/layout"
    umoci new --image "$tmp/layout:latest"
    umoci raw add-layer --image "$tmp/layout:latest" "$tmp/layer.tar"
    umoci config --image "$tmp/layout:latest" --config.cmd sh \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    umoci gc --layout "$tmp/layout"
    rm -rf "$layout"
    mv "$tmp/layout" "$layout"
    rm -rf "$tmp"
  fi
  echo "$layout"
}

# push DEST [USER:PASSWORD] -- credentials go to skopeo in a private auth file, not on its command line.
push() {
  local dest="$1" creds="${2:-}" layout authdir="" started
  started=$(date +%s%N)
  layout="$(busybox_layout)"
  local args=(--insecure-policy copy --quiet --dest-tls-verify=false --format v2s2)
  if [ -n "$creds" ]; then
    authdir="$(mktemp -d)"
    printf '{"auths":{"%s":{"auth":"%s"}}}' "${dest%%/*}" "$(printf '%s' "$creds" | base64 -w0)" >"$authdir/auth.json"
    chmod 600 "$authdir/auth.json"
    args+=(--dest-authfile "$authdir/auth.json")
  else
    args+=(--dest-no-creds)
  fi
  local rc=0
  skopeo "${args[@]}" "oci:$layout:latest" "docker://$dest" || rc=$?
  if [ -n "$authdir" ]; then rm -rf "$authdir"; fi
  [ "$rc" -eq 0 ] || { log "push to $dest failed"; exit 1; }
  log "pushed $dest in $(( ($(date +%s%N) - started) / 1000000 )) ms"
}

start_instance "$PORT"
if [ "$PUSH" -eq 1 ]; then push "127.0.0.1:$PORT/corral/busybox:latest"; fi
if [ -n "$AUTH" ]; then
  start_instance "$AUTH_PORT" "$AUTH"
  if [ "$PUSH" -eq 1 ]; then push "127.0.0.1:$AUTH_PORT/private/busybox:latest" "$AUTH"; fi
fi

echo "registry:      http://127.0.0.1:$PORT  (no auth)  image 127.0.0.1:$PORT/corral/busybox:latest"
if [ -n "$AUTH" ]; then
  echo "auth registry: http://127.0.0.1:$AUTH_PORT  (user ${AUTH%%:*})  image 127.0.0.1:$AUTH_PORT/private/busybox:latest"
fi
