// infllm (lib/attention/infllm.cc, infllm_cuda.cc) over a growing sequence, on the CPU and from
// its device half: whole blocks then the remainder, and a block planted along the queries'
// direction is chosen. Seeds print.
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
using test::gaussian;
using test::middle_of;

class Infllm : public test::OnDevice {};

TEST_P(Infllm, WholeBlocksPlusTheRemainderAndAPlantedBlockWins) {
  const bool gpu = GetParam() == Device::cuda;
  Scene sc(test::test_seed(15), 4, 2, 16);
  PolicyOptions o;
  o.kind = PolicyKind::infllm;
  o.budget.init = 8;
  o.budget.local = 64;
  o.budget.select = 300;  // 2 blocks + a remainder of at most 44
  o.budget.chunk = 32;
  auto infllm = make_policy(o, sc.config());
  test::SelectionRunner runner(GetParam(), *infllm, sc.layers, sc.hq, sc.hkv, sc.d);
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
      if (gpu) {  // bf16-exact keys: both halves score the same numbers
        for (float& x : k) x = test::round_to_bf16(x);
      }
      sc.cache.append(l, k.data(), k.data(), v.data(), T);
    }
    Tensor q({T, sc.hq, sc.d});
    for (int64_t i = 0; i < q.numel(); ++i) q.data()[i] = u[size_t(i % sc.d)] + 0.1f * gaussian(sc.gen, 1)[0];
    for (int64_t l = 0; l < sc.layers; ++l) {
      const LayerInputs in = sc.inputs(l, q);
      const test::ChosenRows chosen = runner.select(in);
      const Selection sel{chosen.local_begin, {chosen.rows}};
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
ESA_ON_DEVICES(Infllm);

}  // namespace
}  // namespace esa::attention
