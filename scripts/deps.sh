#!/usr/bin/env bash
# Install the Debian packages Switchboard needs to build, run and test, when missing.
# Idempotent and quiet when everything is present; needs root (or sudo) otherwise.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libwebsockets-dev libnats-dev nats-server
  protobuf-c-compiler libprotobuf-c-dev
  libsqlite3-dev sqlite3 libjansson-dev libssl-dev libcmocka-dev
  python3 python3-websockets python3-pytest
  clang
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
