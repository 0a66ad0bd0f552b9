# Sourced by scripts/gpu_check.sh and gpu_e2e.sh: sets BIN (the programs) and the library path,
# from a bundle of scripts/gpu_bundle.sh when BUNDLE_DIR has one, else from a build here.
# cuBLAS is not in the bundle (its libraries are ~600 MB): the GPU machine's CUDA toolkit or its
# pip wheel (nvidia-cublas) provides libcublas.so.13.
BUNDLE_DIR="${1:-}"
if [[ -n "$BUNDLE_DIR" && -d "$BUNDLE_DIR/bin" ]]; then
  BIN="$BUNDLE_DIR/bin"
  export LD_LIBRARY_PATH="$BUNDLE_DIR/lib:${LD_LIBRARY_PATH:-}"
  export ESA_FIXTURES_DIR="$BUNDLE_DIR/fixtures"
else
  bash "$ROOT/scripts/build.sh" -DESA_WITH_CUDA=ON >/dev/null || { echo "gpu_env: build failed" >&2; exit 1; }
  BIN="$ROOT/build/bin"
  for t in test_cuda_ops test_dequantize_cuda test_selection_cuda test_attention_cuda test_forward_cuda test_streaming test_oracle test_esa test_quest test_infllm test_selection test_dequantize test_gguf test_core; do
    ln -sf "$ROOT/build/tests/$t" "$BIN/$t"
  done
fi
if ! ldconfig -p 2>/dev/null | grep -q "libcublas.so.13"; then
  for dir in /usr/local/cuda/lib64 $(python3 - 2>/dev/null <<'PY'
import glob, os, site
for base in site.getsitepackages():
    for path in glob.glob(os.path.join(base, "nvidia", "**", "libcublas.so.13"), recursive=True):
        print(os.path.dirname(path))
PY
); do
    [[ -e "$dir/libcublas.so.13" ]] && { export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$dir"; break; }
  done
fi
