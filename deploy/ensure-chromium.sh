#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium and its driver when absent. The browser tests
# drive /usr/bin/chromium with Playwright for Python; no browser build is downloaded.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
exec "$(dirname "$0")/apt-install-missing.sh" ${need[@]+"${need[@]}"}
