#!/usr/bin/env bash
# Make a private CA, a broker certificate and client certificates for SensorLedger.
#
#   deploy/make-certs.sh DIR BROKER_HOST NAME...
#
# DIR gets ca.crt/ca.key, broker.crt/broker.key (for BROKER_HOST, also valid for localhost and
# 127.0.0.1) and NAME.crt/NAME.key per client. A client's NAME is its MQTT identity: a device
# id, or "collector". Existing files are kept, so the script can be run again to add devices.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
dir=$1 host=$2; shift 2
mkdir -p "$dir"; cd "$dir"
umask 077
days=${DAYS:-825}

if [ ! -f ca.key ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=SensorLedger CA" -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

issue() {  # name, extensions
  local name=$1 ext=$2
  [ -f "$name.crt" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

issue broker "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  case $name in
    *[!A-Za-z0-9._-]*|[._-]*|"") echo "bad client name: $name" >&2; exit 2;;
  esac
  issue "$name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done
chmod 600 ./*.key
chmod 644 ./*.crt
echo "certificates in $(pwd)"
