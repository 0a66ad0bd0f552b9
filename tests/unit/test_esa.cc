// esa (lib/attention/esa.cc, esa_cuda.cc): with the identity projection it selects exactly
// oracle's tokens (CPU, over a growing sequence); with a random projection it ranks by the
// compressed scores q' . k' computed in float64 (CPU and device half). Seeds print.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "attention/policies.h"
#include "attention/policy.h"
#include "attention/projection.h"
#include "attention/selection.h"
#include "core/error.h"
#include "support/device_selection.h"
#include "support/policy_scene.h"
#include "support/selection_reference.h"
#include "support/test_support.h"

namespace esa::attention {
namespace {

using Scene = test::PolicyScene;
using namespace test;  // the references of support/selection_reference.h, the scene helpers

TEST(EsaPolicy, IdentityProjectionSelectsExactlyOraclesTokens) {
  for (auto heads : {HeadMode::uniform, HeadMode::individual}) {
  SCOPED_TRACE(head_mode_name(heads));
  Scene sc(test::test_seed(12));
  PolicyOptions o = small_options(PolicyKind::oracle, heads);
  PolicyOptions e = o;
  e.kind = PolicyKind::esa;
  auto oracle = make_policy(o, sc.config());
  auto esa = make_policy(e, sc.config());
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

class Esa : public test::OnDevice {};

// d' 8 and 16 on both devices (the GPU takes multiples of 8), 7 on the CPU; T 4 (decode-sized
// groups) and 40 (the chunk kernel).
TEST_P(Esa, RandomProjectionRanksByCompressedScores) {
  const bool gpu = GetParam() == Device::cuda;
  for (const auto& shape : {std::pair<int64_t, int64_t>{7, 4}, {8, 4}, {16, 40}}) {
  const int64_t dim = shape.first, T = shape.second;  // locals, not bindings: the lambda below captures them
  if (gpu && dim % 8 != 0) continue;
  SCOPED_TRACE("d' " + std::to_string(dim) + ", T " + std::to_string(T));
  Scene sc(test::test_seed(13));
  sc.append(150, gpu);
  PolicyOptions o = small_options(PolicyKind::esa);
  o.eps = 0;
  o.score_space = ScoreSpace::plain;
  const int64_t width = sc.hkv * sc.d;
  const Projection p = Projection::random(sc.layers, width, dim, 5);
  auto esa = make_esa_policy(o, p);
  const Tensor q = sc.queries(T);
  const LayerInputs in = sc.inputs(0, q);
  const Selection sel = test::select_on(GetParam(), *esa, sc, in);
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
  for (int64_t c = 0; c < T; ++c) {
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
  // The device rounds q~ and the projection to bf16 before its GEMMs: a wider boundary tie.
  expect_same_top_k(middle_of(sel.long_tokens[0], split.init_end), ref, F, split.init_end, gpu ? 5e-2 : 1e-4,
                    "esa random");
  }
}
ESA_ON_DEVICES(Esa);


}  // namespace
}  // namespace esa::attention
