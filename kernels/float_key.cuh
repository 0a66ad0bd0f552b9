// Order-preserving bits of a float, shared by the kernels that compare scores as integers (the
// row maxima of esa_select.cu, the radix select of top_k.cu).
#pragma once

#include <cmath>

namespace esa::cuda {

// Order-preserving bits of a float: a > b  <=>  key(a) > key(b); NaN ranks as -inf (as
// top_k_indices ranks it: tied with -inf, the lower index first), -0 as +0 (they compare equal).
__device__ __forceinline__ unsigned int float_key(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;
  const unsigned int u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_float(unsigned int key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

}  // namespace esa::cuda
