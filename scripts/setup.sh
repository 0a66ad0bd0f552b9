#!/usr/bin/env bash
# Installs every build and runtime dependency of esa as Debian packages (Debian 12 "bookworm").
# Non-interactive and idempotent: packages already present are left alone, and apt is only
# refreshed when something is missing. The CUDA Toolkit is not installed here: esa builds its
# CUDA kernels when `nvcc` is found (see README.md), and builds without them otherwise.
set -euo pipefail

PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config git ca-certificates
  libeigen3-dev libomp-dev libhdf5-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libpcre2-dev libsentencepiece-dev libtomlplusplus-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-pip python3-venv python3-numpy python3-h5py python3-matplotlib
)
# scripts/test.sh --sanitize (ESA_SETUP_SANITIZE=1): clang's ASan/UBSan and libFuzzer, and
# llvm-symbolizer for readable reports.
if [[ "${ESA_SETUP_SANITIZE:-0}" == "1" ]]; then PACKAGES+=(clang libclang-rt-dev llvm); fi
# Open MPI for `mpirun esa sweep` (ESA_WITH_MPI turns on when CMake finds it; the CLI test then
# checks it). ESA_SETUP_MPI=0 leaves it out: esa builds without, sweeps use --shard instead.
if [[ "${ESA_SETUP_MPI:-1}" == "1" ]]; then PACKAGES+=(libopenmpi-dev openmpi-bin); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages already installed"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || { echo "setup: apt-get update failed: is a Debian mirror reachable?" >&2; exit 1; }
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" \
  || { echo "setup: apt-get install failed for: ${missing[*]}" >&2; exit 1; }
echo "setup: done"
