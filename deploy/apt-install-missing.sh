#!/usr/bin/env bash
# apt-get installs the Debian packages named as arguments (none: nothing to do), as root or
# through sudo. The ensure-*.sh scripts decide what is missing; this installs it.
set -euo pipefail
[ $# -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: $*" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
