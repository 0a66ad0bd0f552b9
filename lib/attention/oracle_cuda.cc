// oracle's GPU half (oracle.cc): esa's pipeline on the key rows themselves (d' = the key width:
// always by the tensor-core GEMM path of importance_cuda).
#include "attention/selection_cuda.h"
#include "core/cuda_check.h"
#include "model_ops.cuh"

namespace esa::attention {
namespace {

class OracleSelector final : public DeviceSelector {
 public:
  OracleSelector(const DeviceContext& c, const PolicyOptions& o) : context_(c), options_(o) {}

  DeviceRows select(const DeviceLayerInputs& in) override {
    const DeviceContext& c = context_;
    const ChunkRows chunk = begin_chunk(rows_, options_, in.start, c.stream);
    if (chunk.all) return rows_.rows(chunk.m1, chunk.m1);
    // q~: the chunk's queries in the score space, folded over each KV group.
    const int64_t kw = c.hkv * c.d;
    const float* q_space = options_.score_space == ScoreSpace::rotated ? in.q_at_w : in.q;
    q_fold_.resize(size_t(in.T * kw), "selection scratch");
    ESA_CUDA_CHECK(cuda::launch_gqa_fold(q_space, int(in.T), int(c.hq), int(c.hkv), int(c.d), q_fold_.get(), c.stream));
    scoring_.select(c, q_fold_.get(), in.keys, kw, in.T, chunk.m0, chunk.m1, int(options_.eps), options_.budget.select,
                    chunk.rows + chunk.m0);
    return rows_.rows(chunk.m0 + options_.budget.select, chunk.m1);
  }

 private:
  DeviceContext context_;
  PolicyOptions options_;
  RowList rows_;
  cuda::Buffer<float> q_fold_;
  TokenTopK scoring_;
};

}  // namespace

std::unique_ptr<DeviceSelector> make_oracle_selector(const DeviceContext& context, const PolicyOptions& options) {
  return std::make_unique<OracleSelector>(context, options);
}

}  // namespace esa::attention
