// The selection primitives (lib/attention/selection.h) against float64 brute forces written
// here, and the scoring policies (lib/attention/scoring_policies.h): oracle and quest against a
// brute force of their definitions (PAPER.md sections 2 and 5), esa with the identity
// projection against oracle, and the contract of every policy (budget, sorted unique lists,
// nothing from the local window or the future, one list per KV head with individual heads).
//
// Top-k results are compared as sets; a token may differ from the float64 reference only when
// its reference score ties the k-th score within a float32 tolerance (reported). Seeds print;
// ESA_TEST_SEED overrides them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "attention/policy.h"
#include "attention/projection.h"
#include "attention/scoring_policies.h"
#include "attention/selection.h"
#include "core/error.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "ops/rope.h"
#include "support/policy_scene.h"
#include "support/test_support.h"

namespace esa::attention {
namespace {

using test::gaussian;
using test::ref_rotate;
using test::small_options;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();


// ---- brute-force references ------------------------------------------------------------------

std::vector<double> ref_max_pool(const std::vector<double>& s, int64_t eps) {
  const int64_t n = int64_t(s.size());
  std::vector<double> out(s.size());
  for (int64_t j = 0; j < n; ++j) {
    double m = kNegInf;
    for (int64_t i = std::max<int64_t>(0, j - eps); i <= std::min(n - 1, j + eps); ++i) m = std::max(m, s[size_t(i)]);
    out[size_t(j)] = m;
  }
  return out;
}

// Full sort by (score desc, index asc), first k, sorted by index.
std::vector<int64_t> ref_top_k(const std::vector<double>& s, int64_t k) {
  std::vector<int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), int64_t(0));
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return s[size_t(a)] > s[size_t(b)]; });
  idx.resize(size_t(std::min<int64_t>(k, int64_t(s.size()))));
  std::sort(idx.begin(), idx.end());
  return idx;
}


// The chosen middle tokens of a list: checks the initial tokens lead it and strips them.
std::vector<int64_t> middle_of(const std::vector<int64_t>& list, int64_t init_end) {
  EXPECT_GE(int64_t(list.size()), init_end);
  for (int64_t i = 0; i < init_end && i < int64_t(list.size()); ++i) EXPECT_EQ(list[size_t(i)], i);
  return std::vector<int64_t>(list.begin() + std::min<int64_t>(init_end, int64_t(list.size())), list.end());
}

// Same set as the reference, except where the reference scores tie the boundary within `tol`.
void expect_same_top_k(const std::vector<int64_t>& got, const std::vector<int64_t>& ref,
                       const std::vector<double>& ref_scores, int64_t offset, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  std::vector<double> sorted;
  for (int64_t r : ref) sorted.push_back(ref_scores[size_t(r - offset)]);
  const double kth = sorted.empty() ? 0.0 : *std::min_element(sorted.begin(), sorted.end());
  std::set<int64_t> g(got.begin(), got.end()), r(ref.begin(), ref.end());
  int64_t differ = 0;
  for (int64_t x : g) {
    if (r.count(x) != 0) continue;
    ++differ;
    EXPECT_LE(std::abs(ref_scores[size_t(x - offset)] - kth), tol)
        << what << ": token " << x << " chosen, not in the float64 top-k (score " << ref_scores[size_t(x - offset)]
        << ", k-th " << kth << ")";
  }
  if (differ > 0) std::printf("[ info     ] %s: %lld boundary ties resolved differently\n", what.c_str(), (long long)differ);
}

// ---- primitives -------------------------------------------------------------------------------

TEST(ProximityMaxPool, ClipsAtTheEnds) {
  const std::vector<float> s = {5, 1, 2, 0, 9, 3, 4};
  EXPECT_EQ(proximity_max_pool(s, 1), (std::vector<float>{5, 5, 2, 9, 9, 9, 4}));
  EXPECT_EQ(proximity_max_pool(s, 2), (std::vector<float>{5, 5, 9, 9, 9, 9, 9}));
  EXPECT_EQ(proximity_max_pool(s, 100), std::vector<float>(7, 9.0f));
  EXPECT_TRUE(proximity_max_pool(std::vector<float>{}, 3).empty());
  EXPECT_EQ(proximity_max_pool(std::vector<float>{-2}, 3), std::vector<float>{-2});
  EXPECT_THROW(proximity_max_pool(s, -1), Error);
}

TEST(ProximityMaxPool, EpsZeroIsIdentity) {
  std::mt19937_64 gen(test::test_seed(1));
  const std::vector<float> s = gaussian(gen, 257);
  EXPECT_EQ(proximity_max_pool(s, 0), s);
}

TEST(ProximityMaxPool, MatchesBruteForce) {
  std::mt19937_64 gen(test::test_seed(2));
  for (int64_t n : {1, 2, 3, 17, 1000}) {
    for (int64_t eps : {0, 1, 3, 5, 40}) {
      std::vector<float> s = gaussian(gen, n);
      for (auto& x : s) x = std::round(x * 2.0f);  // many ties
      const std::vector<double> sd(s.begin(), s.end());
      const std::vector<float> got = proximity_max_pool(s, eps);
      const std::vector<double> ref = ref_max_pool(sd, eps);
      for (int64_t j = 0; j < n; ++j) ASSERT_EQ(double(got[size_t(j)]), ref[size_t(j)]) << "n " << n << " eps " << eps << " j " << j;
    }
  }
}

TEST(TopK, MatchesBruteForceWithTies) {
  std::mt19937_64 gen(test::test_seed(3));
  std::uniform_int_distribution<int> small(0, 4);
  for (int64_t n : {0, 1, 5, 64, 1023, 1025}) {
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& x : s) x = float(small(gen));  // heavy ties: the lower index must win
    const std::vector<double> sd(s.begin(), s.end());
    for (int64_t k : {int64_t(0), int64_t(1), n / 3, n / 2, n, n + 3}) {
      const std::vector<int64_t> got = top_k_indices(s, k);
      EXPECT_EQ(got, ref_top_k(sd, k)) << "n " << n << " k " << k;
      EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
    }
  }
  EXPECT_EQ(top_k_indices(std::vector<float>{1, 3, 3, 2, 3}, 2), (std::vector<int64_t>{1, 2}));
  EXPECT_THROW(top_k_indices(std::vector<float>{1}, -1), Error);
}

TEST(TopK, NaNRanksLast) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(top_k_indices(std::vector<float>{nan, 1, nan, -5}, 2), (std::vector<int64_t>{1, 3}));
}

TEST(GqaFold, SumsTheHeadsOfEachGroup) {
  std::mt19937_64 gen(test::test_seed(4));
  const int64_t T = 3, hq = 6, hkv = 2, d = 5, group = hq / hkv;
  Tensor q({T, hq, d}, gaussian(gen, T * hq * d));
  const Tensor f = gqa_fold(q.view(), hkv);
  Tensor pos, neg;
  gqa_fold_signed(q.view(), hkv, pos, neg);
  ASSERT_EQ(f.shape(), (std::vector<int64_t>{T, hkv, d}));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g = 0; g < hkv; ++g) {
      for (int64_t i = 0; i < d; ++i) {
        double sum = 0, sp = 0, sn = 0;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const double x = q.data()[(t * hq + h) * d + i];
          sum += x;
          sp += std::max(x, 0.0);
          sn += std::min(x, 0.0);
        }
        const int64_t at = (t * hkv + g) * d + i;
        EXPECT_NEAR(f.data()[at], sum, 1e-5);
        EXPECT_NEAR(pos.data()[at], sp, 1e-5);
        EXPECT_NEAR(neg.data()[at], sn, 1e-5);
      }
    }
  }
  EXPECT_THROW(gqa_fold(q.view(), 4), Error);
}

TEST(ExactScores, MatchesFloat64PerGroupAndSummed) {
  std::mt19937_64 gen(test::test_seed(5));
  const int64_t T = 7, hkv = 3, d = 8, S = 300, b = 17, e = 290;
  Tensor q({T, hkv, d}, gaussian(gen, T * hkv * d));
  Tensor k({S, hkv, d}, gaussian(gen, S * hkv * d));
  for (int64_t head = -1; head < hkv; ++head) {
    const Tensor got = exact_scores(q.view(), k.view(), b, e, head);
    ASSERT_EQ(got.shape(), (std::vector<int64_t>{T, e - b}));
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t m = b; m < e; ++m) {
        double ref = 0;
        for (int64_t g = 0; g < hkv; ++g) {
          if (head >= 0 && g != head) continue;
          for (int64_t i = 0; i < d; ++i) ref += double(q.data()[(t * hkv + g) * d + i]) * k.data()[(m * hkv + g) * d + i];
        }
        worst = std::max(worst, std::abs(got.data()[t * (e - b) + m - b] - ref));
      }
    }
    EXPECT_LT(worst, 1e-4) << "head " << head;
  }
  EXPECT_THROW(exact_scores(q.view(), k.view(), 10, S + 1), Error);
}

TEST(ChunkImportance, SubtractsRowMaxTakesColumnMaxAndStreams) {
  std::mt19937_64 gen(test::test_seed(6));
  const int64_t T = 9, n = 1001;
  const std::vector<float> s = gaussian(gen, T * n, 3.0f);
  const ScoreBlockFn fn = [&](int64_t m0, int64_t count, float* out) {
    for (int64_t c = 0; c < T; ++c) std::copy_n(s.data() + c * n + m0, count, out + c * count);
  };
  for (bool subtract : {true, false}) {
    std::vector<double> ref(size_t(n), kNegInf);
    for (int64_t c = 0; c < T; ++c) {
      double row_max = subtract ? kNegInf : 0.0;
      if (subtract) {
        for (int64_t m = 0; m < n; ++m) row_max = std::max(row_max, double(s[size_t(c * n + m)]));
      }
      for (int64_t m = 0; m < n; ++m) ref[size_t(m)] = std::max(ref[size_t(m)], double(s[size_t(c * n + m)]) - row_max);
    }
    const std::vector<float> whole = chunk_importance(T, n, fn, subtract);
    // A buffer smaller than T * n: two passes over column blocks of 11, and of 1 (the last block partial).
    const std::vector<float> streamed = chunk_importance(T, n, fn, subtract, 11 * T);
    const std::vector<float> narrow = chunk_importance(T, n, fn, subtract, 1);
    for (int64_t m = 0; m < n; ++m) {
      ASSERT_NEAR(whole[size_t(m)], ref[size_t(m)], 1e-5) << m;
      ASSERT_EQ(streamed[size_t(m)], whole[size_t(m)]) << m;
      ASSERT_EQ(narrow[size_t(m)], whole[size_t(m)]) << m;
    }
  }
}

TEST(Projection, IdentityAndRandomMatchFloat64) {
  std::mt19937_64 gen(test::test_seed(7));
  const int64_t in = 12, dim = 5, rows = 4;
  const std::vector<float> x = gaussian(gen, rows * in);
  const Projection id = Projection::identity(2, in);
  std::vector<float> y;
  id.project_queries(1, x.data(), rows, y);
  EXPECT_EQ(y, x);
  const Projection p = Projection::random(2, in, dim, 42);
  p.validate();
  std::vector<float> yk = {7.0f};  // append_keys appends
  p.append_keys(1, x.data(), rows, yk);
  p.project_queries(1, x.data(), rows, y);
  ASSERT_EQ(yk.size(), size_t(1 + rows * dim));
  const auto& l = p.layers[1];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < dim; ++o) {
      double rq = l.bq[size_t(o)], rk = l.bk[size_t(o)];
      for (int64_t i = 0; i < in; ++i) {
        rq += double(l.wq[size_t(o * in + i)]) * x[size_t(r * in + i)];
        rk += double(l.wk[size_t(o * in + i)]) * x[size_t(r * in + i)];
      }
      EXPECT_NEAR(y[size_t(r * dim + o)], rq, 1e-5);
      EXPECT_NEAR(yk[size_t(1 + r * dim + o)], rk, 1e-5);
    }
  }
  Projection bad = p;
  bad.layers[0].bk.pop_back();
  EXPECT_THROW(bad.validate(), Error);
}

// ---- policies -----------------------------------------------------------------------------------

// A KV cache filled with random keys, queries for a chunk, and the RoPE tables
// (support/policy_scene.h).
using Scene = test::PolicyScene;


// Oracle's definition in float64: per query c, f(m; c) = sum_h q_{h,c} . k_{g(h),m} (only group
// `head` when >= 0), minus its max over M; max over c; pooled. Returns the pooled scores over M.
std::vector<double> ref_oracle_scores(const Scene& sc, const LayerInputs& in, const PolicyOptions& o, int64_t head) {
  const ContextSplit split = split_context(o.budget, in.chunk_begin());
  const int64_t T = in.q.shape[0], n = split.local_begin - split.init_end, group = sc.hq / sc.hkv;
  const TensorView keys = sc.cache.keys(in.layer);
  std::vector<double> F(size_t(n), kNegInf);
  for (int64_t c = 0; c < T; ++c) {
    const float* qc = in.q.data + c * sc.hq * sc.d;
    const std::vector<double> q = o.score_space == ScoreSpace::rotated
                                      ? ref_rotate(qc, sc.hq, sc.d, o.query_position(), sc.rope)
                                      : std::vector<double>(qc, qc + sc.hq * sc.d);
    std::vector<double> f(size_t(n), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      const float* k = keys.data + (split.init_end + j) * sc.hkv * sc.d;
      for (int64_t h = 0; h < sc.hq; ++h) {
        const int64_t g = h / group;
        if (head >= 0 && g != head) continue;
        for (int64_t i = 0; i < sc.d; ++i) f[size_t(j)] += q[size_t(h * sc.d + i)] * k[g * sc.d + i];
      }
    }
    const double mx = *std::max_element(f.begin(), f.end());
    for (int64_t j = 0; j < n; ++j) F[size_t(j)] = std::max(F[size_t(j)], f[size_t(j)] - mx);
  }
  return ref_max_pool(F, o.eps);
}

TEST(OraclePolicy, PicksTheFloat64TopKOfItsDefinition) {
  Scene sc(test::test_seed(11));
  sc.append(200);
  for (auto space : {ScoreSpace::rotated, ScoreSpace::plain}) {
    for (auto heads : {HeadMode::uniform, HeadMode::individual}) {
      for (int64_t eps : {0, 1, 3}) {
        for (int64_t T : {1, 8}) {
          PolicyOptions o = small_options(PolicyKind::oracle, heads);
          o.eps = eps;
          o.score_space = space;
          auto policy = make_scoring_policy(o, sc.config());
          const Tensor q = sc.queries(T);
          const LayerInputs in = sc.inputs(1, q);
          const Selection sel = policy->select(in);
          const ContextSplit split = split_context(o.budget, in.chunk_begin());
          EXPECT_EQ(sel.local_begin, split.local_begin);
          ASSERT_EQ(int64_t(sel.long_tokens.size()), heads == HeadMode::uniform ? 1 : sc.hkv);
          for (int64_t g = 0; g < int64_t(sel.long_tokens.size()); ++g) {
            const std::vector<double> pooled = ref_oracle_scores(sc, in, o, heads == HeadMode::uniform ? -1 : g);
            std::vector<int64_t> ref = ref_top_k(pooled, o.budget.select);
            for (auto& r : ref) r += split.init_end;
            const std::string what = std::string("oracle ") + score_space_name(space) + " " + head_mode_name(heads) +
                                     " eps " + std::to_string(eps) + " T " + std::to_string(T) + " list " +
                                     std::to_string(g);
            expect_same_top_k(middle_of(sel.long_tokens[size_t(g)], split.init_end), ref, pooled, split.init_end, 1e-4,
                              what);
          }
        }
      }
    }
  }
}

TEST(EsaPolicy, IdentityProjectionSelectsExactlyOraclesTokens) {
  for (auto heads : {HeadMode::uniform, HeadMode::individual}) {
  SCOPED_TRACE(head_mode_name(heads));
  Scene sc(test::test_seed(12));
  PolicyOptions o = small_options(PolicyKind::oracle, heads);
  PolicyOptions e = o;
  e.kind = PolicyKind::esa;
  auto oracle = make_scoring_policy(o, sc.config());
  auto esa = make_scoring_policy(e, sc.config());
  // A sequence: prefill chunks, then decode steps, every layer each step (the compressed-key
  // cache grows with the KV cache).
  int64_t compared = 0;
  for (int64_t step = 0; step < 40; ++step) {
    const int64_t T = step < 20 ? 8 : 1;
    sc.append(T);
    const Tensor q = sc.queries(T);
    for (int64_t l = 0; l < sc.layers; ++l) {
      const LayerInputs in = sc.inputs(l, q);
      const Selection a = oracle->select(in), b = esa->select(in);
      EXPECT_EQ(a.local_begin, b.local_begin);
      EXPECT_EQ(a.long_tokens, b.long_tokens) << "step " << step << " layer " << l;
      compared += int64_t(a.long_tokens[0].size()) > o.budget.init + o.budget.select - 1;
    }
  }
  EXPECT_GT(compared, 0) << "the scene never had more middle tokens than the budget";
  }
}

TEST(EsaPolicy, RandomProjectionRanksByCompressedScores) {
  Scene sc(test::test_seed(13));
  sc.append(150);
  PolicyOptions o = small_options(PolicyKind::esa);
  o.eps = 0;
  o.score_space = ScoreSpace::plain;
  const int64_t width = sc.hkv * sc.d, dim = 7;
  const Projection p = Projection::random(sc.layers, width, dim, 5);
  auto esa = make_esa_policy(o, p);
  const Tensor q = sc.queries(4);
  const LayerInputs in = sc.inputs(0, q);
  const Selection sel = esa->select(in);
  const ContextSplit split = split_context(o.budget, in.chunk_begin());
  const int64_t n = split.local_begin - split.init_end;
  // Reference: q' = Wq q~ + bq, k' = Wk k + bk in float64, F = max_c [q'.k' - max].
  const Tensor qf = gqa_fold(q.view(), sc.hkv);
  const auto& L = p.layers[0];
  auto project = [&](const float* x, const std::vector<float>& w, const std::vector<float>& b) {
    std::vector<double> y(static_cast<size_t>(dim));
    for (int64_t o2 = 0; o2 < dim; ++o2) {
      y[size_t(o2)] = b[size_t(o2)];
      for (int64_t i = 0; i < width; ++i) y[size_t(o2)] += double(w[size_t(o2 * width + i)]) * x[i];
    }
    return y;
  };
  std::vector<double> F(size_t(n), kNegInf);
  for (int64_t c = 0; c < 4; ++c) {
    const std::vector<double> qc = project(qf.data() + c * width, L.wq, L.bq);
    std::vector<double> f(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      const std::vector<double> kc = project(sc.cache.keys(0).data + (split.init_end + j) * width, L.wk, L.bk);
      for (int64_t i = 0; i < dim; ++i) f[size_t(j)] += qc[size_t(i)] * kc[size_t(i)];
    }
    const double mx = *std::max_element(f.begin(), f.end());
    for (int64_t j = 0; j < n; ++j) F[size_t(j)] = std::max(F[size_t(j)], f[size_t(j)] - mx);
  }
  std::vector<int64_t> ref = ref_top_k(F, o.budget.select);
  for (auto& r : ref) r += split.init_end;
  expect_same_top_k(middle_of(sel.long_tokens[0], split.init_end), ref, F, split.init_end, 1e-4, "esa random");
}

TEST(QuestPolicy, PicksTheFloat64TopPagesOfItsBound) {
  Scene sc(test::test_seed(14));
  sc.append(203);  // |M| = 203 - 8 - 32 - 4 = 159: the last page is partial
  for (auto heads : {HeadMode::uniform, HeadMode::individual}) {
    PolicyOptions o = small_options(PolicyKind::quest, heads);
    o.budget.chunk = 8;
    auto quest = make_scoring_policy(o, sc.config());
    const Tensor q = sc.queries(8);
    const LayerInputs in = sc.inputs(0, q);
    const Selection sel = quest->select(in);
    const ContextSplit split = split_context(o.budget, in.chunk_begin());
    const int64_t m0 = split.init_end, m1 = split.local_begin, pages = (m1 - m0 + 15) / 16, group = sc.hq / sc.hkv;
    ASSERT_EQ(int64_t(sel.long_tokens.size()), heads == HeadMode::uniform ? 1 : sc.hkv);
    const TensorView keys = sc.cache.keys(0);
    for (int64_t g0 = 0; g0 < int64_t(sel.long_tokens.size()); ++g0) {
      std::vector<double> score(size_t(pages), kNegInf);
      for (int64_t c = 0; c < 8; ++c) {
        const std::vector<double> qc = ref_rotate(q.data() + c * sc.hq * sc.d, sc.hq, sc.d, o.query_position(), sc.rope);
        for (int64_t p = 0; p < pages; ++p) {
          double s = 0;
          for (int64_t h = 0; h < sc.hq; ++h) {
            const int64_t g = h / group;
            if (heads == HeadMode::individual && g != g0) continue;
            for (int64_t i = 0; i < sc.d; ++i) {
              double lo = std::numeric_limits<double>::infinity(), hi = -lo;
              for (int64_t m = m0 + 16 * p; m < std::min(m1, m0 + 16 * (p + 1)); ++m) {
                lo = std::min(lo, double(keys.data[(m * sc.hkv + g) * sc.d + i]));
                hi = std::max(hi, double(keys.data[(m * sc.hkv + g) * sc.d + i]));
              }
              const double x = qc[size_t(h * sc.d + i)];
              s += std::max(x * lo, x * hi);
            }
          }
          score[size_t(p)] = std::max(score[size_t(p)], s);
        }
      }
      const std::vector<int64_t> ref_pages = ref_top_k(score, o.budget.select / 16);
      std::vector<int64_t> got = middle_of(sel.long_tokens[size_t(g0)], split.init_end);
      std::set<int64_t> got_pages;
      for (int64_t t : got) got_pages.insert((t - m0) / 16);
      std::vector<int64_t> expect_tokens;
      for (int64_t p : ref_pages) {
        for (int64_t m = m0 + 16 * p; m < std::min(m1, m0 + 16 * (p + 1)); ++m) expect_tokens.push_back(m);
      }
      // Whole pages only; compared as page sets with the boundary tolerance.
      std::vector<int64_t> got_page_list(got_pages.begin(), got_pages.end());
      expect_same_top_k(got_page_list, ref_pages, score, 0, 1e-3, std::string("quest ") + head_mode_name(heads));
      if (got_page_list == ref_pages) {
        EXPECT_EQ(got, expect_tokens);
      }
    }
  }
}

TEST(InfllmPolicy, WholeBlocksPlusTheRemainderAndAPlantedBlockWins) {
  Scene sc(test::test_seed(15), 4, 2, 16);
  PolicyOptions o;
  o.kind = PolicyKind::infllm;
  o.budget.init = 8;
  o.budget.local = 64;
  o.budget.select = 300;  // 2 blocks + a remainder of at most 44
  o.budget.chunk = 32;
  auto infllm = make_scoring_policy(o, sc.config());
  // Plant a direction: block 3's keys (tokens [8 + 384, 8 + 512)) align with a query direction u.
  const std::vector<float> u = gaussian(sc.gen, sc.d);
  int64_t checked = 0;
  for (int64_t step = 0; step < 40; ++step) {
    const int64_t T = 32, first = sc.cache.size();
    for (int64_t l = 0; l < sc.layers; ++l) {
      std::vector<float> k = gaussian(sc.gen, T * sc.hkv * sc.d, 0.3f), v = gaussian(sc.gen, T * sc.hkv * sc.d);
      for (int64_t t = 0; t < T; ++t) {
        if (first + t >= 8 + 384 && first + t < 8 + 512) {
          for (int64_t i = 0; i < sc.hkv * sc.d; ++i) k[size_t(t * sc.hkv * sc.d + i)] += 2.0f * u[size_t(i % sc.d)];
        }
      }
      sc.cache.append(l, k.data(), k.data(), v.data(), T);
    }
    Tensor q({T, sc.hq, sc.d});
    for (int64_t i = 0; i < q.numel(); ++i) q.data()[i] = u[size_t(i % sc.d)] + 0.1f * gaussian(sc.gen, 1)[0];
    for (int64_t l = 0; l < sc.layers; ++l) {
      const LayerInputs in = sc.inputs(l, q);
      const Selection sel = infllm->select(in);
      const ContextSplit split = split_context(o.budget, in.chunk_begin());
      ASSERT_EQ(sel.long_tokens.size(), 1u);
      const std::vector<int64_t> mid = middle_of(sel.long_tokens[0], split.init_end);
      const int64_t n = split.local_begin - split.init_end;
      if (n <= o.budget.select) continue;
      const int64_t rem_begin = split.init_end + (n / 128) * 128;
      // Whole blocks, then every token of the remainder.
      int64_t i = 0;
      std::vector<int64_t> blocks;
      for (; i < int64_t(mid.size()) && mid[size_t(i)] < rem_begin; i += 128) {
        ASSERT_EQ((mid[size_t(i)] - split.init_end) % 128, 0);
        blocks.push_back((mid[size_t(i)] - split.init_end) / 128);
        for (int64_t j = 0; j < 128; ++j) ASSERT_EQ(mid[size_t(i + j)], mid[size_t(i)] + j);
      }
      ASSERT_EQ(int64_t(mid.size()) - i, split.local_begin - rem_begin);
      EXPECT_EQ(int64_t(blocks.size()), (o.budget.select - (split.local_begin - rem_begin)) / 128);
      if (n / 128 > 3 && !blocks.empty()) {
        EXPECT_NE(std::find(blocks.begin(), blocks.end(), 3), blocks.end()) << "planted block 3 not chosen, step " << step;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 0);
}

// Every policy and head mode over a growing sequence (prefill chunks then decode steps): the
// contract of Selection.
TEST(ScoringPolicies, RespectTheBudgetAndTheWindow) {
  struct Case {
    PolicyKind kind;
    HeadMode heads;
  };
  const Case cases[] = {{PolicyKind::oracle, HeadMode::uniform}, {PolicyKind::oracle, HeadMode::individual},
                        {PolicyKind::esa, HeadMode::uniform},    {PolicyKind::infllm, HeadMode::uniform},
                        {PolicyKind::infllm, HeadMode::individual}, {PolicyKind::quest, HeadMode::uniform},
                        {PolicyKind::quest, HeadMode::individual}};
  for (const Case& cs : cases) {
    Scene sc(test::test_seed(16));
    PolicyOptions o = small_options(cs.kind, cs.heads);
    o.budget.init = 5;
    o.budget.local = 40;
    o.budget.select = 150;  // > one InfLLM block
    o.budget.chunk = 16;
    auto policy = make_scoring_policy(o, sc.config());
    bool saw_all = false, saw_some = false;
    for (int64_t step = 0; step < 50; ++step) {
      const int64_t T = step < 30 ? 16 : 1;
      sc.append(T);
      const Tensor q = sc.queries(T);
      for (int64_t l = 0; l < sc.layers; ++l) {
        const LayerInputs in = sc.inputs(l, q);
        const Selection sel = policy->select(in);
        const ContextSplit split = split_context(o.budget, in.chunk_begin());
        const std::string what = std::string(policy_name(cs.kind)) + " " + head_mode_name(cs.heads) + " step " +
                                 std::to_string(step) + " layer " + std::to_string(l);
        EXPECT_EQ(sel.local_begin, split.local_begin) << what;
        ASSERT_EQ(int64_t(sel.long_tokens.size()), cs.heads == HeadMode::uniform ? 1 : sc.hkv) << what;
        const int64_t n = split.local_begin - split.init_end;
        for (const auto& list : sel.long_tokens) {
          EXPECT_LE(int64_t(list.size()), split.init_end + o.budget.select) << what;
          EXPECT_TRUE(std::adjacent_find(list.begin(), list.end(), std::greater_equal<int64_t>()) == list.end())
              << what << ": not sorted and unique";
          if (!list.empty()) {
            EXPECT_LT(list.back(), split.local_begin) << what;
            EXPECT_GE(list.front(), 0) << what;
          }
          const std::vector<int64_t> mid = middle_of(list, split.init_end);
          if (n <= o.budget.select) {
            EXPECT_EQ(int64_t(mid.size()), n) << what << ": |M| <= k must select all of M";
            saw_all = saw_all || n > 0;
          } else {
            EXPECT_GT(mid.size(), 0u) << what;
            saw_some = true;
          }
        }
      }
    }
    EXPECT_TRUE(saw_all && saw_some) << policy_name(cs.kind) << ": the sequence did not cover both regimes";
  }
}

TEST(ScoringPolicies, FactoryRejectsWhatItCannotDo) {
  Scene sc(test::test_seed(17));
  PolicyOptions o = small_options(PolicyKind::esa, HeadMode::individual);
  // Individual heads need a per-KV-head projection: a random one mixes heads.
  auto mixing = make_esa_policy(o, Projection::random(sc.layers, sc.hkv * sc.d, 8, 3));
  sc.append(200);
  const Tensor q1 = sc.queries(1);
  EXPECT_THROW(mixing->select(sc.inputs(0, q1)), Error);
  o.heads = HeadMode::uniform;
  o.projection = "proj.h5";
  EXPECT_THROW(make_scoring_policy(o, sc.config()), Error);
  o.projection.clear();
  o.kind = PolicyKind::full;
  EXPECT_THROW(make_scoring_policy(o, sc.config()), Error);
  o.kind = PolicyKind::streaming;
  EXPECT_THROW(make_scoring_policy(o, sc.config()), Error);
  o.kind = PolicyKind::esa;
  EXPECT_NO_THROW(make_scoring_policy(o, sc.config()));
  // A projection of the wrong width fails at the first select, naming esa.
  auto esa = make_esa_policy(o, Projection::random(2, 7, 3, 1));
  sc.append(100);
  const Tensor q = sc.queries(2);
  EXPECT_THROW(esa->select(sc.inputs(0, q)), Error);
}

}  // namespace
}  // namespace esa::attention
