// The selection primitives (lib/attention/selection.h) against float64 brute forces written
// here, and the contract of every scoring policy on both devices (budget, sorted unique lists,
// nothing from the local window or the future, one list per KV head with individual heads).
// Each policy's choice against its definition is tests/unit/test_<p>.cc.
//
// Top-k results are compared as sets; a token may differ from the float64 reference only when
// its reference score ties the k-th score within a float32 tolerance (reported). Seeds print;
// ESA_TEST_SEED overrides them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "attention/policy.h"
#include "attention/projection.h"
#include "attention/policies.h"
#include "attention/selection.h"
#include "core/error.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "ops/rope.h"
#include "support/device_selection.h"
#include "support/policy_scene.h"
#include "support/selection_reference.h"
#include "support/test_support.h"

namespace esa::attention {
namespace {

using test::gaussian;
using test::ref_rotate;
using test::small_options;

using test::expect_same_top_k;
using test::kNegInf;
using test::middle_of;
using test::ref_max_pool;
using test::ref_top_k;


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

// ---- the contract of every scoring policy ---------------------------------------------------

using Scene = test::PolicyScene;

// Every policy and head mode over a growing sequence (prefill chunks then decode steps): the
// contract of Selection, on the CPU and (one list for all heads) from the device halves.
class ScoringPolicies : public test::OnDevice {};

TEST_P(ScoringPolicies, RespectTheBudgetAndTheWindow) {
  struct Case {
    PolicyKind kind;
    HeadMode heads;
  };
  const Case cases[] = {{PolicyKind::oracle, HeadMode::uniform}, {PolicyKind::oracle, HeadMode::individual},
                        {PolicyKind::esa, HeadMode::uniform},    {PolicyKind::infllm, HeadMode::uniform},
                        {PolicyKind::infllm, HeadMode::individual}, {PolicyKind::quest, HeadMode::uniform},
                        {PolicyKind::quest, HeadMode::individual}};
  for (const Case& cs : cases) {
    if (GetParam() == Device::cuda && cs.heads == HeadMode::individual) continue;  // not on the GPU
    Scene sc(test::test_seed(16));
    PolicyOptions o = small_options(cs.kind, cs.heads);
    o.budget.init = 5;
    o.budget.local = 40;
    o.budget.select = 150;  // > one InfLLM block
    o.budget.chunk = 16;
    auto policy = make_policy(o, sc.config());
    std::unique_ptr<test::SelectionRunner> device;
    if (GetParam() == Device::cuda) device = std::make_unique<test::SelectionRunner>(Device::cuda, *policy, sc.layers, sc.hq, sc.hkv, sc.d);
    bool saw_all = false, saw_some = false;
    for (int64_t step = 0; step < 50; ++step) {
      const int64_t T = step < 30 ? 16 : 1;
      sc.append(T, GetParam() == Device::cuda);
      const Tensor q = sc.queries(T);
      for (int64_t l = 0; l < sc.layers; ++l) {
        const LayerInputs in = sc.inputs(l, q);
        Selection sel;
        if (device) {
          const test::ChosenRows rows = device->select(in);
          sel = Selection{rows.local_begin, {rows.rows}};
        } else {
          sel = policy->select(in);
        }
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
ESA_ON_DEVICES(ScoringPolicies);

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
  EXPECT_THROW(make_policy(o, sc.config()), Error);
  o.projection.clear();
  o.budget.select = -1;  // options are validated by every factory
  for (PolicyKind kind : {PolicyKind::full, PolicyKind::streaming, PolicyKind::oracle, PolicyKind::esa,
                          PolicyKind::infllm, PolicyKind::quest}) {
    o.kind = kind;
    EXPECT_THROW(make_policy(o, sc.config()), Error) << policy_name(kind);
  }
  o.budget.select = small_options(PolicyKind::esa).budget.select;
  o.kind = PolicyKind::full;
  EXPECT_NO_THROW(make_policy(o, sc.config()));  // the registry knows every kind
  o.kind = PolicyKind::esa;
  EXPECT_NO_THROW(make_policy(o, sc.config()));
  // A projection of the wrong width fails at the first select, naming esa.
  auto esa = make_esa_policy(o, Projection::random(2, 7, 3, 1));
  sc.append(100);
  const Tensor q = sc.queries(2);
  EXPECT_THROW(esa->select(sc.inputs(0, q)), Error);
}

}  // namespace
}  // namespace esa::attention
