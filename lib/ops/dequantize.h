// Dequantisation of ggml block formats to float32: the op that turns GGUF weights into the
// compute dtype at load. Reference: the numpy implementation of the PyPI package `gguf`
// (gguf.quants), through the fixture made by scripts/reference/dequant_fixture.py.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/device.h"
#include "io/ggml_type.h"

namespace esa::ops {

/// Dequantises `n` elements of `type` stored in `src` (`src_bytes` long) into `dst`.
/// Checks: the type is dequantisable, n is a whole number of blocks, src_bytes covers them.
void dequantize(io::GgmlType type, const void* src, size_t src_bytes, float* dst, int64_t n);
/// The same on `device`: for Device::cuda, `src` and `dst` are device pointers and the call
/// returns when the result is ready. CUDA handles F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// Q4_K, Q6_K.
void dequantize(Device device, io::GgmlType type, const void* src, size_t src_bytes, float* dst, int64_t n);

/// Comma-separated names of the dequantisable types, for error messages.
std::string dequantizable_types();

/// CPU reference (no checks; called by the dispatcher).
void dequantize_cpu(io::GgmlType type, const uint8_t* src, float* dst, int64_t n_blocks);

}  // namespace esa::ops
