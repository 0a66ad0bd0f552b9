#include "engine/llama_cuda.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "attention/device_selector.h"
#include "attention/policy.h"
#include "attention/selection_cuda.h"
#include "core/cuda_check.h"
#include "core/device_buffer.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "engine/llama.h"
#include "flash_attention.cuh"
#include "gather_rows.cuh"
#include "gathered_attention.cuh"
#include "model_ops.cuh"
#include "rope_rows.cuh"

namespace esa {
namespace {

using bf16 = __nv_bfloat16;

// Chunks of at least this many queries attend by the flash kernel (K/V tiles read once per
// query block); fewer (decode) by the split-K kernel.
constexpr int64_t kChunkFlashQueries = 8;

using cuda::Buffer;
using cuda::Memory;

// The local branch's keys at their own positions for a cache that holds keys before RoPE: rows
// [base_, end_) of one layer, turned from the cache (kernels/rope_rows.cuh) as the window slides,
// in device memory. Rows stay in their slots between chunks, so a decode step turns one row; a
// window that would run past the buffer starts over at its front (one window's turn, once per
// half a window of new rows). Rows the forward rewrites are forgotten first (forget_from).
class RotatedWindow {
 public:
  /// Rows [begin, end) of `keys` [rows, heads * d] at their positions; the pointer is row begin's.
  const bf16* cover(const bf16* keys, int64_t begin, int64_t end, int heads, int d, const cuda::RopeTables& rope,
                    cudaStream_t stream) {
    const int64_t width = int64_t(heads) * d, need = end - begin;
    if (begin < base_ || begin > end_ || end - base_ > capacity_) {  // start over at the front
      if (need > capacity_) {
        capacity_ = need + std::max<int64_t>(need / 2, 64);
        rows_.resize(size_t(capacity_ * width), "the local window's rotated keys");
      }
      base_ = end_ = begin;
    }
    if (end > end_) {
      ESA_CUDA_CHECK(cuda::launch_rope_rows(keys, end_, end, heads, d, rope, rows_.get() + (end_ - base_) * width, stream));
      end_ = end;
    }
    return rows_.get() + (begin - base_) * width;
  }
  /// Cache rows from `row` on are about to be rewritten.
  void forget_from(int64_t row) {
    end_ = std::max(base_, std::min(end_, row));
  }
  size_t bytes() const { return rows_.bytes(); }

 private:
  Buffer<bf16> rows_;
  int64_t capacity_ = 0, base_ = 0, end_ = 0;  // rows [base_, end_) held; row r in slot r - base_
};

// The bf16 K and V of every layer, [capacity, kv_heads * head_dim] each, grown on demand: K + V,
// the paper's budget, with no second copy of the keys. The keys are held in the form their readers
// want: rotated to their own positions for dense attention (a policy that reads no key before
// RoPE, full), or before RoPE for a selecting policy (its long branch, scoring and host mirror),
// whose local branch reads a RotatedWindow per layer. A sequence that changes between the two is
// turned in place. In device memory, or (kv_offload) in mapped host memory read over the bus.
class CudaKvStorage final : public DeviceKvStorage {
 public:
  enum class KeyForm { rotated, before_rope };

  CudaKvStorage(int64_t layers, int64_t width, bool kv_offload)
      : width_(width),
        memory_(kv_offload ? Memory::mapped_host : Memory::device),
        k_(size_t(layers)),
        v_(size_t(layers)),
        windows_(size_t(layers)) {}
  bool on_host() const { return memory_ == Memory::mapped_host; }
  size_t bytes_allocated() const override {
    size_t b = 2 * size_t(layers()) * size_t(capacity_ * width_) * sizeof(bf16);
    for (const RotatedWindow& w : windows_) b += w.bytes();
    return b;
  }
  int64_t layers() const { return int64_t(k_.size()); }
  int64_t capacity() const { return capacity_; }
  bf16* k(int64_t layer) const { return k_[size_t(layer)].get(); }
  bf16* v(int64_t layer) const { return v_[size_t(layer)].get(); }
  RotatedWindow& window(int64_t layer) { return windows_[size_t(layer)]; }
  /// Room for `tokens` rows, keeping the first `keep` rows of every layer.
  void ensure(int64_t tokens, int64_t keep, cudaStream_t stream) {
    if (tokens <= capacity_) return;
    const int64_t cap = std::max(tokens, capacity_ * 3 / 2);
    const std::string what = fmt::format("the KV cache ({} tokens)", cap);
    for (int64_t l = 0; l < layers(); ++l) {
      for (auto* table : {&k_, &v_}) {
        Buffer<bf16>& b = (*table)[size_t(l)];
        if (b.empty()) b = Buffer<bf16>(0, what.c_str(), memory_);  // the placement, before growing
        b.grow(size_t(cap * width_), size_t(keep * width_), what.c_str(), stream);
      }
    }
    capacity_ = cap;
  }
  /// The first `rows` keys of every layer in `form`, turned in place if they were in the other;
  /// rows from `rows` on are about to be written.
  void use_form(KeyForm form, int64_t rows, int heads, int d, const cuda::RopeTables& rope, cudaStream_t stream) {
    for (RotatedWindow& w : windows_) w.forget_from(form == form_ ? rows : 0);
    if (form == form_) return;
    const cuda::RopeTurn turn = form == KeyForm::rotated ? cuda::RopeTurn::to_position : cuda::RopeTurn::from_position;
    for (int64_t l = 0; l < layers() && rows > 0; ++l) {
      ESA_CUDA_CHECK(cuda::launch_rope_rows(k(l), 0, rows, heads, d, rope, k(l), stream, turn));
    }
    form_ = form;
  }

 private:
  int64_t width_;
  Memory memory_;
  int64_t capacity_ = 0;
  KeyForm form_ = KeyForm::before_rope;
  std::vector<Buffer<bf16>> k_, v_;
  std::vector<RotatedWindow> windows_;

 public:
  /// The GPU half of the policy this sequence runs with (null: it selects on the host), made on
  /// first use for the policy object `selector_policy` names (Policy::instance).
  std::unique_ptr<attention::DeviceSelector> selector;
  uint64_t selector_policy = 0;
};

struct DeviceLayer {
  Buffer<float> attn_norm, ffn_norm, bq, bk, bv;
  Buffer<bf16> wq, wk, wv, wo, w_gate, w_up, w_down;
};

}  // namespace

// Times the stages of one forward_chunk on the stream: an event at each stage change; the time
// between two events counts for the stage begun at the first. Idle without a StageTimes.
class StageClock {
 public:
  explicit StageClock(StageTimes* out, cudaStream_t stream) : out_(out), stream_(stream) {}
  StageClock(const StageClock&) = delete;
  StageClock& operator=(const StageClock&) = delete;
  ~StageClock() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  void mark(StageTimes::Stage stage) {
    if (out_ == nullptr || (!stages_.empty() && stages_.back() == stage)) return;
    record();
    stages_.push_back(stage);
  }
  // After the stream's work is done: adds the stage times to the StageTimes.
  void finish() {
    if (out_ == nullptr || stages_.empty()) return;
    record();
    ESA_CUDA_CHECK(cudaEventSynchronize(events_.back()));
    for (size_t i = 0; i + 1 < events_.size(); ++i) {
      float ms = 0.0f;
      ESA_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      out_->seconds[stages_[i]] += double(ms) * 1e-3;
    }
  }

 private:
  void record() {
    cudaEvent_t e = nullptr;
    ESA_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
    ESA_CUDA_CHECK(cudaEventRecord(e, stream_));
  }
  StageTimes* out_;
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
  std::vector<StageTimes::Stage> stages_;
};

struct CudaForward::Impl {
  ModelConfig config;
  ops::RopeTable rope_table;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::vector<DeviceLayer> layers;
  Buffer<bf16> token_embd, lm_head;  // lm_head empty when tied
  Buffer<float> output_norm;
  Buffer<float> rope_inv_freq, rope_low, rope_high;
  cuda::RopeTables rope;
  size_t weight_bytes = 0;

  mutable std::mutex mutex;
  void enqueue_chunk(const int32_t* host_ids, int64_t T, KvCache& cache, const ForwardOptions& options,
                     const ops::RopeAngles* angles, int64_t logit_rows, StageClock& clock) const;
  // Scratch, grown to the largest chunk seen.
  mutable int64_t scratch_tokens = 0;
  mutable Buffer<int> ids, rows;
  mutable Buffer<float> x, q, k, v, q_local, q_long, attn, proj, gate, up, partial, logits, k_rope;
  mutable Buffer<bf16> act;
  // Prefill-chunk attention (attend_chunk).
  mutable Buffer<bf16> q_local16, q_long16, v_range16, k_rows16, v_rows16;
  mutable Buffer<float> flash_partial;

  mutable float* pinned = nullptr;  // page-locked host memory: device-to-host copies stay asynchronous
  mutable size_t pinned_n = 0;

  // Greedy decoding (decode_greedy): each step's token, written by the device into one of two
  // page-locked slots; a CUDA graph per slot, updated in place by each step's capture.
  mutable int* pinned_tokens = nullptr;
  mutable cudaGraphExec_t step_graph[2] = {nullptr, nullptr};
  mutable cudaEvent_t step_done[2] = {nullptr, nullptr};
  Buffer<char> cublas_workspace;  // cuBLAS must not allocate while a step is captured

  float* pinned_keys(size_t n) const {
    if (n > pinned_n) {
      cudaFreeHost(pinned);
      pinned = nullptr;
      pinned_n = 0;
      ESA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(float)));
      pinned_n = n;
    }
    return pinned;
  }

  ~Impl() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (int i = 0; i < 2; ++i) {
      if (step_graph[i] != nullptr) cudaGraphExecDestroy(step_graph[i]);
      if (step_done[i] != nullptr) cudaEventDestroy(step_done[i]);
    }
    cudaFreeHost(pinned_tokens);
    cudaFreeHost(pinned);
    if (cublas != nullptr) cublasDestroy(cublas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  const bf16* output_weight() const { return lm_head.get() != nullptr ? lm_head.get() : token_embd.get(); }

  template <typename T>
  void upload_f32(Buffer<T>& dst, const Tensor& src, const std::string& name, Buffer<float>& staging) {
    if (src.empty()) return;
    const size_t n = size_t(src.numel());
    dst.resize(n, name.c_str());
    weight_bytes += dst.bytes();
    if constexpr (std::is_same_v<T, float>) {
      ESA_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream));
    } else {
      // Through a float staging buffer, converted on the device (round to nearest even). Every
      // copy goes on `stream`: it does not synchronise with the legacy default stream, and a
      // pageable cudaMemcpy may return before its data has landed.
      for (size_t at = 0; at < n; at += staging.size()) {
        const size_t len = std::min(staging.size(), n - at);
        ESA_CUDA_CHECK(cudaMemcpyAsync(staging.get(), src.data() + at, len * sizeof(float), cudaMemcpyHostToDevice, stream));
        ESA_CUDA_CHECK(cuda::launch_to_bf16(staging.get(), dst.get() + at, int64_t(len), stream));
        ESA_CUDA_CHECK(cudaStreamSynchronize(stream));  // before the next chunk overwrites the staging
      }
      ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
  }

  void ensure_scratch(int64_t T, int64_t rows_needed) const {
    const ModelConfig& c = config;
    if (T > scratch_tokens) {
      const size_t t = size_t(T);
      const size_t qw = size_t(c.n_heads * c.head_dim), kw = size_t(c.n_kv_heads * c.head_dim);
      ids.resize(t, "token ids");
      x.resize(t * size_t(c.hidden), "activations");
      q.resize(t * qw, "activations");
      q_local.resize(t * qw, "activations");
      q_long.resize(t * qw, "activations");
      attn.resize(t * qw, "activations");
      k.resize(t * kw, "activations");
      v.resize(t * kw, "activations");
      k_rope.resize(t * kw, "activations");
      proj.resize(t * size_t(c.hidden), "activations");
      gate.resize(t * size_t(c.ffn), "activations");
      up.resize(t * size_t(c.ffn), "activations");
      act.resize(t * size_t(std::max({c.hidden, c.ffn, c.n_heads * c.head_dim})), "activations");
      scratch_tokens = T;
    }
    rows.resize(size_t(std::max<int64_t>(rows_needed, 1)), "the selected rows");
  }

  // Y [T, out] = X [T, in] . W^T (attention/selection_cuda.h).
  void gemm(const bf16* w, int64_t out, int64_t in, const bf16* x_in, int64_t T, float* y) const {
    attention::gemm_bf16(cublas, w, out, in, x_in, T, y);
  }

  // Attention of a chunk of T queries (at positions S - T ...) over the listed rows (device
  // `rows`, n_rows of them; queries q_long) and the range [range_begin, S) (causal; queries
  // q_local), both [T, heads, d] float, by the flash kernel (kernels/flash_attention.cuh) after
  // the listed rows are gathered. `k_range`: the range's keys at their positions (rows
  // [range_begin, S)). `values_on_host`: the cache is in mapped host memory (--kv-offload), so the
  // range's values are copied to the device once rather than read over the bus by every query block.
  void attend_chunk(const bf16* k_cache, const bf16* k_range, const bf16* v_cache, bool values_on_host, int64_t T,
                    int64_t S, int64_t range_begin, const int* rows, int64_t n_rows, const int* rows_valid,
                    float scale, float* out) const {
    const ModelConfig& c = config;
    const int64_t hq = c.n_heads, hkv = c.n_kv_heads, d = c.head_dim, kw = hkv * d, R = S - range_begin;
    cudaStream_t s = stream;
    q_local16.resize(size_t(T * hq * d), "attention scratch");
    ESA_CUDA_CHECK(cuda::launch_to_bf16(q_local.get(), q_local16.get(), T * hq * d, s));
    if (n_rows > 0) {
      q_long16.resize(size_t(T * hq * d), "attention scratch");
      ESA_CUDA_CHECK(cuda::launch_to_bf16(q_long.get(), q_long16.get(), T * hq * d, s));
      k_rows16.resize(size_t(n_rows * kw), "attention scratch");
      v_rows16.resize(size_t(n_rows * kw), "attention scratch");
      ESA_CUDA_CHECK(cuda::launch_gather_rows(k_cache, v_cache, rows, int(n_rows), int(kw), k_rows16.get(),
                                              v_rows16.get(), s));
    }
    const bf16* v_range = v_cache + range_begin * kw;
    if (values_on_host && R > 0) {
      v_range16.resize(size_t(R * kw), "attention scratch (values)");
      ESA_CUDA_CHECK(cudaMemcpyAsync(v_range16.get(), v_range, size_t(R * kw) * sizeof(bf16), cudaMemcpyDefault, s));
      v_range = v_range16.get();
    }
    cuda::FlashChunkParams fp;
    fp.q_long = q_long16.get();
    fp.q_local = q_local16.get();
    fp.k_rows = k_rows16.get();
    fp.v_rows = v_rows16.get();
    fp.n_rows = n_rows;
    fp.rows_valid = rows_valid;
    fp.k_range = k_range;
    fp.v_range = v_range;
    fp.range_begin = range_begin;
    fp.range_len = R;
    fp.first_query = S - T;
    fp.T = int(T);
    fp.hq = int(hq);
    fp.hkv = int(hkv);
    fp.d = int(d);
    fp.scale = scale;
    fp.out = out;
    flash_partial.resize(std::max<size_t>(cuda::flash_chunk_partial_floats(fp), 1), "attention scratch (splits)");
    fp.partial = flash_partial.get();
    ESA_CUDA_CHECK(cuda::launch_flash_chunk_attention(fp, s));
  }

  // The GPU half of `policy` for the sequence of `storage`, made on first use (null: the policy
  // selects on the host, Policy::make_device_selector).
  attention::DeviceSelector* selector_for(const attention::Policy& policy, CudaKvStorage& storage) const {
    if (storage.selector_policy != policy.instance()) {
      const attention::DeviceContext context{stream, cublas, config.n_layers, config.n_heads, config.n_kv_heads,
                                             config.head_dim};
      storage.selector = policy.make_device_selector(context);
      storage.selector_policy = policy.instance();
    }
    return storage.selector.get();
  }

  // The host's copy of layer l's keys (before RoPE) brought up to `rows` rows: a policy that
  // selects on the host reads them (KvCache::mirrored_rows); rows the device holds but the host
  // does not (the sequence ran with a device selector before) come from the bf16 cache.
  void catch_up_key_mirror(KvCache& cache, const CudaKvStorage& storage, int64_t l, int64_t rows) const {
    const int64_t have = cache.mirrored_rows(l), kw = config.n_kv_heads * config.head_dim;
    if (have >= rows) return;
    const Tensor missing = download_bf16(storage.k(l) + have * kw, {rows - have, kw});
    cache.mirror_keys(l, missing.data(), rows - have);
  }

  Tensor download(const float* src, std::vector<int64_t> shape) const {
    Tensor t(std::move(shape));
    ESA_CUDA_CHECK(cudaMemcpyAsync(t.data(), src, t.bytes(), cudaMemcpyDeviceToHost, stream));
    ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
    return t;
  }

  Tensor download_bf16(const bf16* src, std::vector<int64_t> shape) const {
    Tensor t(std::move(shape));
    std::vector<uint16_t> raw(size_t(t.numel()));
    ESA_CUDA_CHECK(cudaMemcpyAsync(raw.data(), src, raw.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost, stream));
    ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < raw.size(); ++i) {
      const uint32_t bits = uint32_t(raw[i]) << 16;
      std::memcpy(t.data() + i, &bits, sizeof(float));
    }
    return t;
  }
};

CudaForward::CudaForward(const ModelConfig& config, const ModelWeights& weights, const ops::RopeTable& rope)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = config;
  m.rope_table = rope;
  const ModelConfig& c = config;
  ESA_CHECK(c.head_dim == 64 || c.head_dim == 128, "--device cuda: head dimension {} (the GPU attention takes 64 or 128)",
            c.head_dim);
  ESA_CHECK(c.n_heads % c.n_kv_heads == 0 && c.n_heads / c.n_kv_heads <= 8,
            "--device cuda: {} query heads per KV head (the GPU attention takes at most 8)", c.n_heads / c.n_kv_heads);
  const int64_t lanes = rope.dim / 16;  // the decode kernel's lanes between a rotate-half pair
  ESA_CHECK(rope.dim % 16 == 0 && rope.dim <= c.head_dim && (lanes & (lanes - 1)) == 0,
            "--device cuda: {} rotary dimensions (the GPU attention takes 16, 32, 64 or 128)", rope.dim);
  ESA_CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  ESA_CUBLAS_CHECK(cublasCreate(&m.cublas));
  ESA_CUBLAS_CHECK(cublasSetStream(m.cublas, m.stream));
  // A workspace of our own: cuBLAS would otherwise allocate one on first use, which a captured
  // decode step cannot do. 32 MiB is what NVIDIA advises for Hopper.
  m.cublas_workspace.resize(size_t(32) << 20, "the cuBLAS workspace");
  ESA_CUBLAS_CHECK(cublasSetWorkspace(m.cublas, m.cublas_workspace.get(), m.cublas_workspace.size()));
  ESA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m.pinned_tokens), 2 * sizeof(int)));
  for (cudaEvent_t& e : m.step_done) ESA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));

  Buffer<float> staging(size_t(16) << 20, "the weight upload buffer");  // 64 MiB
  m.upload_f32(m.token_embd, weights.token_embd, "token_embd", staging);
  m.upload_f32(m.output_norm, weights.output_norm, "output_norm", staging);
  if (!weights.lm_head.empty()) m.upload_f32(m.lm_head, weights.lm_head, "lm_head", staging);
  m.layers.resize(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LayerWeights& w = weights.layers[l];
    DeviceLayer& d = m.layers[l];
    const std::string at = fmt::format("layer {} weights", l);
    m.upload_f32(d.attn_norm, w.attn_norm, at, staging);
    m.upload_f32(d.ffn_norm, w.ffn_norm, at, staging);
    m.upload_f32(d.bq, w.bq, at, staging);
    m.upload_f32(d.bk, w.bk, at, staging);
    m.upload_f32(d.bv, w.bv, at, staging);
    m.upload_f32(d.wq, w.wq, at, staging);
    m.upload_f32(d.wk, w.wk, at, staging);
    m.upload_f32(d.wv, w.wv, at, staging);
    m.upload_f32(d.wo, w.wo, at, staging);
    m.upload_f32(d.w_gate, w.w_gate, at, staging);
    m.upload_f32(d.w_up, w.w_up, at, staging);
    m.upload_f32(d.w_down, w.w_down, at, staging);
  }

  // RoPE at any position below 2^24 from two small tables (kernels/rope_tables.cuh).
  const ops::RopeSplitTables split = ops::make_rope_split_tables(rope, (int64_t(1) << 24) - 1);
  auto put = [&](Buffer<float>& dst, const std::vector<float>& src) {
    dst.resize(src.size(), "the RoPE tables");
    ESA_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice, m.stream));
  };
  put(m.rope_inv_freq, split.inv_freq);
  put(m.rope_low, split.low);
  put(m.rope_high, split.high);
  m.rope = {m.rope_inv_freq.get(), reinterpret_cast<const float2*>(m.rope_low.get()),
            reinterpret_cast<const float2*>(m.rope_high.get()), int(split.half), split.adjacent_pairs};
  ESA_CUDA_CHECK(cudaStreamSynchronize(m.stream));  // the tables' host vectors go out of scope
}

CudaForward::~CudaForward() = default;

size_t CudaForward::weight_bytes() const { return impl_->weight_bytes; }

std::shared_ptr<DeviceKvStorage> CudaForward::make_storage(bool kv_offload) const {
  return std::make_shared<CudaKvStorage>(impl_->config.n_layers, impl_->config.n_kv_heads * impl_->config.head_dim,
                                         kv_offload);
}

// One chunk of T tokens through every layer, launched on the stream without waiting for it:
// ids from `host_ids`, or (null) already in `ids` on the device (a decode step fed by the last
// step's argmax); the logits of the last `logit_rows` tokens left in `logits`. No host
// synchronisation unless a hook, a profile or a policy without a device half asks for one, so a
// decode step can be captured into a CUDA graph.
void CudaForward::Impl::enqueue_chunk(const int32_t* host_ids, int64_t T, KvCache& cache, const ForwardOptions& options,
                                      const ops::RopeAngles* angles, int64_t logit_rows, StageClock& clock) const {
  const Impl& m = *this;
  const ModelConfig& c = m.config;
  auto* storage = dynamic_cast<CudaKvStorage*>(cache.device_storage());
  ESA_CHECK(storage != nullptr && cache.contents() == KvContents::keys_only,
            "forward: a model on the GPU needs a cache made by its make_cache()");
  const int64_t H = c.hidden, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, kw = nkv * hd, qw = nh * hd;
  const int64_t start = cache.size(), S = start + T;
  const ForwardHook& hook = options.hook;
  attention::Policy* policy = options.policy;
  // The policy's GPU half chooses the rows on the device; without one (a wrapper that must be
  // called, options the device half does not take) the policy selects on the host.
  attention::DeviceSelector* selector = policy != nullptr ? m.selector_for(*policy, *storage) : nullptr;
  const bool host_select = policy != nullptr && selector == nullptr;
  const int64_t max_rows = policy != nullptr ? policy->options().budget.init + policy->options().budget.select : 0;
  m.ensure_scratch(T, host_select ? max_rows : 0);
  storage->ensure(std::max(S, cache.reserved_tokens()), start, m.stream);
  cudaStream_t s = m.stream;
  using KeyForm = CudaKvStorage::KeyForm;
  const KeyForm key_form = policy != nullptr && policy->reads_keys_before_rope() ? KeyForm::before_rope : KeyForm::rotated;
  storage->use_form(key_form, start, int(nkv), int(hd), m.rope, s);
  using Stage = StageTimes::Stage;
  clock.mark(Stage::kOther);

  auto emit = [&](const char* name, int64_t layer, const float* src, std::vector<int64_t> shape) {
    if (!hook) return;
    const Tensor t = m.download(src, std::move(shape));
    hook(name, layer, t.view());
  };
  auto emit_bf16 = [&](const char* name, int64_t layer, const bf16* src, std::vector<int64_t> shape) {
    if (!hook) return;
    const Tensor t = m.download_bf16(src, std::move(shape));
    hook(name, layer, t.view());
  };

  if (host_ids != nullptr) {
    ESA_CUDA_CHECK(cudaMemcpyAsync(m.ids.get(), host_ids, size_t(T) * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  }
  ESA_CUDA_CHECK(cuda::launch_embed_rows(m.token_embd.get(), m.ids.get(), int(T), int(H), m.x.get(), s));
  emit("embed", -1, m.x.get(), {T, H});

  // Keys before RoPE come back to the host cache only for a policy that selects there.
  float* host_keys = host_select ? m.pinned_keys(size_t(T * kw)) : nullptr;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const float eps = float(c.rms_eps);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const DeviceLayer& L = m.layers[size_t(l)];
    ESA_CUDA_CHECK(cuda::launch_rms_norm(m.x.get(), L.attn_norm.get(), int(T), int(H), eps, m.act.get(), s));
    emit_bf16("attn_norm", l, m.act.get(), {T, H});
    clock.mark(Stage::kProjections);
    m.gemm(L.wq.get(), qw, H, m.act.get(), T, m.q.get());
    m.gemm(L.wk.get(), kw, H, m.act.get(), T, m.k.get());
    m.gemm(L.wv.get(), kw, H, m.act.get(), T, m.v.get());
    if (L.bq.get() != nullptr) {
      ESA_CUDA_CHECK(cuda::launch_add_bias(m.q.get(), L.bq.get(), int(T), int(qw), s));
      ESA_CUDA_CHECK(cuda::launch_add_bias(m.k.get(), L.bk.get(), int(T), int(kw), s));
      ESA_CUDA_CHECK(cuda::launch_add_bias(m.v.get(), L.bv.get(), int(T), int(kw), s));
    }
    emit("q", l, m.q.get(), {T, nh, hd});
    emit("k", l, m.k.get(), {T, nkv, hd});
    emit("v", l, m.v.get(), {T, nkv, hd});
    clock.mark(Stage::kKvWrite);
    ESA_CUDA_CHECK(cuda::launch_rope(m.q.get(), m.q_local.get(), int(T), int(nh), int(hd), m.rope, start, 1, s));
    ESA_CUDA_CHECK(cuda::launch_rope(m.k.get(), m.k_rope.get(), int(T), int(nkv), int(hd), m.rope, start, 1, s));
    const float* k_stored = key_form == KeyForm::rotated ? m.k_rope.get() : m.k.get();
    ESA_CUDA_CHECK(cuda::launch_store_kv(k_stored, m.v.get(), int(T), int(kw), storage->k(l), storage->v(l), start, s));
    emit("q_rope", l, m.q_local.get(), {T, nh, hd});
    emit("k_rope", l, m.k_rope.get(), {T, nkv, hd});

    cuda::GatheredAttentionParams p;
    p.q_local = m.q_local.get();
    p.k = storage->k(l);
    p.v = storage->v(l);
    p.range_end = S;
    p.queries = int(T);
    p.causal = true;
    p.rope = m.rope;
    p.hq = int(nh);
    p.hkv = int(nkv);
    p.d = int(hd);
    p.scale = scale;
    p.out = m.attn.get();
    if (policy != nullptr) {
      ESA_CUDA_CHECK(cuda::launch_rope(m.q.get(), m.q_long.get(), int(T), int(nh), int(hd), m.rope,
                                       policy->options().query_position(), 0, s));
      p.q_long = m.q_long.get();
    }
    if (policy != nullptr) clock.mark(selector != nullptr ? Stage::kSelection : Stage::kHostSelection);
    if (selector != nullptr) {
      const attention::DeviceRows chosen = selector->select({l, T, start, m.q.get(), m.q_long.get(), storage->k(l)});
      p.rows = chosen.rows;
      p.n_rows = int(chosen.n_rows);
      p.rows_valid = chosen.rows_valid;
      p.range_begin = chosen.local_begin;
    } else if (policy != nullptr) {
      // The policy sees what it sees on the CPU: the chunk's queries before RoPE and a cache
      // holding the chunk's keys (float, as the CPU's; earlier rows the host lacks from the device).
      m.catch_up_key_mirror(cache, *storage, l, start);
      ESA_CUDA_CHECK(cudaMemcpyAsync(host_keys, m.k.get(), size_t(T * kw) * sizeof(float), cudaMemcpyDeviceToHost, s));
      const Tensor q_host = m.download(m.q.get(), {T, nh, hd});  // synchronises: host_keys is in
      cache.append(l, host_keys, nullptr, nullptr, T);
      const attention::LayerInputs in{l, q_host.view(), &cache, &m.rope_table, angles};
      const attention::Selection sel = policy->select(in);
      ESA_CHECK(sel.long_tokens.size() == 1,
                "--device cuda: one long-branch list per KV head (--heads individual) is not on the GPU yet");
      const std::vector<int64_t>& list = sel.long_tokens[0];
      ESA_CHECK(sel.local_begin >= 0 && sel.local_begin <= start && int64_t(list.size()) <= max_rows,
                "attention policy: {} long-branch tokens (budget {}), local branch from {} (chunk at {})", list.size(),
                max_rows, sel.local_begin, start);
      std::vector<int> rows(list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        ESA_CHECK(list[i] >= 0 && list[i] < sel.local_begin,
                  "attention policy: long-branch token {} is not before the local branch ({})", list[i], sel.local_begin);
        rows[i] = int(list[i]);
      }
      if (!rows.empty()) {
        ESA_CUDA_CHECK(cudaMemcpyAsync(m.rows.get(), rows.data(), rows.size() * sizeof(int), cudaMemcpyHostToDevice, s));
      }
      p.rows = m.rows.get();
      p.n_rows = int(rows.size());
      p.range_begin = sel.local_begin;  // (a copy from pageable memory has read `rows` when it returns)
    }
    clock.mark(Stage::kAttention);
    // The range's keys at their positions: the cache's own, or the layer's window turned from it.
    if (key_form == KeyForm::rotated) {
      p.k_rotated = p.k;
    } else {
      p.k_rotated = storage->window(l).cover(p.k, p.range_begin, S, int(nkv), int(hd), m.rope, s);
      p.k_rotated_first_row = p.range_begin;
    }
    if (T >= kChunkFlashQueries) {
      m.attend_chunk(p.k, p.k_rotated + (p.range_begin - p.k_rotated_first_row) * kw, p.v, storage->on_host(), T, S,
                     p.range_begin, p.rows, p.n_rows, p.rows_valid, scale, m.attn.get());
    } else {
      const int64_t total = p.n_rows + (p.range_end - p.range_begin);
      m.partial.resize(cuda::gathered_attention_partial_floats(total, p.hq, p.hkv, p.d, p.queries), "attention scratch");
      p.partial = m.partial.get();
      ESA_CUDA_CHECK(cuda::launch_gathered_attention(p, s));
    }
    if (hook && policy != nullptr) {
      int n_valid = p.n_rows;
      if (p.rows_valid != nullptr) {
        ESA_CUDA_CHECK(cudaMemcpyAsync(&n_valid, p.rows_valid, sizeof(int), cudaMemcpyDeviceToHost, s));
        ESA_CUDA_CHECK(cudaStreamSynchronize(s));
      }
      std::vector<int> rows(static_cast<size_t>(n_valid));
      if (!rows.empty()) {
        ESA_CUDA_CHECK(cudaMemcpyAsync(rows.data(), p.rows, rows.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
        ESA_CUDA_CHECK(cudaStreamSynchronize(s));
      }
      Tensor t({int64_t(rows.size())});
      for (size_t i = 0; i < rows.size(); ++i) t.data()[i] = float(rows[i]);
      hook("long_rows", l, t.view());
    }
    emit("attn", l, m.attn.get(), {T, nh, hd});
    clock.mark(Stage::kOther);
    ESA_CUDA_CHECK(cuda::launch_to_bf16(m.attn.get(), m.act.get(), T * qw, s));
    clock.mark(Stage::kProjections);
    m.gemm(L.wo.get(), H, qw, m.act.get(), T, m.proj.get());
    clock.mark(Stage::kOther);
    emit("attn_out", l, m.proj.get(), {T, H});
    ESA_CUDA_CHECK(cuda::launch_add(m.x.get(), m.proj.get(), T * H, s));

    ESA_CUDA_CHECK(cuda::launch_rms_norm(m.x.get(), L.ffn_norm.get(), int(T), int(H), eps, m.act.get(), s));
    clock.mark(Stage::kProjections);
    m.gemm(L.w_gate.get(), c.ffn, H, m.act.get(), T, m.gate.get());
    m.gemm(L.w_up.get(), c.ffn, H, m.act.get(), T, m.up.get());
    clock.mark(Stage::kOther);
    ESA_CUDA_CHECK(cuda::launch_swiglu(m.gate.get(), m.up.get(), T * c.ffn, m.act.get(), s));
    clock.mark(Stage::kProjections);
    m.gemm(L.w_down.get(), H, c.ffn, m.act.get(), T, m.proj.get());
    clock.mark(Stage::kOther);
    emit("mlp_out", l, m.proj.get(), {T, H});
    ESA_CUDA_CHECK(cuda::launch_add(m.x.get(), m.proj.get(), T * H, s));
    emit("hidden", l, m.x.get(), {T, H});
  }
  if (!host_select) {  // the host cache tracks the lengths only
    for (int64_t l = 0; l < c.n_layers; ++l) cache.append(l, nullptr, nullptr, nullptr, T);
  }

  const int64_t rows = logit_rows;
  if (rows > 0) {
    ESA_CUDA_CHECK(cuda::launch_rms_norm(m.x.get() + (T - rows) * H, m.output_norm.get(), int(rows), int(H), eps,
                                         m.act.get(), s));
    emit_bf16("final_norm", -1, m.act.get(), {rows, H});
    m.logits.resize(size_t(rows * c.vocab), "the logits");
    clock.mark(Stage::kProjections);
    m.gemm(m.output_weight(), c.vocab, H, m.act.get(), rows, m.logits.get());
    clock.mark(Stage::kOther);
  }
}

void CudaForward::forward_chunk(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options,
                                const ops::RopeAngles* angles, int64_t logit_rows, Tensor& logits) const {
  const Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);  // one chunk at a time: the scratch is shared
  StageClock clock(options.profile, m.stream);
  m.enqueue_chunk(ids.data(), int64_t(ids.size()), cache, options, angles, logit_rows, clock);
  if (logit_rows > 0) logits = m.download(m.logits.get(), {logit_rows, m.config.vocab});
  ESA_CUDA_CHECK(cudaStreamSynchronize(m.stream));
  clock.finish();
}

bool CudaForward::decodes_on_device(const ForwardOptions& options, KvCache& cache) const {
  auto* storage = dynamic_cast<CudaKvStorage*>(cache.device_storage());
  if (options.hook || storage == nullptr) return false;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return options.policy == nullptr || impl_->selector_for(*options.policy, *storage) != nullptr;
}

namespace {

// Ends a stream capture left open by an exception (the stream is unusable until then).
struct CaptureGuard {
  cudaStream_t stream;
  bool open = false;
  ~CaptureGuard() {
    if (!open) return;
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream, &g);
    if (g != nullptr) cudaGraphDestroy(g);
    cudaGetLastError();
  }
};

}  // namespace

int64_t CudaForward::decode_greedy(int32_t first, int64_t steps, KvCache& cache, const ForwardOptions& options,
                                   const std::function<bool(int32_t)>& on_token) const {
  ESA_CHECK(decodes_on_device(options, cache), "decode_greedy: a hook or a policy without a GPU half needs the host loop");
  const Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  ESA_CHECK(first >= 0 && first < m.config.vocab, "forward: token id {} is outside the vocabulary [0, {})", first,
            m.config.vocab);
  if (steps <= 0) return 0;
  auto* storage = dynamic_cast<CudaKvStorage*>(cache.device_storage());
  ESA_CHECK(storage != nullptr, "forward: a model on the GPU needs a cache made by its make_cache()");
  cudaStream_t s = m.stream;
  // Room for every step before the first: growing the cache synchronises.
  const int64_t start = cache.size();
  storage->ensure(std::max(start + steps, cache.reserved_tokens()), start, s);
  m.ensure_scratch(1, 0);
  ESA_CUDA_CHECK(cudaMemcpyAsync(m.ids.get(), &first, sizeof(int32_t), cudaMemcpyHostToDevice, s));
  ESA_CUDA_CHECK(cudaStreamSynchronize(s));  // `first` is on the caller's stack
  const bool graphs = options.cuda_graphs && options.profile == nullptr;

  // Step i feeds the token in ids[0] (step i - 1's, or `first`) and leaves its own there and in
  // slot i % 2. The host launches step i before it reads step i - 1's token, so the device never
  // waits for the host; a stop at step i - 1 then drops step i's row from the cache.
  auto launch_step = [&](int64_t i) {
    StageClock clock(options.profile, s);
    const int slot = int(i % 2);
    // Frees wait until the steps that could still read the memory are done (read_step below).
    cuda::DeferFrees defer;
    CaptureGuard guard{s};
    if (graphs && i > 0) {  // step 0 runs as launched: its first use sizes the scratch
      ESA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
      guard.open = true;
    }
    m.enqueue_chunk(nullptr, 1, cache, options, nullptr, 1, clock);
    ESA_CUDA_CHECK(cuda::launch_argmax_rows(m.logits.get(), 1, m.config.vocab, m.ids.get(), s));
    ESA_CUDA_CHECK(cudaMemcpyAsync(m.pinned_tokens + slot, m.ids.get(), sizeof(int), cudaMemcpyDeviceToHost, s));
    if (guard.open) {
      cudaGraph_t g = nullptr;
      guard.open = false;
      ESA_CUDA_CHECK(cudaStreamEndCapture(s, &g));
      cudaGraphExec_t& exec = m.step_graph[slot];
      cudaGraphExecUpdateResultInfo info{};
      if (exec == nullptr || cudaGraphExecUpdate(exec, g, &info) != cudaSuccess) {
        cudaGetLastError();  // a graph of another shape (a buffer regrown): instantiate afresh
        if (exec != nullptr) ESA_CUDA_CHECK(cudaGraphExecDestroy(exec));
        exec = nullptr;
        const cudaError_t made = cudaGraphInstantiate(&exec, g, 0);
        cudaGraphDestroy(g);
        ESA_CUDA_CHECK(made);
      } else {
        ESA_CUDA_CHECK(cudaGraphDestroy(g));
      }
      ESA_CUDA_CHECK(cudaGraphLaunch(exec, s));
    }
    ESA_CUDA_CHECK(cudaEventRecord(m.step_done[slot], s));
    clock.finish();
  };
  // Frees queued while step i was launched: its own graph may read memory freed late in its
  // capture, so they wait for step i itself (FIFO: queued_by[i % 2] entries at the front).
  size_t queued_by[2] = {0, 0};
  auto read_step = [&](int64_t i) {
    ESA_CUDA_CHECK(cudaEventSynchronize(m.step_done[i % 2]));
    const size_t n = queued_by[i % 2];
    cuda::release_deferred_frees(n);
    queued_by[i % 2] = 0;
    queued_by[(i + 1) % 2] -= std::min(queued_by[(i + 1) % 2], n);
    return int32_t(m.pinned_tokens[i % 2]);
  };

  int64_t produced = 0;
  try {
    for (int64_t i = 0; i < steps; ++i) {
      check_interrupt();
      launch_step(i);
      queued_by[i % 2] = cuda::deferred_free_count();
      if (i == 0) continue;
      if (!on_token(read_step(i - 1))) {
        read_step(i);
        cache.truncate(cache.size() - 1);  // step i fed a token the caller refused
        return produced;
      }
      ++produced;
    }
    if (on_token(read_step(steps - 1))) ++produced;
  } catch (...) {
    cudaStreamSynchronize(s);
    cudaGetLastError();
    cuda::release_deferred_frees(cuda::deferred_free_count());
    throw;
  }
  return produced;
}

}  // namespace esa
