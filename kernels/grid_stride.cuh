// Launch geometry of the element-wise kernels (model_ops, gather_rows, ...): 256 threads a block,
// grid-stride loops, at most 65535 * 16 blocks (each thread loops over the rest).
#pragma once

#include <cstdint>

namespace esa::cuda {

constexpr int kElementThreads = 256;

inline unsigned element_blocks(int64_t n) {
  const int64_t b = (n + kElementThreads - 1) / kElementThreads;
  return unsigned(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

}  // namespace esa::cuda
