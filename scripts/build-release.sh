#!/usr/bin/env bash
# build-release.sh: the one recipe that turns a source tree into installed Switchboard
# binaries. deploy/Dockerfile's build stage runs exactly this, and tests/deploy runs it
# too, so a green test run means the image's build step works.
#
#   scripts/build-release.sh PREFIX
#
# Configures and builds the service targets (RelWithDebInfo, -Werror, like `make build`)
# in $SB_RELEASE_BUILD_DIR (default: build-release/ next to this script's tree), then
# installs PREFIX/bin/<binary>, debug sections stripped (the symbols stay, so a backtrace
# still names functions). Needs the Debian -dev packages of scripts/deps.sh; downloads
# nothing.
#
# A binary is built when the top CMakeLists.txt adds its folder. One not added yet is
# reported and skipped, unless SB_RELEASE_STRICT=1 (then it is an error).
set -euo pipefail

usage() { echo "usage: $0 PREFIX   (env: SB_RELEASE_BUILD_DIR, SB_RELEASE_STRICT, JOBS)" >&2; exit 2; }
[ $# -eq 1 ] || usage
PREFIX=$1

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${SB_RELEASE_BUILD_DIR:-$SRC/build-release}
JOBS=${JOBS:-$(nproc)}
BINARIES=(gateway auth-svc chat-svc notify-svc sbctl)

targets=()
for b in "${BINARIES[@]}"; do
  if grep -Eq "^[[:space:]]*add_subdirectory\([[:space:]]*$b[[:space:]]*\)" "$SRC/CMakeLists.txt"; then
    targets+=("$b")
  elif [ "${SB_RELEASE_STRICT:-0}" = 1 ]; then
    echo "build-release: CMakeLists.txt does not add $b/" >&2
    exit 1
  else
    echo "build-release: warning: CMakeLists.txt does not add $b/ yet; skipping it" >&2
  fi
done

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}"

mkdir -p "$PREFIX/bin"
for b in "${targets[@]}"; do
  install -m 0755 "$BUILD/$b/$b" "$PREFIX/bin/$b"
  strip --strip-debug "$PREFIX/bin/$b"
done
echo "build-release: installed ${targets[*]} into $PREFIX/bin"
