# shellcheck shell=bash
# Installs Debian packages that are not installed yet: `apt_install pkg…`. Sourced by the scripts
# that set up a machine. Runs `apt-get update` once per script and uses sudo when not root.
# Every apt-get of these scripts goes through `apt_get`, which takes one lock file first: the test
# script runs setup steps in parallel, and apt-get's own lock waits (DPkg::Lock::Timeout) cover the
# dpkg lock but not /var/lib/apt/lists/lock, so an `update` beside another step's `update` failed
# with "Could not get lock /var/lib/apt/lists/lock".

APT_SUDO=""
if [ "$(id -u)" -ne 0 ]; then APT_SUDO="sudo"; fi
APT_UPDATED=0

# Whether a Debian package is installed.
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

# apt-get with its arguments, one at a time across Corral's setup scripts (waits up to 15 minutes).
apt_get() {
  $APT_SUDO flock -w 900 /var/lock/corral-apt.lock env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"
}

apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "$(basename "$0"): installing ${missing[*]}" >&2
  if [ "$APT_UPDATED" -eq 0 ]; then
    apt_get update -qq >&2
    APT_UPDATED=1
  fi
  apt_get install -y --no-install-recommends "${missing[@]}" >&2
}
