#!/usr/bin/env bash
# Installs the PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) when absent (Debian).
# The tests and `make demo-cluster` start their own server in a temporary folder on a free port
# (initdb + pg_ctl); they never use the system service, which may stay disabled.
set -euo pipefail
need=()
found=""
command -v initdb >/dev/null 2>&1 && found=yes
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && found=yes
[ -n "$found" ] || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
exec "$(dirname "$0")/apt-install-missing.sh" ${need[@]+"${need[@]}"}
