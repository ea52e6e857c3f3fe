#!/usr/bin/env bash
# Install the Debian packages Switchboard needs to build, run and test, when missing.
# Idempotent and quiet when everything is present; needs root (or sudo) otherwise.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libwebsockets-dev libnats-dev nats-server
  protobuf-c-compiler libprotobuf-c-dev
  libsqlite3-dev sqlite3 libjansson-dev libssl-dev libcmocka-dev
  python3 python3-websockets python3-pytest python3-yaml
  clang clang-format
  docker-compose haproxy
  chromium fonts-dejavu-core
  gnuplot-nox libwebsockets-evlib-ev
)
# kubectl (for `kubectl kustomize` in tests/deploy) and node (offline schema validation)
# may come from other packages on a given machine; install Debian's only when missing.
command -v kubectl >/dev/null 2>&1 || PKGS+=(kubernetes-client)
command -v node >/dev/null 2>&1 || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages of the tests, pinned by their lock files: the Kubernetes schema validator
here=$(cd "$(dirname "$0")/.." && pwd)
# and the browser test's React app, Vite and playwright-core (tests/browser).
for dir in deploy:kubernetes-models browser:vite; do
  d=${dir%%:*} pkg=${dir##*:}
  if [ ! -d "$here/tests/$d/node_modules/$pkg" ]; then
    echo "deps: npm ci in tests/$d"
    npm ci --prefix "$here/tests/$d" --no-audit --no-fund --loglevel=error
  fi
done
