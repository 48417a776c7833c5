#!/usr/bin/env bash
# Makes sure a working CRIU is on the host for the oci driver's memory checkpoints
# (packages/server/src/runtime/oci/criu-checkpoint.ts; runc runs it through `runc --criu <path>`).
# Prints the path of the CRIU binary to use on stdout. Idempotent and quiet: a second run only checks.
#
# CRIU 4.1.1 (Debian 13's source: its orig tarball from Debian's archive through a private apt
# source list, the system's sources are not touched) is built once into <cache>/criu/<version>/
# (~30 s on 2 cores) with the patches in scripts/criu/:
# - inherit-fd-once.patch: CRIU parses the configuration file runc names twice and so takes each
#   `inherit-fd` line twice, which makes the second copy fail ("Can't send fd N into store";
#   checkpoint-restore/criu#2727). Restores of memory checkpoints hand the restored agent its exec
#   socket that way.
# - so-pass-opts-6.16.patch: from Linux 6.16 getsockopt(SO_PASSCRED/SO_PASSSEC) fails with
#   EOPNOTSUPP on sockets other than Unix and netlink ones, and CRIU 4.1.1 then refuses to dump any
#   TCP socket ("Can't get 1:16 opt"; checkpoint-restore/criu#2705, fixed upstream after 4.1.1).
# Debian 12's own criu (3.17) could not be used anyway: it fails `criu check` on kernels from 6.13
# on ("vdso: Unexpected rt vDSO area bounds": the kernel split [vvar] into [vvar] and
# [vvar_vclock]; CRIU 4.1 handles it), which includes this project's machines (6.18).
set -euo pipefail
log() { echo "ensure-criu: $*" >&2; }
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CORRAL_CACHE_DIR:-$REPO/.cache}"
# shellcheck source=lib/apt.sh
source "$REPO/scripts/lib/apt.sh"
works() { "$1" check >/dev/null 2>&1; }

VERSION=4.1.1
PATCHES=("$REPO"/scripts/criu/*.patch)
# The directory names the patches' content: a changed or added patch builds afresh.
DIR="$CACHE/criu/$VERSION-$(cat "${PATCHES[@]}" | sha256sum | cut -c1-12)"
BIN="$DIR/criu-$VERSION/criu/criu"
# <cache>/criu/current names the binary for tests (criuCandidates() in criu-checkpoint.ts).
done_with() { ln -sfn "$1" "$CACHE/criu/current"; echo "$1"; exit 0; }
if [ -x "$BIN" ] && works "$BIN"; then done_with "$BIN"; fi

log "building Debian's criu $VERSION source with scripts/criu/*.patch into $DIR"
apt_install gcc make patch pkgconf libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev libnl-3-dev \
  libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler protobuf-compiler uuid-dev
APT_DIR="$DIR/apt"
rm -rf "$APT_DIR" "$DIR/criu-$VERSION"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/parts"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$APT_DIR/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=$APT_DIR/parts" -o "Dir::State::Lists=$APT_DIR/lists")
apt_get "${APT_OPTS[@]}" update -qq >&2
# The orig tarball alone (apt checks its hash against the signed Sources index); no Debian
# packaging is needed to build the binary.
(cd "$DIR" && apt_get "${APT_OPTS[@]}" source --download-only "criu=$VERSION-1" >/dev/null 2>&1 || true)
[ -f "$DIR/criu_$VERSION.orig.tar.xz" ] || { log "could not download criu_$VERSION.orig.tar.xz from Debian's archive"; exit 1; }
tar -C "$DIR" -xf "$DIR/criu_$VERSION.orig.tar.xz"
for p in "${PATCHES[@]}"; do patch -d "$DIR/criu-$VERSION" -p1 --quiet <"$p"; done
make -C "$DIR/criu-$VERSION" -j"$(nproc)" criu >"$DIR/build.log" 2>&1 || { tail -n 20 "$DIR/build.log" >&2; log "build failed"; exit 1; }
if ! works "$BIN"; then "$BIN" check >&2 || true; log "criu $VERSION fails 'criu check' here too"; exit 1; fi
log "criu $VERSION built: $BIN"
done_with "$BIN"
