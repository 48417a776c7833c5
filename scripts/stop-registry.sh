#!/usr/bin/env bash
# Stops the registries started by scripts/start-registry.sh (only the processes named in its pid files).
# Usage: bash scripts/stop-registry.sh [--purge]   (--purge also deletes their storage and config)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
PURGE=0
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    *) echo "stop-registry: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

shopt -s nullglob
for dir in "$CACHE_DIR"/registry/*/; do
  dir="${dir%/}"
  pidfile="$dir/registry.pid"
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stop-registry: stopped registry on 127.0.0.1:$(basename "$dir") (pid $pid)" >&2
    fi
    rm -f "$pidfile"
  fi
  if [ "$PURGE" -eq 1 ]; then rm -rf "$dir"; fi
done
