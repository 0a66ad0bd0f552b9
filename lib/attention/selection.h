// The primitives of token selection (PAPER.md section 2): the GQA fold of the queries, the exact
// importance score f(m; c) = sum_h q_{h,c} . k_{g(h),m}, the chunk importance
// F(m) = max_c [f(m; c) - max_m' f(m'; c)], the proximity max-pool and a deterministic top-k.
// The scoring policies (attention/<p>.cc, policies.h) are compositions of these; each is tested against a
// float64 brute force in tests/unit/test_selection.cc.
//
// Memory order: every matrix here is row-major; score matrices are [T, n] (one row per query of
// the chunk, one column per candidate token).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "ops/rope.h"

namespace esa::attention {

/// s'_j = max of s over [j - eps, j + eps] clipped to [0, n): a stride-1 max-pool of width
/// 2 eps + 1 (PAPER.md section 2, "proximity influence"). eps = 0 returns the input.
std::vector<float> proximity_max_pool(std::span<const float> scores, int64_t eps);

/// The indices of the k largest scores (all of them when k >= n), ties broken by the lower
/// index, returned sorted by index. NaN ranks below every number.
std::vector<int64_t> top_k_indices(std::span<const float> scores, int64_t k);

/// q [T, n_heads, d] -> [T, n_kv_heads, d]: the sum of the query heads of each KV group
/// (head h belongs to group h / (n_heads / n_kv_heads), as in the attention op).
Tensor gqa_fold(const TensorView& q, int64_t n_kv_heads);

/// The positive and the negative parts of q folded separately (Quest's bound needs the sign of
/// each channel per head): pos = sum_h max(q_h, 0), neg = sum_h min(q_h, 0), [T, n_kv_heads, d].
void gqa_fold_signed(const TensorView& q, int64_t n_kv_heads, Tensor& pos, Tensor& neg);

/// A copy of x [T, heads, d] with every row rotated to the same position (the long branch's w).
Tensor rotate_to_position(const TensorView& x, int64_t position, const ops::RopeTable& rope,
                          const ops::RopeAngles* angles);

/// out [T, n] = Q K^T with Q rows q + t * q_stride (dim floats each) and K rows
/// k + m * k_stride: one Eigen GEMM over strided row-major maps (a column block of a wider
/// matrix, e.g. one KV head of [T, Hkv * d], is a map with an outer stride).
void dot_scores(const float* q, int64_t q_stride, int64_t T, const float* k, int64_t k_stride, int64_t n, int64_t dim,
                float* out);

/// Exact scores f(m; c) for candidates [begin, end): q_folded [T, Hkv, d] (gqa_fold, already in
/// the score space), keys [S, Hkv, d]. head = -1 sums over all KV groups (uniform); head = g
/// scores with group g only (individual). Returns [T, end - begin].
Tensor exact_scores(const TensorView& q_folded, const TensorView& keys, int64_t begin, int64_t end, int64_t head = -1);

/// Fills out [T, count] (row-major) with the scores of candidates [m0, m0 + count).
using ScoreBlockFn = std::function<void(int64_t m0, int64_t count, float* out)>;

/// F(m) = max over the T queries of [s(c, m) - max_m' s(c, m')] for n candidates, or plainly
/// max_c s(c, m) when subtract_row_max is false. Scores come in column blocks from `score_block`;
/// when T * n exceeds `max_buffer` floats the scores are computed twice (once for the row maxima,
/// once for F) instead of being stored, so memory stays bounded at any context length.
std::vector<float> chunk_importance(int64_t T, int64_t n, const ScoreBlockFn& score_block, bool subtract_row_max = true,
                                    int64_t max_buffer = int64_t(1) << 23);

/// pool(F, eps), then top-k: the chosen candidates, indices into F, sorted.
std::vector<int64_t> select_top(std::span<const float> importance, int64_t eps, int64_t k);

/// [0, init_end) followed by first + each of `chosen` (chosen sorted): one long-branch list.
std::vector<int64_t> long_list(int64_t init_end, int64_t first, const std::vector<int64_t>& chosen);

/// [0, init_end) followed by [begin, end): every middle token (when |M| <= k).
std::vector<int64_t> long_list_all(int64_t init_end, int64_t begin, int64_t end);

}  // namespace esa::attention
