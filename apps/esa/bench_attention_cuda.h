// `esa bench attention --device cuda`: one layer's decode step on the GPU, ESA (scoring, top-k,
// gathered attention, merge) against dense attention over the same cache, with the bytes each
// stage must read and the floor at the bandwidth measured in the same run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/policy.h"

namespace esa::cli {

struct CudaBenchAttentionOptions {
  std::string shape_name;
  int64_t hq = 32, hkv = 8, d = 128;
  double rope_base = 500000.0;
  std::vector<int64_t> contexts;
  std::vector<std::string> policies;  // esa, full, topk (the selection alone)
  int64_t dim = 128;                  // d' of the compressed keys
  attention::Budget budget;
  int64_t eps = 1;
  int64_t steps = 50;
  uint64_t seed = 1234;
};

/// Prints the table; throws esa::Error when esa was built without CUDA or no GPU is present.
void run_bench_attention_cuda(const CudaBenchAttentionOptions& options);

}  // namespace esa::cli
