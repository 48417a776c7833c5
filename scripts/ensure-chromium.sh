#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the dashboard's browser test
# (packages/server/src/http/dashboard-browser.test.ts drives it with puppeteer-core, which downloads
# no browser of its own). Prints the browser's path on stdout. Idempotent: a second run only checks.
set -euo pipefail
log() { echo "ensure-chromium: $*" >&2; }
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
apt_install chromium fonts-dejavu-core
command -v chromium >/dev/null 2>&1 || { log "chromium missing after install"; exit 1; }
log "$(chromium --version 2>/dev/null || echo 'chromium (version unknown)')"
command -v chromium
