#!/usr/bin/env bash
# Installs the Mosquitto broker and clients when absent (Debian / Raspberry Pi OS).
# Tests and the demo start their own broker on a free port; they only need the binaries.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
exec "$(dirname "$0")/apt-install-missing.sh" ${need[@]+"${need[@]}"}
