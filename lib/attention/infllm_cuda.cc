// infllm's GPU half (infllm.cc, whose file comment gives the approximation): per layer, the
// attention weight every token received while in the local window [tokens, kv_heads] (the chunk's
// mean query before RoPE spreads a softmax over [local_begin, S) per KV head), and the keys of the
// memory blocks cut from the middle tokens [origin, ...) so far [blocks, kv_heads * head_dim]
// (the mean of each block's most-weighted tokens' keys). The blocks are scored by the chunk's mean
// query in the score space (UnitTopK); the best (select - rem) / block blocks, then the rem middle
// tokens not in a block yet.
#include <cmath>

#include "attention/selection_cuda.h"
#include "core/cuda_check.h"
#include "infllm_select.cuh"
#include "model_ops.cuh"

namespace esa::attention {
namespace {

class InfllmSelector final : public DeviceSelector {
 public:
  InfllmSelector(const DeviceContext& c, const PolicyOptions& o, int64_t block, int64_t representatives)
      : context_(c), options_(o), block_(block), representatives_(representatives), received_(size_t(c.n_layers)),
        block_keys_(size_t(c.n_layers)), blocks_(size_t(c.n_layers), 0), origin_(size_t(c.n_layers), -1) {}

  DeviceRows select(const DeviceLayerInputs& in) override {
    const DeviceContext& c = context_;
    const ContextSplit split = split_context(options_.budget, in.start);
    // The window weights and blocks follow every step, whether it selects or not.
    update_blocks(in, split.init_end, split.local_begin);
    const ChunkRows chunk = begin_chunk(rows_, options_, in.start, c.stream);
    if (chunk.all) return rows_.rows(chunk.m1, chunk.m1);
    const int64_t kw = c.hkv * c.d, m0 = chunk.m0, m1 = chunk.m1;
    const int64_t select = options_.budget.select, blocks = blocks_[size_t(in.layer)];
    const int64_t rem_begin = m0 + blocks * block_, rem = m1 - rem_begin;
    if (rem >= select) {  // only with select < one block: the most recent ones
      ESA_CUDA_CHECK(cuda::launch_iota(chunk.rows + m0, int(select), c.stream, int(m1 - select)));
      return rows_.rows(m0 + select, m1);
    }
    const int64_t pick = (select - rem) / block_;
    if (pick > 0) {
      const float* q_space = options_.score_space == ScoreSpace::rotated ? in.q_at_w : in.q;
      q_mean_.resize(size_t(kw), "selection scratch");
      ESA_CUDA_CHECK(cuda::launch_fold_mean(q_space, int(in.T), int(c.hq), int(c.hkv), int(c.d),
                                            float(1.0 / double(in.T * c.hq)), q_mean_.get(), c.stream));
      scoring_.select(c, q_mean_.get(), block_keys_[size_t(in.layer)].get(), kw, 1, blocks, pick, block_, m0, m1,
                      chunk.rows + m0, nullptr);
    }
    ESA_CUDA_CHECK(cuda::launch_iota(chunk.rows + m0 + pick * block_, int(rem), c.stream, int(rem_begin)));
    return rows_.rows(m0 + pick * block_ + rem, m1);
  }

 private:
  void update_blocks(const DeviceLayerInputs& in, int64_t m0, int64_t m1) {
    const DeviceContext& c = context_;
    const int64_t l = in.layer, T = in.T, start = in.start, S = start + T, kw = c.hkv * c.d;
    const int64_t full = std::max<int64_t>(m1 - m0, 0) / block_;
    cuda::Buffer<float>& received = received_[size_t(l)];
    received.grow(size_t(S * c.hkv), received.size(), "infllm's window weights", c.stream);
    // The chunk's tokens start with no weight (a truncated cache's old rows are overwritten).
    ESA_CUDA_CHECK(cudaMemsetAsync(received.get() + start * c.hkv, 0, size_t(T * c.hkv) * sizeof(float), c.stream));
    if (S > m1 && T > 0) {
      const int64_t group = c.hq / c.hkv;
      q_window_.resize(size_t(kw), "selection scratch");
      window_scratch_.resize(size_t(c.hkv * (S - m1)), "selection scratch");
      ESA_CUDA_CHECK(cuda::launch_fold_mean(in.q, int(T), int(c.hq), int(c.hkv), int(c.d),
                                            float(1.0 / (double(T * group) * std::sqrt(double(c.d)))), q_window_.get(),
                                            c.stream));
      cuda::WindowWeightsParams wp;
      wp.qbar = q_window_.get();
      wp.keys = in.keys;
      wp.hkv = int(c.hkv);
      wp.d = int(c.d);
      wp.begin = m1;
      wp.end = S;
      wp.scratch = window_scratch_.get();
      wp.received = received.get();
      ESA_CUDA_CHECK(cuda::launch_window_weights(wp, c.stream));
    }
    // Blocks stay while the middle starts at the same token and the cache still holds their rows.
    int64_t& blocks = blocks_[size_t(l)];
    if (origin_[size_t(l)] != m0) blocks = 0;
    origin_[size_t(l)] = m0;
    blocks = std::min({blocks, full, std::max<int64_t>(start - m0, 0) / block_});
    cuda::Buffer<float>& keys = block_keys_[size_t(l)];
    keys.grow(size_t(std::max<int64_t>(full, 1) * kw), size_t(blocks * kw), "infllm's block keys", c.stream);
    cuda::BlockKeysParams bp;
    bp.received = received.get();
    bp.keys = in.keys;
    bp.hkv = int(c.hkv);
    bp.d = int(c.d);
    bp.begin = m0;
    bp.block = int(block_);
    bp.reps = int(representatives_);
    bp.block_from = blocks;
    bp.block_to = full;
    bp.block_keys = keys.get();
    ESA_CUDA_CHECK(cuda::launch_block_keys(bp, c.stream));
    blocks = full;
  }

  DeviceContext context_;
  PolicyOptions options_;
  int64_t block_, representatives_;
  std::vector<cuda::Buffer<float>> received_, block_keys_;  // per layer [tokens, hkv], [blocks, hkv * d]
  std::vector<int64_t> blocks_, origin_;                    // per layer: blocks cut; first middle token
  RowList rows_;
  cuda::Buffer<float> q_window_, q_mean_, window_scratch_;
  UnitTopK scoring_;
};

}  // namespace

std::unique_ptr<DeviceSelector> make_infllm_selector(const DeviceContext& context, const PolicyOptions& options,
                                                     int64_t block, int64_t representatives) {
  return std::make_unique<InfllmSelector>(context, options, block, representatives);
}

}  // namespace esa::attention
