#!/usr/bin/env bash
# Builds the GPU check programs here (x86-64-v3 CPU code: AVX2 + FMA, which every Hopper host has;
# sm_90 + sm_90a kernels) and packs
# them with the shared libraries they need into .gpu/bundle/ (git-ignored), for
# scripts/gpu_check.sh on a GPU machine that lacks the Debian build dependencies.
# Usage: scripts/gpu_bundle.sh   then carry .gpu/bundle to the GPU machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build-gpu}"  # BUILD=build reuses a tree configured the same way
OUT="$ROOT/.gpu/bundle"
# The GPU tests (scripts/gpu_check.sh runs them) and the CPU ones it runs first.
TARGETS=(test_cuda_ops test_dequantize_cuda test_selection_cuda test_attention_cuda test_forward_cuda test_streaming test_oracle test_esa test_quest test_infllm test_selection test_diagnostics test_dequantize test_gguf test_core bench_dequantize esa)

GEN=(); command -v ninja >/dev/null && [[ ! -f "$BUILD/Makefile" ]] && GEN=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DESA_NATIVE=OFF \
  -DCMAKE_CXX_FLAGS="-march=x86-64-v3" -DESA_WITH_CUDA=ON -DESA_WITH_MPI=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"

rm -rf "$OUT"; mkdir -p "$OUT/bin" "$OUT/lib"
for t in "${TARGETS[@]}"; do
  f="$(find "$BUILD" -type f -name "$t" -perm -u+x | head -1)"
  cp "$f" "$OUT/bin/"
  # Every shared library except the C library family, the GPU driver (which the GPU machine
  # provides and which must match its kernel module) and cuBLAS (~600 MB; scripts/gpu_env.sh
  # finds the GPU machine's own).
  ldd "$f" | awk '/=> \//{print $3}' | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*)\.so|/libcuda\.so|/libcublas' |
    while read -r lib; do cp -nL "$lib" "$OUT/lib/"; done
done
cp -r "$ROOT/tests/fixtures" "$OUT/fixtures"
du -sh "$OUT"
