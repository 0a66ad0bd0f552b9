// The shared arithmetic of every policy: attention over a Selection in two branches merged by
// log-sum-exp (PAPER.md section 4). Reference: with every token in the local branch it equals
// plain causal attention (tests/unit/test_attention_policy.cc).
#pragma once

#include "attention/policy.h"

namespace esa::attention {

/// out [T, n_heads, head_dim]. The local branch uses the cache's keys rotated to their true
/// positions and the queries at their true positions; the long branch uses the keys before RoPE
/// (position 0) and the queries rotated to position `w`. `q` is before RoPE.
void two_branch_attention(const LayerInputs& in, const Selection& selection, int64_t w, Tensor& out);

/// o = (e^{l1} o1 + e^{l2} o2) / (e^{l1} + e^{l2}) per row and head, computed stably; a branch
/// with lse = -inf contributes nothing. o1 and lse1 are updated in place.
void merge_by_lse(Tensor& o1, Tensor& lse1, const Tensor& o2, const Tensor& lse2);

}  // namespace esa::attention
