// ESA_CUDA_CHECK: turns a CUDA runtime status into esa::Error (lib/ only; kernels/ return
// statuses). Include only in CUDA-enabled translation units.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define ESA_CUDA_CHECK(expr)                                                                  \
  do {                                                                                        \
    const cudaError_t esa_status_ = (expr);                                                   \
    ESA_CHECK(esa_status_ == cudaSuccess, "CUDA error in {}: {} ({})", #expr,                \
              cudaGetErrorName(esa_status_), cudaGetErrorString(esa_status_));                \
  } while (0)

// ESA_CUBLAS_CHECK: the same for a cuBLAS status (the including file includes cublas_v2.h).
#define ESA_CUBLAS_CHECK(expr)                                                                \
  do {                                                                                        \
    const cublasStatus_t esa_status_ = (expr);                                                \
    ESA_CHECK(esa_status_ == CUBLAS_STATUS_SUCCESS, "cuBLAS error in {}: {}", #expr,         \
              cublasGetStatusString(esa_status_));                                            \
  } while (0)
