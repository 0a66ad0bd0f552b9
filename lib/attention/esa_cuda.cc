// esa's GPU half (esa.cc): the projection uploaded once per sequence (bf16 weights, float biases),
// the compressed keys k' = Wk k + bk of every layer kept on the device and extended by each
// chunk's new rows, q' = Wq q~ + bq per chunk, then selection_cuda.h's importance and top-k.
#include "attention/projection.h"
#include "attention/selection_cuda.h"
#include "core/cuda_check.h"
#include "core/error.h"
#include "model_ops.cuh"

namespace esa::attention {
namespace {

using bf16 = __nv_bfloat16;

class EsaSelector final : public DeviceSelector {
 public:
  EsaSelector(const DeviceContext& c, const PolicyOptions& o, const Projection& proj) : context_(c), options_(o) {
    const int64_t kw = c.hkv * c.d;
    ESA_CHECK(proj.in_dim == kw && int64_t(proj.layers.size()) >= c.n_layers,
              "esa: projection input dimension {} and {} layers for a model of {} x {} and {} layers", proj.in_dim,
              proj.layers.size(), c.hkv, c.d, c.n_layers);
    dim_ = proj.layers[0].dim;
    const size_t n = size_t(c.n_layers);
    wq_.resize(n), wk_.resize(n), bq_.resize(n), bk_.resize(n), kc_.resize(n);
    valid_.assign(n, 0);
    cuda::Buffer<float> staging;
    auto put16 = [&](cuda::Buffer<bf16>& dst, const std::vector<float>& w) {
      staging.upload(w.data(), w.size(), "the esa projection", c.stream);
      dst.resize(w.size(), "the esa projection");
      ESA_CUDA_CHECK(cuda::launch_to_bf16(staging.get(), dst.get(), int64_t(w.size()), c.stream));
      ESA_CUDA_CHECK(cudaStreamSynchronize(c.stream));  // before the staging is overwritten
    };
    for (size_t i = 0; i < n; ++i) {
      put16(wq_[i], proj.layers[i].wq);
      put16(wk_[i], proj.layers[i].wk);
      bq_[i].upload(proj.layers[i].bq.data(), proj.layers[i].bq.size(), "the esa projection", c.stream);
      bk_[i].upload(proj.layers[i].bk.data(), proj.layers[i].bk.size(), "the esa projection", c.stream);
    }
  }

  DeviceRows select(const DeviceLayerInputs& in) override {
    const DeviceContext& c = context_;
    const int64_t l = in.layer, kw = c.hkv * c.d;
    update_compressed_keys(in);
    const ChunkRows chunk = begin_chunk(rows_, options_, in.start, c.stream);
    if (chunk.all) return rows_.rows(chunk.m1, chunk.m1);
    // q' = Wq q~ + bq, q~ the chunk's queries in the score space folded over each KV group.
    const float* q_space = options_.score_space == ScoreSpace::rotated ? in.q_at_w : in.q;
    q_fold_.resize(size_t(in.T * kw), "selection scratch");
    q16_.resize(size_t(in.T * kw), "selection scratch");
    qc_.resize(size_t(in.T * dim_), "selection scratch");
    ESA_CUDA_CHECK(cuda::launch_gqa_fold(q_space, int(in.T), int(c.hq), int(c.hkv), int(c.d), q_fold_.get(), c.stream));
    ESA_CUDA_CHECK(cuda::launch_to_bf16(q_fold_.get(), q16_.get(), in.T * kw, c.stream));
    gemm_bf16(c.cublas, wq_[size_t(l)].get(), dim_, kw, q16_.get(), in.T, qc_.get());
    ESA_CUDA_CHECK(cuda::launch_add_bias(qc_.get(), bq_[size_t(l)].get(), int(in.T), int(dim_), c.stream));
    scoring_.select(c, qc_.get(), kc_[size_t(l)].get(), dim_, in.T, chunk.m0, chunk.m1, int(options_.eps),
                    options_.budget.select, chunk.rows + chunk.m0);
    return rows_.rows(chunk.m0 + options_.budget.select, chunk.m1);
  }

 private:
  // Extends layer l's k' to the cache's S rows (a truncated cache drops its tail first).
  void update_compressed_keys(const DeviceLayerInputs& in) {
    const DeviceContext& c = context_;
    const int64_t l = in.layer, kw = c.hkv * c.d, S = in.start + in.T;
    int64_t& valid = valid_[size_t(l)];
    valid = std::min(valid, in.start);
    kc_[size_t(l)].grow(size_t(S * dim_), size_t(valid * dim_), "esa's compressed keys", c.stream);
    const int64_t n_new = S - valid;
    if (n_new <= 0) return;
    y_.resize(size_t(n_new * dim_), "esa scratch");
    gemm_bf16(c.cublas, wk_[size_t(l)].get(), dim_, kw, in.keys + valid * kw, n_new, y_.get());
    ESA_CUDA_CHECK(cuda::launch_add_bias(y_.get(), bk_[size_t(l)].get(), int(n_new), int(dim_), c.stream));
    ESA_CUDA_CHECK(cuda::launch_to_bf16(y_.get(), kc_[size_t(l)].get() + valid * dim_, n_new * dim_, c.stream));
    valid = S;
  }

  DeviceContext context_;
  PolicyOptions options_;
  int64_t dim_ = 0;
  std::vector<cuda::Buffer<bf16>> wq_, wk_, kc_;  // [dim, in_dim], [dim, in_dim], [capacity, dim] per layer
  std::vector<cuda::Buffer<float>> bq_, bk_;
  std::vector<int64_t> valid_;                    // rows of k' computed, per layer
  RowList rows_;
  cuda::Buffer<float> q_fold_, qc_, y_;
  cuda::Buffer<bf16> q16_;
  TokenTopK scoring_;
};

}  // namespace

std::unique_ptr<DeviceSelector> make_esa_selector(const DeviceContext& context, const PolicyOptions& options,
                                                  const Projection& projection) {
  return std::make_unique<EsaSelector>(context, options, projection);
}

}  // namespace esa::attention
