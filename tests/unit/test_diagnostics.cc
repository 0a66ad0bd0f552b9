// Selection diagnostics (lib/attention/diagnostics.h): the decorator returns the wrapped
// policy's selections unchanged; recall and mass on the cases whose answer is known (oracle,
// full, streaming, a budget that covers the middle); mass against a float64 brute force of its
// definition; needle coverage. Seeds print; ESA_TEST_SEED overrides them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention/device_selector.h"
#include "attention/diagnostics.h"
#include "attention/policy.h"
#include "attention/selection.h"
#include "core/device.h"
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

// The shared scene (support/policy_scene.h) with queries scaled by 2 so that the softmax is peaked enough for the mass to discriminate.
struct Scene : test::PolicyScene {
  explicit Scene(uint64_t seed, int64_t n_heads = 6, int64_t n_kv = 2, int64_t head_dim = 16, float query_scale = 2.0f)
      : test::PolicyScene(seed, n_heads, n_kv, head_dim, query_scale) {}
};

std::unique_ptr<DiagnosticPolicy> wrap(const PolicyOptions& o, const Scene& sc) {
  return std::make_unique<DiagnosticPolicy>(make_policy(o, sc.config()), sc.config());
}

std::string describe(const PolicyOptions& o) {
  return std::string(policy_name(o.kind)) + " " + head_mode_name(o.heads) + " " + score_space_name(o.score_space);
}


// The mass of diagnostics.h in float64, written from the definition: per query head and chunk
// query, a softmax over M of q . k / sqrt(d) in the score space, summed over the middle tokens
// the head's list (or the local branch) attends to; the mean over heads and queries.
double ref_mass(const Scene& sc, const LayerInputs& in, const Selection& sel, const PolicyOptions& o) {
  const ContextSplit split = split_context(o.budget, in.chunk_begin());
  const int64_t T = in.q.shape[0], m0 = split.init_end, m1 = split.local_begin, group = sc.hq / sc.hkv;
  if (m1 <= m0) return 1.0;
  const TensorView keys = sc.cache.keys(in.layer);
  double total = 0;
  for (int64_t c = 0; c < T; ++c) {
    const float* qc = in.q.data + c * sc.hq * sc.d;
    const std::vector<double> q = o.score_space == ScoreSpace::rotated
                                      ? ref_rotate(qc, sc.hq, sc.d, o.query_position(), sc.rope)
                                      : std::vector<double>(qc, qc + sc.hq * sc.d);
    for (int64_t h = 0; h < sc.hq; ++h) {
      const int64_t g = h / group;
      const std::vector<int64_t>& list = sel.long_tokens[sel.long_tokens.size() == 1 ? 0 : size_t(g)];
      std::vector<double> logit;
      for (int64_t m = m0; m < m1; ++m) {
        double dot = 0;
        for (int64_t i = 0; i < sc.d; ++i) dot += q[size_t(h * sc.d + i)] * keys.data[(m * sc.hkv + g) * sc.d + i];
        logit.push_back(dot / std::sqrt(double(sc.d)));
      }
      const double mx = *std::max_element(logit.begin(), logit.end());
      double sum = 0, chosen = 0;
      for (int64_t m = m0; m < m1; ++m) {
        const double e = std::exp(logit[size_t(m - m0)] - mx);
        sum += e;
        if (m >= sel.local_begin || std::find(list.begin(), list.end(), m) != list.end()) chosen += e;
      }
      total += chosen / sum;
    }
  }
  return total / double(T * sc.hq);
}

// The middle tokens of the uniform oracle's selection.
std::vector<int64_t> oracle_middle(const Scene& sc, const LayerInputs& in, PolicyOptions o) {
  o.kind = PolicyKind::oracle;
  o.heads = HeadMode::uniform;
  const Selection sel = make_policy(o, sc.config())->select(in);
  const ContextSplit split = split_context(o.budget, in.chunk_begin());
  std::vector<int64_t> out;
  for (int64_t t : sel.long_tokens[0]) {
    if (t >= split.init_end) out.push_back(t);
  }
  return out;
}

const PolicyKind kAllKinds[] = {PolicyKind::full,   PolicyKind::streaming, PolicyKind::infllm,
                                PolicyKind::quest,  PolicyKind::esa,       PolicyKind::oracle};

// ---- tests --------------------------------------------------------------------------------------

// Every policy, every head mode it supports: a sequence of prefill chunks and decode steps, over
// both layers, through a wrapped policy and an unwrapped twin fed the same inputs.
TEST(DiagnosticPolicy, ReturnsTheWrappedSelectionsUnchanged) {
  const uint64_t seed = test::test_seed(31);
  for (PolicyKind kind : kAllKinds) {
    for (HeadMode heads : {HeadMode::uniform, HeadMode::individual}) {
      Scene sc(seed);
      PolicyOptions o = small_options(kind, heads);
      auto wrapped = wrap(o, sc);
      auto twin = make_policy(o, sc.config());
      int64_t calls = 0;
      for (int64_t step = 0; step < 40; ++step) {
        const int64_t T = step < 30 ? 8 : 1;
        sc.append(T);
        const Tensor q = sc.queries(T);
        for (int64_t l = 0; l < sc.layers; ++l) {
          const LayerInputs in = sc.inputs(l, q);
          const Selection a = wrapped->select(in), b = twin->select(in);
          EXPECT_EQ(a.local_begin, b.local_begin) << describe(o) << " step " << step;
          EXPECT_EQ(a.long_tokens, b.long_tokens) << describe(o) << " step " << step << " layer " << l;
          ++calls;
        }
      }
      ASSERT_EQ(int64_t(wrapped->records().size()), calls) << describe(o);
      EXPECT_GT(wrapped->records().back().n_middle, o.budget.select) << "the scene never outgrew the budget";
      EXPECT_EQ(wrapped->options().kind, kind);
    }
  }
}

// The GPU forward calls select() whenever a policy has no device half: a wrapped one (the
// diagnostics record inside select()) must have none, whatever it wraps. Every plain policy has
// one in a CUDA build (uniform heads), none without CUDA or with individual heads.
TEST(DiagnosticPolicy, IsNeverReplacedOnTheDevice) {
  const Scene sc(1);
  // The legacy stream and no cuBLAS handle: a device half made here is never asked to select.
  const DeviceContext context{nullptr, nullptr, sc.layers, sc.hq, sc.hkv, sc.d};
  for (const char* name : {"full", "streaming", "oracle", "esa", "infllm", "quest"}) {
    PolicyOptions o;
    o.kind = parse_policy(name);
#ifdef ESA_WITH_CUDA
    const bool has_half = true;
#else
    const bool has_half = false;
#endif
    if (cuda_devices().empty() && has_half && o.kind == PolicyKind::esa) continue;  // esa uploads its projection
    EXPECT_EQ(make_policy(o, sc.config())->make_device_selector(context) != nullptr, has_half) << name;
    EXPECT_EQ(wrap(o, sc)->make_device_selector(context), nullptr) << name;
    o.heads = HeadMode::individual;
    if (o.kind != PolicyKind::full && o.kind != PolicyKind::streaming) {
      EXPECT_EQ(make_policy(o, sc.config())->make_device_selector(context), nullptr) << name << " individual";
    }
  }
}

TEST(DiagnosticPolicy, OracleHasFullRecallAndItsOwnMass) {
  const uint64_t seed = test::test_seed(32);
  for (ScoreSpace space : {ScoreSpace::rotated, ScoreSpace::plain}) {
    for (int64_t T : {1, 8}) {
      Scene sc(seed);
      sc.append(200);
      PolicyOptions o = small_options(PolicyKind::oracle);
      o.score_space = space;
      auto wrapped = wrap(o, sc);
      auto twin = make_policy(o, sc.config());
      const Tensor q = sc.queries(T);
      const LayerInputs in = sc.inputs(1, q);
      const Selection sel = wrapped->select(in);
      const SelectionRecord& r = wrapped->records().at(0);
      EXPECT_EQ(r.layer, 1);
      EXPECT_EQ(r.chunk_begin, 200 - T);
      EXPECT_EQ(r.chunk_len, T);
      EXPECT_EQ(r.n_middle, (200 - T - 32) - 4);
      EXPECT_EQ(r.n_selected, o.budget.select);
      EXPECT_EQ(r.recall, 1.0);
      const double own = selection_mass(in, twin->select(in), o);
      EXPECT_EQ(r.mass, own) << describe(o);
      const double ref = ref_mass(sc, in, sel, o);
      EXPECT_NEAR(r.mass, ref, 1e-6 * ref) << describe(o) << " T " << T;
      EXPECT_GT(r.mass, 0.0);
      EXPECT_LT(r.mass, 1.0);
    }
  }
}

TEST(DiagnosticPolicy, FullAndStreamingBracketTheOracle) {
  Scene sc(test::test_seed(33));
  sc.append(200);
  const Tensor q = sc.queries(8);
  const LayerInputs in = sc.inputs(0, q);
  ASSERT_FALSE(oracle_middle(sc, in, small_options(PolicyKind::oracle)).empty());

  auto full = wrap(small_options(PolicyKind::full), sc);
  full->select(in);
  const SelectionRecord& f = full->records().at(0);
  EXPECT_EQ(f.n_selected, f.n_middle);  // the local branch sees every middle token
  EXPECT_EQ(f.recall, 1.0);
  EXPECT_EQ(f.mass, 1.0);

  auto streaming = wrap(small_options(PolicyKind::streaming), sc);
  streaming->select(in);
  const SelectionRecord& s = streaming->records().at(0);
  EXPECT_EQ(s.n_middle, f.n_middle);
  EXPECT_EQ(s.n_selected, 0);
  EXPECT_EQ(s.recall, 0.0);
  EXPECT_EQ(s.mass, 0.0);
}

TEST(DiagnosticPolicy, BudgetCoveringTheMiddleGivesRecallAndMassOne) {
  const uint64_t seed = test::test_seed(34);
  for (PolicyKind kind : kAllKinds) {
    Scene sc(seed);
    sc.append(100);
    PolicyOptions o = small_options(kind);
    o.budget.select = 100;  // >= |M| = 100 - 8 - 32 - 4
    if (kind == PolicyKind::streaming) continue;  // selects nothing by design
    auto wrapped = wrap(o, sc);
    const Tensor q = sc.queries(8);
    wrapped->select(sc.inputs(0, q));
    const SelectionRecord& r = wrapped->records().at(0);
    EXPECT_EQ(r.n_middle, 56) << describe(o);
    EXPECT_EQ(r.n_selected, 56) << describe(o);
    EXPECT_EQ(r.recall, 1.0) << describe(o);
    EXPECT_DOUBLE_EQ(r.mass, 1.0) << describe(o);
  }
}

TEST(DiagnosticPolicy, EmptyMiddleCountsAsPerfect) {
  Scene sc(test::test_seed(35));
  sc.append(30);  // the window covers everything
  auto streaming = wrap(small_options(PolicyKind::streaming), sc);
  const Tensor q = sc.queries(8);
  streaming->select(sc.inputs(0, q));
  const SelectionRecord& r = streaming->records().at(0);
  EXPECT_EQ(r.n_middle, 0);
  EXPECT_EQ(r.recall, 1.0);
  EXPECT_EQ(r.mass, 1.0);
}

// The mass of every policy's choice, through the decorator, against the float64 definition;
// a context longer than one GEMM column block exercises the online softmax.
TEST(DiagnosticPolicy, MassMatchesFloat64BruteForce) {
  const uint64_t seed = test::test_seed(36);
  for (int64_t S : {int64_t(120), int64_t(300), int64_t(4700)}) {
    for (PolicyKind kind : kAllKinds) {
      for (HeadMode heads : {HeadMode::uniform, HeadMode::individual}) {
        for (ScoreSpace space : {ScoreSpace::rotated, ScoreSpace::plain}) {
              if (S > 1000 && kind != PolicyKind::oracle && kind != PolicyKind::quest) continue;  // keep it quick
          Scene sc(seed, 4, 2, 16);
          sc.append(S);
          PolicyOptions o = small_options(kind, heads);
          o.score_space = space;
          auto wrapped = wrap(o, sc);
          const Tensor q = sc.queries(5);
          const LayerInputs in = sc.inputs(0, q);
          const Selection sel = wrapped->select(in);
          const double ref = ref_mass(sc, in, sel, o);
          const double got = wrapped->records().at(0).mass;
          EXPECT_NEAR(got, ref, 1e-6 * std::max(ref, 1e-12)) << describe(o) << " S " << S;
          // Recall from the definition too.
          const std::vector<int64_t> om = oracle_middle(sc, in, o);
          int64_t hit = 0;
          for (int64_t t : om) {
            bool any = t >= sel.local_begin;
            for (const auto& list : sel.long_tokens) any = any || std::find(list.begin(), list.end(), t) != list.end();
            hit += any;
          }
          EXPECT_EQ(wrapped->records().at(0).recall, om.empty() ? 1.0 : double(hit) / double(om.size())) << describe(o);
        }
      }
    }
  }
}

// Hand-made selections: one list per KV head, and a local branch reaching into M.
TEST(SelectionMass, PerHeadListsAndEarlyLocalBranch) {
  Scene sc(test::test_seed(37), 6, 3, 8);
  sc.append(90);
  PolicyOptions o = small_options(PolicyKind::oracle);
  const Tensor q = sc.queries(3);
  const LayerInputs in = sc.inputs(1, q);
  const ContextSplit split = split_context(o.budget, in.chunk_begin());
  ASSERT_EQ(split.init_end, 4);
  ASSERT_EQ(split.local_begin, 55);
  Selection sel;
  sel.local_begin = 50;  // [50, 55) of M is seen by the local branch
  sel.long_tokens = {{0, 1, 2, 3, 4, 9, 30}, {0, 1, 2, 3, 20, 21, 22, 23}, {}};
  for (ScoreSpace space : {ScoreSpace::rotated, ScoreSpace::plain}) {
    o.score_space = space;
    const double ref = ref_mass(sc, in, sel, o);
    EXPECT_NEAR(selection_mass(in, sel, o), ref, 1e-6 * ref) << score_space_name(space);
  }
  sel.long_tokens.pop_back();  // 2 lists for 3 KV heads
  EXPECT_THROW(selection_mass(in, sel, o), Error);
}

TEST(DiagnosticPolicy, NeedleCoverage) {
  Scene sc(test::test_seed(38));
  sc.append(200);  // chunk [192, 200), window [160, 192), initial [0, 4), M = [4, 160)
  const Tensor q = sc.queries(8);
  const LayerInputs in = sc.inputs(0, q);
  const std::vector<std::pair<int64_t, int64_t>> needles = {
      {170, 180},  // inside the window
      {60, 70},    // in M
      {155, 165},  // straddles M and the window
      {195, 198},  // inside the chunk: not before it
      {1, 3}};     // initial tokens

  auto streaming = wrap(small_options(PolicyKind::streaming), sc);
  streaming->set_needles(needles);
  streaming->select(in);
  const std::vector<double>& s = streaming->records().at(0).needle_fraction;
  ASSERT_EQ(s.size(), needles.size());
  EXPECT_EQ(s[0], 1.0);
  EXPECT_EQ(s[1], 0.0);
  EXPECT_DOUBLE_EQ(s[2], 0.5);
  EXPECT_TRUE(std::isnan(s[3]));
  EXPECT_EQ(s[4], 1.0);

  auto full = wrap(small_options(PolicyKind::full), sc);
  full->set_needles(needles);
  full->select(in);
  const std::vector<double>& f = full->records().at(0).needle_fraction;
  EXPECT_EQ(f[0], 1.0);
  EXPECT_EQ(f[1], 1.0);
  EXPECT_EQ(f[2], 1.0);
  EXPECT_TRUE(std::isnan(f[3]));

  // The oracle: the fraction is the share of the needle's tokens in its list.
  auto oracle = wrap(small_options(PolicyKind::oracle), sc);
  oracle->set_needles({{60, 70}});
  const Selection sel = oracle->select(in);
  const auto& list = sel.long_tokens[0];
  const double want = double(std::count_if(list.begin(), list.end(), [](int64_t t) { return t >= 60 && t < 70; })) / 10.0;
  EXPECT_DOUBLE_EQ(oracle->records().at(0).needle_fraction.at(0), want);

  EXPECT_THROW(streaming->set_needles({{5, 3}}), Error);
  EXPECT_THROW(streaming->set_needles({{-1, 3}}), Error);
}

TEST(DiagnosticPolicy, SummaryPerLayer) {
  Scene sc(test::test_seed(39));
  auto wrapped = wrap(small_options(PolicyKind::quest), sc);
  for (int64_t step = 0; step < 20; ++step) {
    sc.append(8);
    const Tensor q = sc.queries(8);
    for (int64_t l = 0; l < sc.layers; ++l) wrapped->select(sc.inputs(l, q));
  }
  const auto summary = wrapped->summary();
  ASSERT_EQ(summary.size(), 2u);
  for (int64_t l = 0; l < 2; ++l) {
    double recall = 0, mass = 0, min_recall = 2;
    int64_t calls = 0;
    for (const SelectionRecord& r : wrapped->records()) {
      if (r.layer != l) continue;
      ++calls;
      recall += r.recall;
      mass += r.mass;
      min_recall = std::min(min_recall, r.recall);
      EXPECT_GE(r.recall, 0.0);
      EXPECT_LE(r.recall, 1.0);
      EXPECT_GE(r.mass, 0.0);
      EXPECT_LE(r.mass, 1.0 + 1e-12);
    }
    EXPECT_EQ(summary[size_t(l)].layer, l);
    EXPECT_EQ(summary[size_t(l)].calls, calls);
    EXPECT_DOUBLE_EQ(summary[size_t(l)].mean_recall, recall / double(calls));
    EXPECT_DOUBLE_EQ(summary[size_t(l)].mean_mass, mass / double(calls));
    EXPECT_EQ(summary[size_t(l)].min_recall, min_recall);
  }
  EXPECT_LT(summary[0].min_recall, 1.0) << "quest should miss some of the oracle's tokens here";
}

}  // namespace
}  // namespace esa::attention
