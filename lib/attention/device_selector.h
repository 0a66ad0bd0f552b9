// The GPU half of a policy (Policy::make_device_selector): per sequence, it chooses the long
// branch's rows of one layer and chunk from device memory, as the policy's select() does on the
// host, and owns its state (compressed keys, page bounds, block keys) and scratch. The forward
// (engine/llama_cuda.cc) lends it a stream and the chunk's queries and keys and reads back rows
// that the attention kernels consume; it never names a policy.
// Free of CUDA headers (the handles are forward-declared as the CUDA headers declare them), so
// that policy.h's users compile without the CUDA Toolkit. Implementations: attention/<p>_cuda.cc.
#pragma once

#include <cstdint>

struct CUstream_st;
typedef CUstream_st* cudaStream_t;  // as cuda_runtime_api.h declares it
struct cublasContext;
typedef cublasContext* cublasHandle_t;  // as cublas_api.h declares it
struct __nv_bfloat16;

namespace esa::attention {

/// What the forward lends a selector, for the selector's lifetime.
struct DeviceContext {
  cudaStream_t stream = nullptr;    // every launch goes here; no host synchronisation expected
  cublasHandle_t cublas = nullptr;  // bound to `stream`
  int64_t n_layers = 0, hq = 0, hkv = 0, d = 0;  // the model's shape
};

/// One layer and chunk of T queries at positions [start, start + T); device pointers, valid for
/// the call. The cache already holds the chunk's keys: rows [0, start + T).
struct DeviceLayerInputs {
  int64_t layer = 0, T = 0, start = 0;
  const float* q = nullptr;                // [T, hq, d] before RoPE
  const float* q_at_w = nullptr;           // [T, hq, d] rotated to the long branch's position w
  const __nv_bfloat16* keys = nullptr;     // [start + T, hkv * d] cached keys before RoPE
};

/// What the attention kernels read: the long branch's rows (initial tokens, then the chosen
/// middle ones, ascending; device memory owned by the selector, valid until its next select),
/// of which only the first *rows_valid count when rows_valid is set (a device-side count: quest's
/// partial last page), and the local branch's first row.
struct DeviceRows {
  const int* rows = nullptr;
  int64_t n_rows = 0;
  const int* rows_valid = nullptr;
  int64_t local_begin = 0;
};

class DeviceSelector {
 public:
  virtual ~DeviceSelector() = default;
  /// Called once per layer per chunk, layers in order; updates the selector's state.
  virtual DeviceRows select(const DeviceLayerInputs& in) = 0;
};

}  // namespace esa::attention
