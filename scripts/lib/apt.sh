# shellcheck shell=bash
# Installs Debian packages that are not installed yet: `apt_install pkg…`. Sourced by the scripts
# that set up a machine. Runs `apt-get update` once per script, waits up to 5 minutes for another
# apt-get's lock (the test script runs several setup steps), and uses sudo when not root.

APT_SUDO=""
if [ "$(id -u)" -ne 0 ]; then APT_SUDO="sudo"; fi
APT_UPDATED=0

# Whether a Debian package is installed.
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "$(basename "$0"): installing ${missing[*]}" >&2
  if [ "$APT_UPDATED" -eq 0 ]; then
    $APT_SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
    APT_UPDATED=1
  fi
  $APT_SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" >&2
}
