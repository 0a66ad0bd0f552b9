// quest (lib/attention/quest.cc, quest_cuda.cc) against a float64 brute force of Quest's page
// bound (mit-han-lab/Quest), on the CPU and from its device half: whole pages, the partial last
// page included. Seeds print.
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

class Quest : public test::OnDevice {};

TEST_P(Quest, PicksTheFloat64TopPagesOfItsBound) {
  const bool gpu = GetParam() == Device::cuda;
  Scene sc(test::test_seed(14));
  sc.append(203, gpu);  // |M| = 203 - 8 - 32 - 4 = 159: the last page is partial
  for (auto heads : {HeadMode::uniform, HeadMode::individual}) {
    if (gpu && heads == HeadMode::individual) continue;  // one list per KV head is not on the GPU
    PolicyOptions o = small_options(PolicyKind::quest, heads);
    o.budget.chunk = 8;
    auto quest = make_policy(o, sc.config());
    const Tensor q = sc.queries(8);
    const LayerInputs in = sc.inputs(0, q);
    const Selection sel = test::select_on(GetParam(), *quest, sc, in);
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
ESA_ON_DEVICES(Quest);

}  // namespace
}  // namespace esa::attention
