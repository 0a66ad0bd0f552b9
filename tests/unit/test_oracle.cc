// oracle (lib/attention/oracle.cc, oracle_cuda.cc) against a float64 brute force of its
// definition (PAPER.md section 2), on the CPU and from its device half. Top-k results compared
// as sets with boundary ties reported; seeds print, ESA_TEST_SEED overrides them.
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

class Oracle : public test::OnDevice {};

TEST_P(Oracle, PicksTheFloat64TopKOfItsDefinition) {
  const bool gpu = GetParam() == Device::cuda;
  Scene sc(test::test_seed(11));
  sc.append(200, gpu);
  for (auto space : {ScoreSpace::rotated, ScoreSpace::plain}) {
    for (auto heads : {HeadMode::uniform, HeadMode::individual}) {
      if (gpu && heads == HeadMode::individual) continue;  // one list per KV head is not on the GPU
      for (int64_t eps : {0, 1, 3}) {
        for (int64_t T : {1, 8, 40}) {
          PolicyOptions o = small_options(PolicyKind::oracle, heads);
          o.eps = eps;
          o.score_space = space;
          auto policy = make_policy(o, sc.config());
          const Tensor q = sc.queries(T);
          const LayerInputs in = sc.inputs(1, q);
          const Selection sel = test::select_on(GetParam(), *policy, sc, in);
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
            // The device scores bf16 queries by float32 GEMMs: a wider boundary tie.
            expect_same_top_k(middle_of(sel.long_tokens[size_t(g)], split.init_end), ref, pooled, split.init_end,
                              gpu ? 2e-2 : 1e-4, what);
          }
        }
      }
    }
  }
}
ESA_ON_DEVICES(Oracle);

}  // namespace
}  // namespace esa::attention
