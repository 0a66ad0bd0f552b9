// RoPE angles at any position on the GPU from two small tables (shared by the attention and the
// model kernels). Reference: esa::ops::RopeSplitTables::angle_at (lib/ops/rope.h), which does the
// same float arithmetic on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

constexpr int kRopeLow = 1024;  // positions split as hi * kRopeLow + lo: two small tables

/// cos and sin at any position without a table per position. The reference (ops::rope_cpu, as
/// transformers) rotates by the float32 angle a = fl(p * f); the kernel takes cos/sin of the exact
/// p * f from two tables built in double on the host (p = hi * kRopeLow + lo, angle-sum rule),
/// then turns back by the rounding error p * f - a (exact with an fma).
struct RopeTables {
  const float* inv_freq = nullptr;  // [half] float32 frequencies f_i
  const float2* low = nullptr;   // [kRopeLow, half]: (cos, sin) of lo * f_i, times the attention factor
  const float2* high = nullptr;  // [positions / kRopeLow + 1, half]: (cos, sin) of hi * kRopeLow * f_i
  int half = 0;                  // rotated pairs; half % 8 == 0
  bool adjacent_pairs = false;   // pairs (2i, 2i + 1); otherwise (i, i + half)
};

#ifdef __CUDACC__
__device__ __forceinline__ float2 rope_angle(const RopeTables& rope, int64_t position, int pair) {
  const float2 lo = rope.low[(position % kRopeLow) * rope.half + pair];
  const float2 hi = rope.high[(position / kRopeLow) * rope.half + pair];
  const float c0 = lo.x * hi.x - lo.y * hi.y, s0 = lo.y * hi.x + lo.x * hi.y;  // of the exact p * f
  const float p = float(position), f = __ldg(rope.inv_freq + pair);
  const float err = fmaf(p, f, -__fmul_rn(p, f));  // p * f - fl(p * f), exactly
  float se, ce;
  __sincosf(err, &se, &ce);  // |err| <= half an ulp of p * f: up to ~1 rad near 2^24 positions
  return make_float2(c0 * ce + s0 * se, s0 * ce - c0 * se);  // of fl(p * f) = p * f - err
}
#endif

}  // namespace esa::cuda
