// Scaled dot-product attention with grouped-query heads, explicit positions and the row
// log-sum-exp. Every policy of the selective-attention layer calls it once per branch and
// merges branches by their LSE; `full` calls it with causal masking over the whole cache.
// Reference: a float64 softmax loop in tests/unit/test_ops.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace esa::ops {

struct AttentionArgs {
  float scale = 1.0f;         // usually 1/sqrt(head_dim)
  bool causal = true;         // key j is visible to query i only when k_pos[j] <= q_pos[i]
};

/// q [T, Hq, d], k and v [S, Hkv, d] (Hq a multiple of Hkv; query head h reads KV head
/// h / (Hq / Hkv)), q_pos [T], k_pos [S]. out is resized to [T, Hq, d]; lse (if not null) to
/// [T, Hq] with the natural-log sum of exp(scores). A query that sees no key gets out = 0 and
/// lse = -inf.
void attention(const TensorView& q, const TensorView& k, const TensorView& v, const std::vector<int64_t>& q_pos,
               const std::vector<int64_t>& k_pos, const AttentionArgs& args, Tensor& out, Tensor* lse);

void attention_cpu(const float* q, const float* k, const float* v, const int64_t* q_pos, const int64_t* k_pos,
                   int64_t T, int64_t S, int64_t hq, int64_t hkv, int64_t d, const AttentionArgs& args, float* out,
                   float* lse);

}  // namespace esa::ops
