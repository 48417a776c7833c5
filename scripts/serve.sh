#!/usr/bin/env bash
# Runs Corral on a fresh machine: installs what it needs, compiles, makes sure the default
# python:3.11-slim image exists (built offline: no registry needed), and starts `corral serve`.
#
# The runtime driver comes from CORRAL_RUNTIME (default `oci`: daemonless, no container daemon; it
# calls crun, prepared by `ensure-oci.sh --crun`, unless CORRAL_OCI_RUNTIME=runc).
# With CORRAL_RUNTIME=docker it installs and starts Docker Engine instead. Arguments are passed to
# `corral serve` (try --help); settings come from CORRAL_* variables. As root (as here) the data directory
# defaults to /var/lib/corral (0700; CORRAL_DATA_DIR overrides it).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export CORRAL_CACHE_DIR="${CORRAL_CACHE_DIR:-$REPO/.cache}"
runtime="${CORRAL_RUNTIME:-oci}"
# shellcheck source=lib/apt.sh
source "$REPO/scripts/lib/apt.sh"

bash scripts/setup-node.sh
case "$runtime" in
  oci)
    export CORRAL_OCI_RUNTIME="${CORRAL_OCI_RUNTIME:-crun}"
    if [ "$CORRAL_OCI_RUNTIME" = crun ]; then bash scripts/ensure-oci.sh --crun; else bash scripts/ensure-oci.sh; fi
    # Memory checkpoints (with CORRAL_OCI_RUNTIME=runc: crun is built without CRIU) use the CRIU it builds.
    CORRAL_CRIU="${CORRAL_CRIU:-$(bash scripts/ensure-criu.sh)}"
    export CORRAL_CRIU
    apt_install mmdebstrap busybox-static ca-certificates
    # Cached rootfs tarballs make these quick after the first run (python: ~30 s once).
    node packages/cli/bin/corral.js images build python --runtime oci >/dev/null
    node packages/cli/bin/corral.js images build busybox --runtime oci >/dev/null
    ;;
  docker)
    bash scripts/ensure-docker.sh
    bash scripts/build-images.sh
    ;;
esac
exec node packages/cli/bin/corral.js serve "$@"
