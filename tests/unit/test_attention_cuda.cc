// The GPU attention kernels against ops::attention on the CPU, both branches merged by
// log-sum-exp: the decode-step kernel (kernels/gathered_attention.cuh) and a prefill chunk's
// (kernels/flash_attention.cuh) with its gathered rows (kernels/gather_rows.cuh). Skips without
// a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "rope_rows.cuh"
#include "core/half.h"
#include "flash_attention.cuh"
#include "gather_rows.cuh"
#include "gathered_attention.cuh"
#include "ops/attention.h"
#include "ops/rope.h"
#include "support/cuda_test.h"
#include "support/test_support.h"

namespace esa {
namespace {

using test::CudaTest;
using test::DeviceArray;
using test::to_bf16;

struct AttentionCase {
  int hq, hkv, d;
  RopeStyle style;
  int64_t n_rows, range_begin, range_end;
};

// Both branches against ops::attention_cpu (long: listed rows as cached; local: keys rotated by
// ops::rope_cpu to their positions) merged by log-sum-exp; positions up to ~300k exercise the
// kernel's two-table RoPE.
TEST_F(CudaTest, GatheredAttentionMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(23));
  std::normal_distribution<float> normal;
  std::vector<AttentionCase> cases;
  for (const auto& [hq, hkv, d] : {std::tuple{32, 8, 128}, std::tuple{9, 3, 64}, std::tuple{8, 8, 128}, std::tuple{16, 2, 64}}) {
    for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::adjacent_pairs}) {
      for (const auto& [rows, lb, le] : {std::tuple<int64_t, int64_t, int64_t>{0, 0, 1}, {1, 40, 40}, {33, 100, 131},
                                         {1025, 3000, 5048}, {4096 + 128, 9000, 9033}, {31, 299000, 300024}}) {
        cases.push_back({hq, hkv, d, style, rows, lb, le});
      }
    }
  }
  cases.push_back({32, 8, 128, RopeStyle::rotate_half, 0, 0, 0});  // no row at all: out 0, lse -inf
  for (const AttentionCase& c : cases) {
    const int64_t n = std::max<int64_t>(c.range_end, c.n_rows + 1);
    const int64_t width = int64_t(c.hkv) * c.d;
    std::vector<uint16_t> k_bits(size_t(n * width), 0), v_bits(size_t(n * width), 0);
    std::vector<int> rows(size_t(c.n_rows));
    std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(c.range_begin, 1) - 1);
    for (int& r : rows) r = int(c.range_begin > 0 ? pick(rng) : 0);
    std::vector<char> used(size_t(n), 0);
    for (int r : rows) used[size_t(r)] = 1;
    for (int64_t r = c.range_begin; r < c.range_end; ++r) used[size_t(r)] = 1;
    for (int64_t r = 0; r < n; ++r) {
      if (!used[size_t(r)]) continue;
      for (int64_t i = 0; i < width; ++i) {
        k_bits[size_t(r * width + i)] = to_bf16(normal(rng));
        v_bits[size_t(r * width + i)] = to_bf16(normal(rng));
      }
    }
    std::vector<float> q_long(size_t(c.hq * c.d)), q_local(q_long.size());
    for (float& x : q_long) x = normal(rng);
    for (float& x : q_local) x = normal(rng);
    RopeConfig rope_cfg;
    rope_cfg.base = 500000.0;
    rope_cfg.dim = c.d;
    rope_cfg.style = c.style;
    const ops::RopeTable table = ops::make_rope_table(rope_cfg);
    const ops::RopeSplitTables split = ops::make_rope_split_tables(table, n);
    const float scale = 1.0f / std::sqrt(float(c.d));

    // CPU: each branch by the reference attention, then the LSE merge.
    auto gather = [&](const std::vector<int64_t>& which, std::vector<float>& kk, std::vector<float>& vv) {
      kk.resize(which.size() * size_t(width));
      vv.resize(kk.size());
      for (size_t j = 0; j < which.size(); ++j) {
        for (int64_t i = 0; i < width; ++i) {
          kk[j * size_t(width) + size_t(i)] = bf16_to_float(k_bits[size_t(which[j] * width + i)]);
          vv[j * size_t(width) + size_t(i)] = bf16_to_float(v_bits[size_t(which[j] * width + i)]);
        }
      }
    };
    std::vector<int64_t> long_rows(rows.begin(), rows.end()), local_rows;
    for (int64_t r = c.range_begin; r < c.range_end; ++r) local_rows.push_back(r);
    std::vector<float> k1, v1, k2, v2;
    gather(long_rows, k1, v1);
    gather(local_rows, k2, v2);
    ops::rope_cpu(k2.data(), local_rows.data(), int64_t(local_rows.size()), c.hkv, c.d, table);
    const std::vector<int64_t> q_pos{0}, zeros1(long_rows.size(), 0), zeros2(local_rows.size(), 0);
    ops::AttentionArgs args{scale, false};
    std::vector<float> o1(q_long.size()), o2(q_long.size()), l1(static_cast<size_t>(c.hq)), l2(static_cast<size_t>(c.hq));
    ops::attention_cpu(q_long.data(), k1.data(), v1.data(), q_pos.data(), zeros1.data(), 1, int64_t(long_rows.size()),
                       c.hq, c.hkv, c.d, args, o1.data(), l1.data());
    ops::attention_cpu(q_local.data(), k2.data(), v2.data(), q_pos.data(), zeros2.data(), 1,
                       int64_t(local_rows.size()), c.hq, c.hkv, c.d, args, o2.data(), l2.data());

    // GPU.
    const DeviceArray<float> d_q_long(q_long), d_q_local(q_local), d_freq(split.inv_freq);
    const DeviceArray<float> d_low(split.low), d_high(split.high);
    const DeviceArray<uint16_t> d_k(k_bits), d_v(v_bits);
    const DeviceArray<int> d_rows(rows);
    const int64_t total = c.n_rows + (c.range_end - c.range_begin);
    DeviceArray<float> d_partial(cuda::gathered_attention_partial_floats(total, c.hq, c.hkv, c.d));
    DeviceArray<float> d_out(q_long.size()), d_lse{static_cast<size_t>(c.hq)};
    cuda::GatheredAttentionParams p;
    p.q_long = d_q_long.ptr;
    p.q_local = d_q_local.ptr;
    p.k = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
    p.v = reinterpret_cast<const __nv_bfloat16*>(d_v.ptr);
    p.rows = d_rows.ptr;
    p.n_rows = int(c.n_rows);
    p.range_begin = c.range_begin;
    p.range_end = c.range_end;
    p.rope = {d_freq.ptr, reinterpret_cast<const float2*>(d_low.ptr), reinterpret_cast<const float2*>(d_high.ptr),
              int(split.half), split.adjacent_pairs};
    p.hq = c.hq;
    p.hkv = c.hkv;
    p.d = c.d;
    p.scale = scale;
    p.partial = d_partial.ptr;
    p.out = d_out.ptr;
    p.lse = d_lse.ptr;
    ASSERT_EQ(cuda::launch_gathered_attention(p, nullptr), cudaSuccess);
    const std::vector<float> out = d_out.download(), lse = d_lse.download();

    const std::string what = fmt::format("hq {} hkv {} d {} {} rows {} range [{}, {})", c.hq, c.hkv, c.d,
                                         c.style == RopeStyle::rotate_half ? "rotate_half" : "adjacent", c.n_rows,
                                         c.range_begin, c.range_end);
    double worst = 0.0, worst_lse = 0.0;
    for (int h = 0; h < c.hq; ++h) {
      const double a = l1[size_t(h)], b = l2[size_t(h)];
      const double top = std::max(a, b);
      if (top == -std::numeric_limits<double>::infinity()) {
        EXPECT_TRUE(std::isinf(lse[size_t(h)]) && lse[size_t(h)] < 0) << what;
        for (int i = 0; i < c.d; ++i) EXPECT_EQ(out[size_t(h * c.d + i)], 0.0f) << what;
        continue;
      }
      const double wa = std::exp(a - top), wb = std::exp(b - top);
      worst_lse = std::max(worst_lse, std::fabs(lse[size_t(h)] - (top + std::log(wa + wb))) / (1.0 + std::fabs(top)));
      for (int i = 0; i < c.d; ++i) {
        const size_t at = size_t(h * c.d + i);
        const double ref = (wa * o1[at] + wb * o2[at]) / (wa + wb);
        worst = std::max(worst, std::fabs(out[at] - ref) / (1.0 + std::fabs(ref)));
      }
    }
    EXPECT_LT(worst, 2e-4) << what;
    EXPECT_LT(worst_lse, 1e-5) << what;
  }
}

// A chunk of consecutive queries (prefill): each attends to the listed rows and, causally, to the
// range up to its own position.
// A prefill chunk's two-branch attention: T queries at positions le - T ... over `rows` (long
// branch, keys as cached) and the range [lb, le) (causal), K/V bf16 values; the reference is
// the CPU's attention per branch merged by log-sum-exp (as two_branch_attention).
struct ChunkCase {
  int hq = 0, hkv = 0, d = 0, T = 0;
  int64_t lb = 0, le = 0, width = 0;
  std::vector<uint16_t> k_bits, v_bits;
  std::vector<int> rows;
  std::vector<float> q_long, q_local;
  ops::RopeTable table;
  std::vector<float> out, lse;  // the reference, [T, hq, d] and [T, hq]
  std::string what;
};

// `bf16_queries` rounds the queries to bf16 first (the flash kernel takes them so), so that the
// reference sees the same inputs.
ChunkCase chunk_case(int hq, int hkv, int d, int T, int n_rows, int64_t lb, int64_t le, bool bf16_queries,
                     std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  ChunkCase c;
  c.hq = hq, c.hkv = hkv, c.d = d, c.T = T, c.lb = lb, c.le = le, c.width = int64_t(hkv) * d;
  const int64_t n = le, width = c.width;
  c.k_bits.resize(size_t(n * width));
  c.v_bits.resize(c.k_bits.size());
  for (auto& b : c.k_bits) b = to_bf16(normal(rng));
  for (auto& b : c.v_bits) b = to_bf16(normal(rng));
  c.rows.resize(static_cast<size_t>(n_rows));
  std::uniform_int_distribution<int> pick(0, int(std::max<int64_t>(lb, 1)) - 1);
  for (int& r : c.rows) r = pick(rng);
  c.q_long.resize(size_t(T) * hq * d);
  c.q_local.resize(c.q_long.size());
  for (auto* q : {&c.q_long, &c.q_local}) {
    for (float& x : *q) x = bf16_queries ? bf16_to_float(to_bf16(normal(rng))) : normal(rng);
  }
  RopeConfig rope_cfg;
  rope_cfg.dim = d;
  c.table = ops::make_rope_table(rope_cfg);
  c.what = fmt::format("hq {} hkv {} d {} T {} rows {} range [{}, {})", hq, hkv, d, T, n_rows, lb, le);
  const float scale = 1.0f / std::sqrt(float(d));

  std::vector<float> k_all(c.k_bits.size()), v_all(c.v_bits.size());
  for (size_t i = 0; i < c.k_bits.size(); ++i) k_all[i] = bf16_to_float(c.k_bits[i]), v_all[i] = bf16_to_float(c.v_bits[i]);
  std::vector<float> k1, v1;
  for (int r : c.rows) {
    k1.insert(k1.end(), k_all.begin() + r * width, k_all.begin() + (r + 1) * width);
    v1.insert(v1.end(), v_all.begin() + r * width, v_all.begin() + (r + 1) * width);
  }
  std::vector<float> k2(k_all.begin() + lb * width, k_all.end()), v2(v_all.begin() + lb * width, v_all.end());
  std::vector<int64_t> k2_pos, q_pos, zeros_q(size_t(T), 0), zeros_k(c.rows.size(), 0);
  for (int64_t r = lb; r < le; ++r) k2_pos.push_back(r);
  for (int t = 0; t < T; ++t) q_pos.push_back(le - T + t);
  ops::rope_cpu(k2.data(), k2_pos.data(), int64_t(k2_pos.size()), hkv, d, c.table);
  std::vector<float> o1(c.q_long.size()), o2(c.q_long.size()), l1(size_t(T) * hq), l2(l1.size());
  ops::attention_cpu(c.q_long.data(), k1.data(), v1.data(), zeros_q.data(), zeros_k.data(), T, int64_t(c.rows.size()),
                     hq, hkv, d, {scale, false}, o1.data(), l1.data());
  ops::attention_cpu(c.q_local.data(), k2.data(), v2.data(), q_pos.data(), k2_pos.data(), T, int64_t(k2_pos.size()), hq,
                     hkv, d, {scale, true}, o2.data(), l2.data());
  c.out.resize(o1.size());
  c.lse.resize(l1.size());
  for (size_t r = 0; r < l1.size(); ++r) {
    const double a = l1[r], b = l2[r], top = std::max(a, b);
    const double wa = std::isinf(a) ? 0.0 : std::exp(a - top), wb = std::exp(b - top);
    c.lse[r] = float(top + std::log(wa + wb));
    for (int i = 0; i < d; ++i) {
      const size_t at = r * size_t(d) + size_t(i);
      c.out[at] = float((wa * o1[at] + wb * o2[at]) / (wa + wb));
    }
  }
  return c;
}

// The worst |got - want| / (1 + |want|) of the outputs, and of the log-sum-exps.
std::pair<double, double> chunk_errors(const ChunkCase& c, const std::vector<float>& out, const std::vector<float>& lse) {
  double worst = 0.0, worst_lse = 0.0;
  for (size_t i = 0; i < c.out.size(); ++i) worst = std::max(worst, std::fabs(out[i] - c.out[i]) / (1.0 + std::fabs(c.out[i])));
  for (size_t i = 0; i < c.lse.size(); ++i) {
    worst_lse = std::max(worst_lse, std::fabs(lse[i] - c.lse[i]) / (1.0 + std::fabs(c.lse[i])));
  }
  return {worst, worst_lse};
}

// Every other case lists its rows with filler rows after them and a device-side count of the
// real ones (rows_valid: quest's partial last page); the reference sees only the real rows.
struct ListedRows {
  std::vector<int> rows;  // what the kernel is given
  std::vector<int> valid; // [1] the real rows' count, or empty: no rows_valid
};
ListedRows listed_rows(const ChunkCase& c, bool padded, std::mt19937_64& rng) {
  ListedRows l{c.rows, {}};
  if (!padded || c.rows.empty()) return l;
  std::uniform_int_distribution<int> pick(0, int(std::max<int64_t>(c.lb, 1)) - 1);
  const size_t pad = 7 + c.rows.size() % 50;
  for (size_t i = 0; i < pad; ++i) l.rows.push_back(pick(rng));
  l.valid = {int(c.rows.size())};
  return l;
}

// Chunk shapes: one query, causal edges at 31/32/33 and 1023/1024/1025 columns, a tile's worth
// of listed rows, rows only, the range only.
const std::vector<std::tuple<int, int, int64_t, int64_t>> kChunkShapes = {
    {1, 0, 0, 1},      {5, 7, 50, 90},       {33, 0, 0, 33},    {31, 1, 1, 33},     {64, 100, 1000, 1600},
    {200, 31, 300, 500}, {17, 64, 100, 1124}, {3, 1025, 1100, 1103}, {65, 0, 0, 1025}, {32, 33, 2000, 3023}};
const std::vector<std::tuple<int, int, int>> kChunkHeads = {{9, 3, 64}, {32, 8, 128}, {8, 1, 64}, {4, 4, 128}};

TEST_F(CudaTest, GatheredAttentionChunkMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(29));
  int case_index = 0;
  for (const auto& [hq, hkv, d] : kChunkHeads) {
    for (const auto& [T, n_rows, lb, le] : kChunkShapes) {
      const ChunkCase c = chunk_case(hq, hkv, d, T, n_rows, lb, le, false, rng);
      const ListedRows listed = listed_rows(c, ++case_index % 2 == 0, rng);
      const ops::RopeSplitTables split = ops::make_rope_split_tables(c.table, le);
      const DeviceArray<float> d_q_long(c.q_long), d_q_local(c.q_local), d_freq(split.inv_freq), d_low(split.low),
          d_high(split.high);
      const DeviceArray<uint16_t> d_k(c.k_bits), d_v(c.v_bits);
      const DeviceArray<int> d_rows(listed.rows.empty() ? std::vector<int>{0} : listed.rows);
      const DeviceArray<int> d_valid(listed.valid.empty() ? std::vector<int>{0} : listed.valid);
      const int64_t total = int64_t(listed.rows.size()) + (le - lb);
      DeviceArray<float> d_partial(cuda::gathered_attention_partial_floats(total, hq, hkv, d, T));
      DeviceArray<float> d_out(c.out.size()), d_lse(c.lse.size());
      cuda::GatheredAttentionParams p;
      p.q_long = d_q_long.ptr;
      p.q_local = d_q_local.ptr;
      p.k = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
      p.v = reinterpret_cast<const __nv_bfloat16*>(d_v.ptr);
      p.rows = d_rows.ptr;
      p.n_rows = int(listed.rows.size());
      p.rows_valid = listed.valid.empty() ? nullptr : d_valid.ptr;
      p.range_begin = lb;
      p.range_end = le;
      p.queries = T;
      p.causal = true;
      p.rope = {d_freq.ptr, reinterpret_cast<const float2*>(d_low.ptr), reinterpret_cast<const float2*>(d_high.ptr),
                int(split.half), split.adjacent_pairs};
      // Every third case reads the range from keys rotated beforehand, rounded to bf16 after the
      // rotation (the flash kernel's bound): a window of rows [first, le) that starts at or before
      // the range, as the forward keeps it (k_rotated_first_row).
      const bool prerotated = case_index % 3 == 0;
      const int64_t first = lb / 2;
      DeviceArray<uint16_t> d_k_rotated(prerotated ? size_t((le - first) * c.width) : size_t(1));
      if (prerotated) {
        ASSERT_EQ(cuda::launch_rope_rows(reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), first, le, hkv, d, p.rope,
                                         reinterpret_cast<__nv_bfloat16*>(d_k_rotated.ptr), nullptr), cudaSuccess);
        p.k_rotated = reinterpret_cast<const __nv_bfloat16*>(d_k_rotated.ptr);
        p.k_rotated_first_row = first;
      }
      p.hq = hq;
      p.hkv = hkv;
      p.d = d;
      p.scale = 1.0f / std::sqrt(float(d));
      p.partial = d_partial.ptr;
      p.out = d_out.ptr;
      p.lse = d_lse.ptr;
      ASSERT_EQ(cuda::launch_gathered_attention(p, nullptr), cudaSuccess);
      const auto [worst, worst_lse] = chunk_errors(c, d_out.download(), d_lse.download());
      const std::string how = std::string(listed.valid.empty() ? "" : " (with filler rows)") +
                              (prerotated ? " (keys rotated beforehand)" : "");
      EXPECT_LT(worst, prerotated ? 1e-2 : 2e-4) << c.what << how;
      EXPECT_LT(worst_lse, prerotated ? 2e-3 : 1e-5) << c.what << how;
    }
  }
}

// The flash kernel as the forward uses it: listed rows gathered and the range's keys rotated on
// the device (launch_gather_rows, launch_rope_rows), queries in bf16. Its probabilities are bf16
// before the PV product (as flash attention's), hence a looser output bound than the split-K
// kernel's; a wrong mask or a lost tile moves outputs by O(1).
TEST_F(CudaTest, FlashChunkAttentionMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(31));
  double worst_seen = 0.0;
  std::set<int> splits_seen;
  int case_index = 0;
  for (const auto& [hq, hkv, d] : kChunkHeads) {
    for (const auto& [T, n_rows, lb, le] : kChunkShapes) {
      const ChunkCase c = chunk_case(hq, hkv, d, T, n_rows, lb, le, true, rng);
      const ListedRows listed = listed_rows(c, ++case_index % 2 == 1, rng);
      const int n_listed = int(listed.rows.size());
      const ops::RopeSplitTables split = ops::make_rope_split_tables(c.table, le);
      std::vector<uint16_t> q_long(c.q_long.size()), q_local(c.q_local.size());
      for (size_t i = 0; i < q_long.size(); ++i) q_long[i] = to_bf16(c.q_long[i]), q_local[i] = to_bf16(c.q_local[i]);
      const DeviceArray<uint16_t> d_q_long(q_long), d_q_local(q_local), d_k(c.k_bits), d_v(c.v_bits);
      const DeviceArray<float> d_freq(split.inv_freq), d_low(split.low), d_high(split.high);
      const DeviceArray<int> d_rows(listed.rows.empty() ? std::vector<int>{0} : listed.rows);
      const DeviceArray<int> d_valid(listed.valid.empty() ? std::vector<int>{0} : listed.valid);
      DeviceArray<uint16_t> d_k_rows(std::max<size_t>(listed.rows.size() * c.width, 1)), d_v_rows(d_k_rows.n),
          d_k_range(size_t((le - lb) * c.width));
      DeviceArray<float> d_out(c.out.size()), d_lse(c.lse.size());
      auto bf = [](const DeviceArray<uint16_t>& a) { return reinterpret_cast<__nv_bfloat16*>(a.ptr); };
      const cuda::RopeTables rope{d_freq.ptr, reinterpret_cast<const float2*>(d_low.ptr),
                                  reinterpret_cast<const float2*>(d_high.ptr), int(split.half), split.adjacent_pairs};
      ASSERT_EQ(cuda::launch_gather_rows(bf(d_k), bf(d_v), d_rows.ptr, n_listed, int(c.width), bf(d_k_rows),
                                         bf(d_v_rows), nullptr), cudaSuccess);
      ASSERT_EQ(cuda::launch_rope_rows(bf(d_k), lb, le, hkv, d, rope, bf(d_k_range), nullptr), cudaSuccess);
      cuda::FlashChunkParams p;
      p.q_long = bf(d_q_long);
      p.q_local = bf(d_q_local);
      p.k_rows = bf(d_k_rows);
      p.v_rows = bf(d_v_rows);
      p.n_rows = n_listed;
      p.rows_valid = listed.valid.empty() ? nullptr : d_valid.ptr;
      p.k_range = bf(d_k_range);
      p.v_range = bf(d_v) + lb * c.width;
      p.range_begin = lb;
      p.range_len = le - lb;
      p.first_query = le - T;
      p.T = T;
      p.hq = hq;
      p.hkv = hkv;
      p.d = d;
      p.scale = 1.0f / std::sqrt(float(d));
      p.out = d_out.ptr;
      p.lse = d_lse.ptr;
      DeviceArray<float> d_partial(cuda::flash_chunk_partial_floats(p));
      p.partial = d_partial.ptr;
      splits_seen.insert(cuda::flash_chunk_splits(p));
      ASSERT_EQ(cuda::launch_flash_chunk_attention(p, nullptr), cudaSuccess);
      const auto [worst, worst_lse] = chunk_errors(c, d_out.download(), d_lse.download());
      worst_seen = std::max(worst_seen, worst);
      const char* filler = listed.valid.empty() ? "" : " (with filler rows)";
      EXPECT_LT(worst, 1e-2) << c.what << filler;  // keys rotated in bf16 and P in bf16: ~2^-8 of a row's scale
      EXPECT_LT(worst_lse, 2e-3) << c.what << filler;
    }
  }
  std::printf("flash chunk attention: worst relative error %.3g\n", worst_seen);
  // Both ways out: one split writing the output, and several merged.
  EXPECT_TRUE(splits_seen.count(1) == 1 && *splits_seen.rbegin() > 1) << "splits " << *splits_seen.rbegin();
}


}  // namespace
}  // namespace esa
