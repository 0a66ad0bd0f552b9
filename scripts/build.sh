#!/usr/bin/env bash
# Configures and builds esa in build/ (Release). Extra arguments go to cmake's configure step,
# e.g. scripts/build.sh -DESA_NATIVE=OFF -DESA_WITH_CUDA=OFF.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ESA_BUILD_DIR:-$ROOT/build}"
JOBS="${ESA_JOBS:-$(nproc)}"
GEN=()
command -v ninja >/dev/null && [[ ! -f "$BUILD/Makefile" ]] && GEN=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD" -j "$JOBS"
