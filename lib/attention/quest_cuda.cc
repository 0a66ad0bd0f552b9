// quest's GPU half (quest.cc): per layer, the page bounds [pages, 2, width] (max | min per
// channel, keys before RoPE) of the middle tokens [origin, ...), the complete ones kept and
// extended, the partial last page recomputed each call; the pages scored by the signed folded
// queries (one GEMM, UnitTopK), the select / page best pages' rows, a chosen partial page's row
// count left on the device (DeviceRows::rows_valid).
#include "attention/selection_cuda.h"
#include "core/cuda_check.h"
#include "quest_select.cuh"

namespace esa::attention {
namespace {

class QuestSelector final : public DeviceSelector {
 public:
  QuestSelector(const DeviceContext& c, const PolicyOptions& o, int64_t page)
      : context_(c), options_(o), page_(page), bounds_(size_t(c.n_layers)), valid_(size_t(c.n_layers), 0),
        origin_(size_t(c.n_layers), -1) {}

  DeviceRows select(const DeviceLayerInputs& in) override {
    const DeviceContext& c = context_;
    const ChunkRows chunk = begin_chunk(rows_, options_, in.start, c.stream);
    if (chunk.all) return rows_.rows(chunk.m1, chunk.m1);
    const int64_t l = in.layer, kw = c.hkv * c.d, m0 = chunk.m0, m1 = chunk.m1;
    const int64_t middle = m1 - m0, full = middle / page_, pages = (middle + page_ - 1) / page_;
    // Complete pages stay valid while the middle starts at the same token and the cache still
    // holds their rows (a truncated cache drops the pages past its end).
    int64_t& valid = valid_[size_t(l)];
    if (origin_[size_t(l)] != m0) valid = 0;
    origin_[size_t(l)] = m0;
    valid = std::min({valid, full, std::max<int64_t>(in.start - m0, 0) / page_});
    cuda::Buffer<float>& bounds = bounds_[size_t(l)];
    bounds.grow(size_t(pages * 2 * kw), size_t(valid * 2 * kw), "quest's page bounds", c.stream);
    cuda::PageBoundsParams bp;
    bp.keys = in.keys;
    bp.width = kw;
    bp.begin = m0;
    bp.end = m1;
    bp.page = int(page_);
    bp.page_from = valid;
    bp.page_to = pages;
    bp.bounds = bounds.get();
    ESA_CUDA_CHECK(cuda::launch_page_bounds(bp, c.stream));
    valid = full;

    const int64_t k = options_.budget.select / page_;
    if (k == 0) return rows_.rows(m0, m1);
    const float* q_space = options_.score_space == ScoreSpace::rotated ? in.q_at_w : in.q;
    q_signed_.resize(size_t(in.T * 2 * kw), "selection scratch");
    ESA_CUDA_CHECK(
        cuda::launch_gqa_fold_signed(q_space, int(in.T), int(c.hq), int(c.hkv), int(c.d), q_signed_.get(), c.stream));
    rows_valid_.resize(1, "selection scratch");
    scoring_.select(c, q_signed_.get(), bounds.get(), 2 * kw, in.T, pages, k, page_, m0, m1, chunk.rows + m0,
                    rows_valid_.get());
    return rows_.rows(m0 + k * page_, m1, rows_valid_.get());
  }

 private:
  DeviceContext context_;
  PolicyOptions options_;
  int64_t page_;
  std::vector<cuda::Buffer<float>> bounds_;  // per layer [pages, 2, width]
  std::vector<int64_t> valid_, origin_;      // per layer: complete pages kept; first middle token
  RowList rows_;
  cuda::Buffer<float> q_signed_;
  cuda::Buffer<int> rows_valid_;
  UnitTopK scoring_;
};

}  // namespace

std::unique_ptr<DeviceSelector> make_quest_selector(const DeviceContext& context, const PolicyOptions& options,
                                                    int64_t page) {
  return std::make_unique<QuestSelector>(context, options, page);
}

}  // namespace esa::attention
