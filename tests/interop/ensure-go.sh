#!/usr/bin/env bash
# Installs what the interop tests build their Go checker with, when absent (Debian): the Go
# toolchain and golang.org/x/mod's sources (sumdb/note, sumdb/tlog), built offline.
set -euo pipefail
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ] || need+=(golang-golang-x-mod-dev)
exec "$(dirname "$0")/../../deploy/apt-install-missing.sh" ${need[@]+"${need[@]}"}
