// full and streaming (lib/attention/streaming.cc, streaming_cuda.cc) on the CPU and from their
// device halves: full lists nothing and attends from token 0; streaming lists exactly the initial
// tokens and starts the local branch where split_context says, at every length.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "attention/policies.h"
#include "support/device_selection.h"
#include "support/policy_scene.h"
#include "support/test_support.h"

namespace esa::attention {
namespace {

class Streaming : public test::OnDevice {};

TEST_P(Streaming, ListsTheInitialTokensAndTheWindow) {
  for (PolicyKind kind : {PolicyKind::full, PolicyKind::streaming}) {
    SCOPED_TRACE(policy_name(kind));
    test::PolicyScene scene(test::test_seed(18));
    const PolicyOptions o = test::small_options(kind);
    auto policy = make_policy(o, scene.config());
    test::SelectionRunner runner(GetParam(), *policy, scene.layers, scene.hq, scene.hkv, scene.d);
    // Lengths below the initial tokens, inside the window, and well past it; chunks and steps.
    for (int64_t step = 0; step < 24; ++step) {
      const int64_t T = step < 12 ? 8 : 1;
      scene.append(T, true);
      const Tensor q = scene.queries(T);
      for (int64_t l = 0; l < scene.layers; ++l) {
        const LayerInputs in = scene.inputs(l, q);
        const test::ChosenRows got = runner.select(in);
        const ContextSplit split = split_context(o.budget, in.chunk_begin());
        std::vector<int64_t> want;
        if (kind == PolicyKind::streaming) {
          want.resize(size_t(split.init_end));
          std::iota(want.begin(), want.end(), int64_t(0));
        }
        EXPECT_EQ(got.local_begin, kind == PolicyKind::full ? 0 : split.local_begin) << "step " << step;
        EXPECT_EQ(got.rows, want) << "step " << step << " layer " << l;
      }
    }
  }
}
ESA_ON_DEVICES(Streaming);

}  // namespace
}  // namespace esa::attention
