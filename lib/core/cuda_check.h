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
