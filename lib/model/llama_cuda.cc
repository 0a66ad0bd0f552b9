#include "model/llama_cuda.h"

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

#include "attention/policy.h"
#include "attention/projection.h"
#include "attention/scoring_policies.h"
#include "core/cuda_check.h"
#include "core/error.h"
#include "block_select.cuh"
#include "chunk_attention.cuh"
#include "esa_select.cuh"
#include "flash_attention.cuh"
#include "gathered_attention.cuh"
#include "model/esa_cuda.h"
#include "model/llama.h"
#include "model_ops.cuh"

namespace esa {
namespace {

using bf16 = __nv_bfloat16;

// Chunks of at least this many queries attend by the flash kernel (K/V tiles read once per
// query block); fewer (decode) by the split-K kernel.
constexpr int64_t kChunkFlashQueries = 8;

// Where a Buffer lives: device memory, or page-locked host memory mapped into the device's
// address space (kernels read it over the bus; unified addressing makes the pointer the same).
enum class Memory { device, mapped_host };

// Memory that names what it is for when it does not fit.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t n, const char* what, Memory memory = Memory::device) : memory_(memory) { resize(n, what); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_), memory_(o.memory_) { o.ptr_ = nullptr, o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    std::swap(memory_, o.memory_);
    return *this;
  }
  ~Buffer() { release(); }
  /// Reallocates (contents lost) when n exceeds the size.
  void resize(size_t n, const char* what) {
    if (n <= n_ && ptr_ != nullptr) return;
    release();
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(T);
    void* p = nullptr;
    const cudaError_t status = memory_ == Memory::device
                                   ? cudaMalloc(&p, bytes)
                                   : cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
    if (status != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      ESA_CHECK(memory_ == Memory::device, "out of page-locked host memory: {} needs {:.1f} MiB ({})", what,
                double(bytes) / (1 << 20), cudaGetErrorString(status));
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      ESA_FAIL("out of GPU memory: {} needs {:.1f} MiB, {:.1f} MiB free of {:.1f} MiB", what, double(bytes) / (1 << 20),
               double(free_bytes) / (1 << 20), double(total) / (1 << 20));
    }
    ptr_ = static_cast<T*>(p);
    n_ = n;
  }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  void release() {
    if (memory_ == Memory::device) {
      cudaFree(ptr_);
    } else {
      cudaFreeHost(ptr_);
    }
    ptr_ = nullptr;
    n_ = 0;
  }

  T* ptr_ = nullptr;
  size_t n_ = 0;
  Memory memory_ = Memory::device;
};

// esa's state for one sequence on the device: its projection (uploaded from the policy's) and
// the compressed keys k' = Wk k + bk of the first valid[l] tokens of every layer.
struct DeviceEsa {
  const attention::Projection* source = nullptr;
  int64_t dim = 0, capacity = 0;
  std::vector<Buffer<bf16>> wq, wk, kc;  // [dim, in_dim], [dim, in_dim], [capacity, dim] per layer
  std::vector<Buffer<float>> bq, bk;
  std::vector<int64_t> valid;
};

// quest's state for one sequence on the device: per layer, the page bounds [capacity, 2, width]
// (max | min per channel, keys before RoPE) of the middle tokens [origin, ...), the first
// `valid` pages complete (the last page of a call may be partial and is recomputed next time).
struct DeviceQuest {
  int64_t capacity = 0;  // pages
  std::vector<Buffer<float>> bounds;
  std::vector<int64_t> valid, origin;
};

// infllm's state for one sequence on the device, per layer: the attention weight every token
// received while in the local window [tokens, kv_heads], and the keys of the memory blocks cut
// from the middle tokens [origin, ...) so far [blocks, kv_heads * head_dim].
struct DeviceInfllm {
  int64_t token_capacity = 0, block_capacity = 0;
  std::vector<Buffer<float>> received, block_keys;
  std::vector<int64_t> blocks, origin;
};

// The bf16 K and V of every layer, [capacity, kv_heads * head_dim] each, grown on demand, and the
// same keys rotated to their own positions (the local branch reads those: no RoPE per row and
// step; +50% of the cache, as the CPU's KvCache keeps); in device memory, or (kv_offload) in
// mapped host memory that the kernels read over the bus.
class CudaKvStorage final : public DeviceKvStorage {
 public:
  CudaKvStorage(int64_t layers, int64_t width, bool kv_offload)
      : width_(width),
        memory_(kv_offload ? Memory::mapped_host : Memory::device),
        k_(size_t(layers)),
        v_(size_t(layers)),
        k_rotated_(size_t(layers)) {}
  bool on_host() const { return memory_ == Memory::mapped_host; }
  size_t bytes_allocated() const override { return 3 * size_t(layers()) * size_t(capacity_ * width_) * sizeof(bf16); }
  int64_t layers() const { return int64_t(k_.size()); }
  int64_t capacity() const { return capacity_; }
  bf16* k(int64_t layer) const { return k_[size_t(layer)].get(); }
  bf16* v(int64_t layer) const { return v_[size_t(layer)].get(); }
  bf16* k_rotated(int64_t layer) const { return k_rotated_[size_t(layer)].get(); }
  /// Room for `tokens` rows, keeping the first `keep` rows of every layer.
  void ensure(int64_t tokens, int64_t keep, cudaStream_t stream) {
    if (tokens <= capacity_) return;
    const int64_t cap = std::max(tokens, capacity_ * 3 / 2);
    const std::string what = fmt::format("the KV cache ({} tokens)", cap);
    for (int64_t l = 0; l < layers(); ++l) {
      for (auto* table : {&k_, &v_, &k_rotated_}) {
        Buffer<bf16> grown(size_t(cap * width_), what.c_str(), memory_);
        if (keep > 0) {
          ESA_CUDA_CHECK(cudaMemcpyAsync(grown.get(), (*table)[size_t(l)].get(), size_t(keep * width_) * sizeof(bf16),
                                         cudaMemcpyDefault, stream));
        }
        ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
        (*table)[size_t(l)] = std::move(grown);
      }
    }
    capacity_ = cap;
  }

 private:
  int64_t width_;
  Memory memory_;
  int64_t capacity_ = 0;
  std::vector<Buffer<bf16>> k_, v_, k_rotated_;

 public:
  DeviceEsa esa;
  DeviceQuest quest;
  DeviceInfllm infllm;
};

struct DeviceLayer {
  Buffer<float> attn_norm, ffn_norm, bq, bk, bv;
  Buffer<bf16> wq, wk, wv, wo, w_gate, w_up, w_down;
};

}  // namespace

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
  // Scratch, grown to the largest chunk seen.
  mutable int64_t scratch_tokens = 0;
  mutable Buffer<int> ids, rows;
  mutable Buffer<float> x, q, k, v, q_local, q_long, attn, proj, gate, up, partial, logits, k_rope;
  mutable Buffer<bf16> act;
  // Prefill-chunk attention (attend_chunk).
  mutable Buffer<bf16> q_local16, q_long16, k_range16, v_range16, k_rows16, v_rows16;
  mutable Buffer<float> flash_partial;

  mutable float* pinned = nullptr;  // page-locked host memory: device-to-host copies stay asynchronous
  mutable size_t pinned_n = 0;

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

  // Y [T, out] = X [T, in] . W^T (model/esa_cuda.h).
  void gemm(const bf16* w, int64_t out, int64_t in, const bf16* x_in, int64_t T, float* y) const {
    gemm_bf16(cublas, w, out, in, x_in, T, y);
  }

  // Attention of a chunk of T queries (at positions S - T ...) over the listed rows (device
  // `rows`, n_rows of them; queries q_long) and the range [range_begin, S) (causal; queries
  // q_local), both [T, heads, d] float, by the flash kernel (kernels/flash_attention.cuh) after
  // the listed rows are gathered; the range reads the cache's rotated keys. `range_on_host`: the
  // cache is in mapped host memory (--kv-offload), so the range's keys and values are copied to
  // the device once rather than read over the bus by every query block.
  void attend_chunk(const bf16* k_cache, const bf16* k_rotated, const bf16* v_cache, bool range_on_host, int64_t T,
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
    const bf16* k_range = k_rotated + range_begin * kw;
    const bf16* v_range = v_cache + range_begin * kw;
    if (range_on_host && R > 0) {
      k_range16.resize(size_t(R * kw), "attention scratch (keys)");
      v_range16.resize(size_t(R * kw), "attention scratch (values)");
      ESA_CUDA_CHECK(cudaMemcpyAsync(k_range16.get(), k_range, size_t(R * kw) * sizeof(bf16), cudaMemcpyDefault, s));
      ESA_CUDA_CHECK(cudaMemcpyAsync(v_range16.get(), v_range, size_t(R * kw) * sizeof(bf16), cudaMemcpyDefault, s));
      k_range = k_range16.get();
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

  mutable Buffer<float> esa_y, esa_qfold, esa_qc, esa_scores, esa_importance;
  mutable Buffer<bf16> esa_q16, esa_qc16;
  mutable Buffer<unsigned int> esa_row_max;
  mutable Buffer<char> topk_workspace;

  // Which selection runs on the device: esa with uniform heads and a projection the kernels take
  // (d' a multiple of 8 up to 256), oracle, quest and infllm with uniform heads; otherwise
  // (streaming; an esa projection the kernels do not take; a wrapper such as --diag's, whose
  // select() must run) the policy selects on the host from the host's key cache (per-KV-head
  // lists are refused there: not on the GPU yet).
  enum class DeviceSelection { none, esa, oracle, quest, infllm };
  static DeviceSelection device_selection(const attention::Policy* policy) {
    if (policy == nullptr || !policy->replaceable_on_device()) return DeviceSelection::none;
    const attention::PolicyOptions& o = policy->options();
    if (o.heads != attention::HeadMode::uniform || o.eps > 1024) return DeviceSelection::none;
    if (o.kind == attention::PolicyKind::oracle) return DeviceSelection::oracle;
    if (o.kind == attention::PolicyKind::quest) return DeviceSelection::quest;
    if (o.kind == attention::PolicyKind::infllm) return DeviceSelection::infllm;
    if (policy->esa_projection() == nullptr) return DeviceSelection::none;
    const attention::Projection& p = *policy->esa_projection();
    if (p.layers.empty()) return DeviceSelection::none;
    for (const auto& layer : p.layers) {
      if (layer.dim % 8 != 0 || layer.dim > 256 || layer.dim != p.layers[0].dim) return DeviceSelection::none;
    }
    return DeviceSelection::esa;
  }

  // Uploads the projection (once per sequence) and extends layer l's compressed keys to S rows.
  void update_compressed_keys(DeviceEsa& e, const attention::Projection& proj, const bf16* k_cache, int64_t l,
                              int64_t start, int64_t S) const {
    const int64_t kw = config.n_kv_heads * config.head_dim;
    ESA_CHECK(proj.in_dim == kw && int64_t(proj.layers.size()) >= config.n_layers,
              "esa: projection input dimension {} and {} layers for a model of {} x {} and {} layers", proj.in_dim,
              proj.layers.size(), config.n_kv_heads, config.head_dim, config.n_layers);
    if (e.source != &proj) {
      e = DeviceEsa();
      e.source = &proj;
      e.dim = proj.layers[0].dim;
      Buffer<float> staging(size_t(e.dim * kw), "the esa projection");
      auto put16 = [&](Buffer<bf16>& dst, const std::vector<float>& w) {
        dst.resize(w.size(), "the esa projection");
        ESA_CUDA_CHECK(cudaMemcpyAsync(staging.get(), w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
        ESA_CUDA_CHECK(cuda::launch_to_bf16(staging.get(), dst.get(), int64_t(w.size()), stream));
        ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
      };
      auto put32 = [&](Buffer<float>& dst, const std::vector<float>& b) {
        dst.resize(b.size(), "the esa projection");
        ESA_CUDA_CHECK(cudaMemcpyAsync(dst.get(), b.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
      };
      const size_t n = size_t(config.n_layers);
      e.wq.resize(n), e.wk.resize(n), e.bq.resize(n), e.bk.resize(n), e.kc.resize(n);
      e.valid.assign(n, 0);
      for (size_t i = 0; i < n; ++i) {
        put16(e.wq[i], proj.layers[i].wq);
        put16(e.wk[i], proj.layers[i].wk);
        put32(e.bq[i], proj.layers[i].bq);
        put32(e.bk[i], proj.layers[i].bk);
      }
    }
    if (S > e.capacity) {  // grow every layer's k' (keeping the valid rows)
      const int64_t cap = std::max(S, e.capacity * 3 / 2);
      for (size_t i = 0; i < e.kc.size(); ++i) {
        Buffer<bf16> grown(size_t(cap * e.dim), "esa's compressed keys");
        if (e.valid[i] > 0) {
          ESA_CUDA_CHECK(cudaMemcpyAsync(grown.get(), e.kc[i].get(), size_t(e.valid[i] * e.dim) * sizeof(bf16),
                                         cudaMemcpyDeviceToDevice, stream));
        }
        ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
        e.kc[i] = std::move(grown);
      }
      e.capacity = cap;
    }
    int64_t& valid = e.valid[size_t(l)];
    valid = std::min(valid, start);  // a truncated cache drops its tail
    const int64_t n_new = S - valid;
    if (n_new <= 0) return;
    esa_y.resize(size_t(n_new * e.dim), "esa scratch");
    gemm(e.wk[size_t(l)].get(), e.dim, kw, k_cache + valid * kw, n_new, esa_y.get());
    ESA_CUDA_CHECK(cuda::launch_add_bias(esa_y.get(), e.bk[size_t(l)].get(), int(n_new), int(e.dim), stream));
    ESA_CUDA_CHECK(cuda::launch_to_bf16(esa_y.get(), e.kc[size_t(l)].get() + valid * e.dim, n_new * e.dim, stream));
    valid = S;
  }

  // What a selection on the device leaves for the attention: `n_rows` long-branch rows in `rows`
  // (initial tokens, then the chosen middle tokens, ascending), of which the first *rows_valid
  // count when rows_valid is set (quest: a chosen partial last page), and the local branch's first
  // token.
  struct DeviceRows {
    int64_t n_rows = 0, local_begin = 0;
    const int* rows_valid = nullptr;
  };

  // The selection of layer l for a chunk of T queries on the device (PAPER.md section 2; the
  // host's EsaPolicy, OraclePolicy, QuestPolicy and InfllmPolicy::select). Queries in the score
  // space are q_long (rotated) or q (plain); keys before RoPE are the cache's (bf16).
  DeviceRows select_on_device(const attention::Policy& policy, DeviceSelection how, CudaKvStorage& storage, int64_t l,
                              int64_t T, int64_t start) const {
    const attention::PolicyOptions& o = policy.options();
    const attention::ContextSplit split = attention::split_context(o.budget, start);
    const int64_t m0 = split.init_end, m1 = split.local_begin, middle = m1 - m0;
    // infllm's window weights and blocks follow every step, whether it selects or not.
    if (how == DeviceSelection::infllm) update_blocks(storage.infllm, storage.k(l), l, T, start, m0, m1);
    const bool all = middle <= o.budget.select;
    ESA_CUDA_CHECK(cuda::launch_iota(rows.get(), int(all ? m1 : m0), stream));  // the initial tokens' rows
    if (all) return {m1, m1, nullptr};
    const int64_t hq = config.n_heads, hkv = config.n_kv_heads, d = config.head_dim, kw = hkv * d;
    const float* q_space = o.score_space == attention::ScoreSpace::rotated ? q_long.get() : q.get();
    if (how == DeviceSelection::quest) return select_pages(o, storage.quest, storage.k(l), l, T, start, m0, m1, q_space);
    if (how == DeviceSelection::infllm) return select_blocks(o, storage.infllm, l, T, m0, m1, q_space);
    // q~: the chunk's queries folded over each KV group; esa scores q' = Wq q~ + bq against k',
    // oracle q~ against the keys themselves.
    esa_qfold.resize(size_t(T * kw), "selection scratch");
    ESA_CUDA_CHECK(cuda::launch_gqa_fold(q_space, int(T), int(hq), int(hkv), int(d), esa_qfold.get(), stream));
    const float* qc = esa_qfold.get();
    const bf16* kc = storage.k(l);
    int64_t dim = kw;
    if (how == DeviceSelection::esa) {
      const DeviceEsa& e = storage.esa;
      dim = e.dim;
      esa_q16.resize(size_t(T * kw), "selection scratch");
      esa_qc.resize(size_t(T * dim), "selection scratch");
      ESA_CUDA_CHECK(cuda::launch_to_bf16(esa_qfold.get(), esa_q16.get(), T * kw, stream));
      gemm(e.wq[size_t(l)].get(), dim, kw, esa_q16.get(), T, esa_qc.get());
      ESA_CUDA_CHECK(cuda::launch_add_bias(esa_qc.get(), e.bq[size_t(l)].get(), int(T), int(dim), stream));
      qc = esa_qc.get();
      kc = e.kc[size_t(l)].get();
    }
    // Importance over the middle tokens (model/esa_cuda.h picks the kernels by T and d').
    esa_scores.resize(esa_score_floats(T, dim, middle), "selection scores");
    esa_importance.resize(size_t(middle), "selection scores");
    esa_row_max.resize(esa_row_max_count(T), "selection scores");
    esa_qc16.resize(size_t(T * dim), "selection scratch");
    const EsaImportanceScratch scratch{esa_scores.get(), esa_qc16.get(), esa_row_max.get()};
    esa_importance_cuda(cublas, stream, qc, kc, dim, T, m0, m1, int(o.eps), scratch, esa_importance.get());
    top_k(esa_importance.get(), middle, o.budget.select, int(m0), rows.get() + m0);
    return {m0 + o.budget.select, m1, nullptr};
  }

  // indices [k] = the k largest of values [n] (ties: lower index) + offset, ascending.
  void top_k(const float* values, int64_t n, int64_t k, int offset, int* indices) const {
    const size_t ws = cuda::top_k_workspace_bytes(n);
    if (ws > topk_workspace.size()) {
      topk_workspace.resize(ws, "the top-k workspace");
      ESA_CUDA_CHECK(cudaMemsetAsync(topk_workspace.get(), 0, topk_workspace.size(), stream));
    }
    const cuda::TopKParams tp{values, n, int(k), offset, indices, topk_workspace.get()};
    ESA_CUDA_CHECK(cuda::launch_top_k(tp, stream));
  }

  mutable Buffer<int> chosen_units;

  // The block-granular policies' choice (infllm's blocks, quest's pages): units [n_units] of
  // `unit` middle tokens from m0, each scored by max over the T queries q [T, width] of
  // q_t . meta_u (meta [n_units, width]), the `pick` best expanded into rows after the initial
  // tokens; rows_valid (optional) gets the count of real rows (a partial last unit).
  void choose_units(const float* q, const float* meta, int64_t width, int64_t T, int64_t n_units, int64_t pick,
                    int64_t unit, int64_t m0, int64_t m1, int* rows_valid) const {
    esa_scores.resize(chunk_max_dot_floats(T, n_units), "selection scores");
    esa_importance.resize(size_t(n_units), "selection scores");
    chunk_max_dot_cuda(cublas, stream, q, meta, width, T, n_units, esa_scores.get(), esa_importance.get());
    chosen_units.resize(size_t(pick), "selection scratch");
    top_k(esa_importance.get(), n_units, pick, 0, chosen_units.get());
    cuda::ExpandUnitsParams xp;
    xp.units = chosen_units.get();
    xp.k = int(pick);
    xp.unit = int(unit);
    xp.begin = m0;
    xp.end = m1;
    xp.base = int(m0);
    xp.rows = rows.get() + m0;
    xp.rows_valid = rows_valid;
    ESA_CUDA_CHECK(cuda::launch_expand_units(xp, stream));
  }

  mutable Buffer<float> infllm_qbar, infllm_scratch;

  // infllm (the host's InfllmPolicy, whose file comment gives the approximation): the chunk's mean
  // query (before RoPE) spreads a softmax over the window and the chunk, [local_begin, S), per KV
  // head, and every token there accumulates the weight it receives; each block of kInfllmBlock
  // middle tokens that has wholly left the window gets a key: the mean of its kInfllmRepresentatives
  // most-weighted tokens' keys.
  void update_blocks(DeviceInfllm& st, const bf16* k_cache, int64_t l, int64_t T, int64_t start, int64_t m0,
                     int64_t m1) const {
    constexpr int64_t block = attention::kInfllmBlock;
    const int64_t hq = config.n_heads, hkv = config.n_kv_heads, d = config.head_dim, kw = hkv * d, S = start + T;
    const int64_t full = std::max<int64_t>(m1 - m0, 0) / block;
    if (st.received.empty()) {
      st.received.resize(size_t(config.n_layers));
      st.block_keys.resize(size_t(config.n_layers));
      st.blocks.assign(size_t(config.n_layers), 0);
      st.origin.assign(size_t(config.n_layers), -1);
    }
    auto grow = [&](std::vector<Buffer<float>>& tables, int64_t& capacity, int64_t needed, int64_t row, const char* what) {
      if (needed <= capacity) return;
      const int64_t cap = std::max(needed, capacity * 3 / 2);
      for (auto& table : tables) {
        Buffer<float> grown(size_t(std::max<int64_t>(cap * row, 1)), what);
        if (capacity > 0) {
          ESA_CUDA_CHECK(cudaMemcpyAsync(grown.get(), table.get(), size_t(capacity * row) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
        }
        ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
        table = std::move(grown);
      }
      capacity = cap;
    };
    grow(st.received, st.token_capacity, S, hkv, "infllm's window weights");
    grow(st.block_keys, st.block_capacity, std::max<int64_t>(full, 1), kw, "infllm's block keys");
    float* received = st.received[size_t(l)].get();
    // The chunk's tokens start with no weight (a truncated cache's old rows are overwritten).
    ESA_CUDA_CHECK(cudaMemsetAsync(received + start * hkv, 0, size_t(T * hkv) * sizeof(float), stream));
    if (S > m1 && T > 0) {
      const int64_t group = hq / hkv;
      infllm_qbar.resize(size_t(kw), "selection scratch");
      infllm_scratch.resize(size_t(hkv * (S - m1)), "selection scratch");
      ESA_CUDA_CHECK(cuda::launch_fold_mean(q.get(), int(T), int(hq), int(hkv), int(d),
                                            float(1.0 / (double(T * group) * std::sqrt(double(d)))), infllm_qbar.get(),
                                            stream));
      cuda::WindowWeightsParams wp;
      wp.qbar = infllm_qbar.get();
      wp.keys = k_cache;
      wp.hkv = int(hkv);
      wp.d = int(d);
      wp.begin = m1;
      wp.end = S;
      wp.scratch = infllm_scratch.get();
      wp.received = received;
      ESA_CUDA_CHECK(cuda::launch_window_weights(wp, stream));
    }
    // Blocks stay while the middle starts at the same token and the cache still holds their rows.
    int64_t& blocks = st.blocks[size_t(l)];
    if (st.origin[size_t(l)] != m0) blocks = 0;
    st.origin[size_t(l)] = m0;
    blocks = std::min({blocks, full, std::max<int64_t>(start - m0, 0) / block});
    cuda::BlockKeysParams bp;
    bp.received = received;
    bp.keys = k_cache;
    bp.hkv = int(hkv);
    bp.d = int(d);
    bp.begin = m0;
    bp.block = int(block);
    bp.reps = int(attention::kInfllmRepresentatives);
    bp.block_from = blocks;
    bp.block_to = full;
    bp.block_keys = st.block_keys[size_t(l)].get();
    ESA_CUDA_CHECK(cuda::launch_block_keys(bp, stream));
    blocks = full;
  }

  // infllm's long branch: the blocks' keys scored by the chunk's mean query in the score space,
  // the best (select - rem) / kInfllmBlock blocks, then the rem middle tokens not in a block yet.
  DeviceRows select_blocks(const attention::PolicyOptions& o, const DeviceInfllm& st, int64_t l, int64_t T, int64_t m0,
                           int64_t m1, const float* q_space) const {
    constexpr int64_t block = attention::kInfllmBlock;
    const int64_t hq = config.n_heads, hkv = config.n_kv_heads, d = config.head_dim, kw = hkv * d;
    const int64_t select = o.budget.select, blocks = st.blocks[size_t(l)];
    const int64_t rem_begin = m0 + blocks * block, rem = m1 - rem_begin;
    if (rem >= select) {  // only with select < one block: the most recent ones
      ESA_CUDA_CHECK(cuda::launch_iota(rows.get() + m0, int(select), stream, int(m1 - select)));
      return {m0 + select, m1, nullptr};
    }
    const int64_t pick = (select - rem) / block;
    if (pick > 0) {
      infllm_qbar.resize(size_t(kw), "selection scratch");
      ESA_CUDA_CHECK(cuda::launch_fold_mean(q_space, int(T), int(hq), int(hkv), int(d), float(1.0 / double(T * hq)),
                                            infllm_qbar.get(), stream));
      choose_units(infllm_qbar.get(), st.block_keys[size_t(l)].get(), kw, 1, blocks, pick, block, m0, m1, nullptr);
    }
    ESA_CUDA_CHECK(cuda::launch_iota(rows.get() + m0 + pick * block, int(rem), stream, int(rem_begin)));
    return {m0 + pick * block + rem, m1, nullptr};
  }

  mutable Buffer<float> quest_q;
  mutable Buffer<int> quest_rows_valid;

  // quest (the host's QuestPolicy::select): pages of kQuestPage middle tokens, bounds kept per
  // layer and extended by the pages completed since the last call, scored by the signed folded
  // queries, the select / kQuestPage best pages' tokens.
  DeviceRows select_pages(const attention::PolicyOptions& o, DeviceQuest& st, const bf16* k_cache, int64_t l, int64_t T,
                          int64_t start, int64_t m0, int64_t m1, const float* q_space) const {
    constexpr int64_t page = attention::kQuestPage;
    const int64_t hq = config.n_heads, hkv = config.n_kv_heads, d = config.head_dim, kw = hkv * d;
    const int64_t middle = m1 - m0, full = middle / page, pages = (middle + page - 1) / page;
    if (st.bounds.empty()) {
      st.bounds.resize(size_t(config.n_layers));
      st.valid.assign(size_t(config.n_layers), 0);
      st.origin.assign(size_t(config.n_layers), -1);
    }
    if (pages > st.capacity) {  // grow every layer's bounds (keeping the complete pages)
      const int64_t cap = std::max(pages, st.capacity * 3 / 2);
      for (size_t i = 0; i < st.bounds.size(); ++i) {
        Buffer<float> grown(size_t(cap * 2 * kw), "quest's page bounds");
        if (st.valid[i] > 0) {
          ESA_CUDA_CHECK(cudaMemcpyAsync(grown.get(), st.bounds[i].get(), size_t(st.valid[i] * 2 * kw) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
        }
        ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
        st.bounds[i] = std::move(grown);
      }
      st.capacity = cap;
    }
    // Complete pages stay valid while the middle starts at the same token and the cache still
    // holds their rows (a truncated cache drops the pages past its end).
    int64_t& valid = st.valid[size_t(l)];
    if (st.origin[size_t(l)] != m0) valid = 0;
    st.origin[size_t(l)] = m0;
    valid = std::min({valid, full, std::max<int64_t>(start - m0, 0) / page});
    cuda::PageBoundsParams bp;
    bp.keys = k_cache;
    bp.width = kw;
    bp.begin = m0;
    bp.end = m1;
    bp.page = int(page);
    bp.page_from = valid;
    bp.page_to = pages;
    bp.bounds = st.bounds[size_t(l)].get();
    ESA_CUDA_CHECK(cuda::launch_page_bounds(bp, stream));
    valid = full;

    const int64_t k = o.budget.select / page;
    if (k == 0) return {m0, m1, nullptr};
    quest_q.resize(size_t(T * 2 * kw), "selection scratch");
    ESA_CUDA_CHECK(cuda::launch_gqa_fold_signed(q_space, int(T), int(hq), int(hkv), int(d), quest_q.get(), stream));
    quest_rows_valid.resize(1, "selection scratch");
    choose_units(quest_q.get(), st.bounds[size_t(l)].get(), 2 * kw, T, pages, k, page, m0, m1, quest_rows_valid.get());
    return {m0 + k * page, m1, quest_rows_valid.get()};
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

void CudaForward::forward_chunk(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options,
                                const ops::RopeAngles* angles, int64_t logit_rows, Tensor& logits) const {
  const Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);  // one chunk at a time: the scratch is shared
  const ModelConfig& c = m.config;
  auto* storage = dynamic_cast<CudaKvStorage*>(cache.device_storage());
  ESA_CHECK(storage != nullptr && cache.contents() == KvContents::keys_only,
            "forward: a model on the GPU needs a cache made by its make_cache()");
  const int64_t T = int64_t(ids.size());
  const int64_t H = c.hidden, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, kw = nkv * hd, qw = nh * hd;
  const int64_t start = cache.size(), S = start + T;
  const ForwardHook& hook = options.hook;
  attention::Policy* policy = options.policy;
  // esa, oracle, quest and infllm select on the device (Impl::select_on_device); others on the host.
  const Impl::DeviceSelection device_select = Impl::device_selection(policy);
  const int64_t max_rows = policy != nullptr ? policy->options().budget.init + policy->options().budget.select : 0;
  m.ensure_scratch(T, max_rows);
  storage->ensure(std::max(S, cache.reserved_tokens()), start, m.stream);
  cudaStream_t s = m.stream;

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

  ESA_CUDA_CHECK(cudaMemcpyAsync(m.ids.get(), ids.data(), size_t(T) * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  ESA_CUDA_CHECK(cuda::launch_embed_rows(m.token_embd.get(), m.ids.get(), int(T), int(H), m.x.get(), s));
  emit("embed", -1, m.x.get(), {T, H});

  // Keys before RoPE come back to the host cache: per layer when a policy selects from them,
  // otherwise all layers' at the end (one synchronisation per chunk).
  float* host_keys = m.pinned_keys(size_t(c.n_layers * T * kw));
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const float eps = float(c.rms_eps);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const DeviceLayer& L = m.layers[size_t(l)];
    ESA_CUDA_CHECK(cuda::launch_rms_norm(m.x.get(), L.attn_norm.get(), int(T), int(H), eps, m.act.get(), s));
    emit_bf16("attn_norm", l, m.act.get(), {T, H});
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
    ESA_CUDA_CHECK(cuda::launch_store_kv(m.k.get(), m.v.get(), int(T), int(kw), storage->k(l), storage->v(l), start, s));
    ESA_CUDA_CHECK(cuda::launch_rope(m.q.get(), m.q_local.get(), int(T), int(nh), int(hd), m.rope, start, 1, s));
    ESA_CUDA_CHECK(cuda::launch_rope(m.k.get(), m.k_rope.get(), int(T), int(nkv), int(hd), m.rope, start, 1, s));
    ESA_CUDA_CHECK(cuda::launch_to_bf16(m.k_rope.get(), storage->k_rotated(l) + start * kw, T * kw, s));
    emit("q_rope", l, m.q_local.get(), {T, nh, hd});
    emit("k_rope", l, m.k_rope.get(), {T, nkv, hd});
    float* keys_here = host_keys + l * T * kw;
    ESA_CUDA_CHECK(cudaMemcpyAsync(keys_here, m.k.get(), size_t(T * kw) * sizeof(float), cudaMemcpyDeviceToHost, s));

    cuda::GatheredAttentionParams p;
    p.q_local = m.q_local.get();
    p.k = storage->k(l);
    p.v = storage->v(l);
    p.k_rotated = storage->k_rotated(l);
    p.range_end = S;
    p.queries = int(T);
    p.causal = true;
    p.rope = m.rope;
    p.hq = int(nh);
    p.hkv = int(nkv);
    p.d = int(hd);
    p.scale = scale;
    p.out = m.attn.get();
    if (device_select != Impl::DeviceSelection::none) {
      if (device_select == Impl::DeviceSelection::esa) {
        m.update_compressed_keys(storage->esa, *policy->esa_projection(), storage->k(l), l, start, S);
      }
      ESA_CUDA_CHECK(cuda::launch_rope(m.q.get(), m.q_long.get(), int(T), int(nh), int(hd), m.rope,
                                       policy->options().query_position(), 0, s));
      const Impl::DeviceRows chosen = m.select_on_device(*policy, device_select, *storage, l, T, start);
      p.q_long = m.q_long.get();
      p.rows = m.rows.get();
      p.n_rows = int(chosen.n_rows);
      p.rows_valid = chosen.rows_valid;
      p.range_begin = chosen.local_begin;
    } else if (policy != nullptr) {
      // The policy sees what it sees on the CPU: the chunk's queries before RoPE and a cache
      // holding the chunk's keys.
      const Tensor q_host = m.download(m.q.get(), {T, nh, hd});  // synchronises: keys_here is in
      cache.append(l, keys_here, nullptr, nullptr, T);
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
        ESA_CUDA_CHECK(cuda::launch_rope(m.q.get(), m.q_long.get(), int(T), int(nh), int(hd), m.rope,
                                         policy->options().query_position(), 0, s));
      }
      p.q_long = m.q_long.get();
      p.rows = m.rows.get();
      p.n_rows = int(rows.size());
      p.range_begin = sel.local_begin;  // (a copy from pageable memory has read `rows` when it returns)
    }
    if (T >= kChunkFlashQueries) {
      m.attend_chunk(p.k, p.k_rotated, p.v, storage->on_host(), T, S, p.range_begin, p.rows, p.n_rows, p.rows_valid,
                     scale, m.attn.get());
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
    ESA_CUDA_CHECK(cuda::launch_to_bf16(m.attn.get(), m.act.get(), T * qw, s));
    m.gemm(L.wo.get(), H, qw, m.act.get(), T, m.proj.get());
    emit("attn_out", l, m.proj.get(), {T, H});
    ESA_CUDA_CHECK(cuda::launch_add(m.x.get(), m.proj.get(), T * H, s));

    ESA_CUDA_CHECK(cuda::launch_rms_norm(m.x.get(), L.ffn_norm.get(), int(T), int(H), eps, m.act.get(), s));
    m.gemm(L.w_gate.get(), c.ffn, H, m.act.get(), T, m.gate.get());
    m.gemm(L.w_up.get(), c.ffn, H, m.act.get(), T, m.up.get());
    ESA_CUDA_CHECK(cuda::launch_swiglu(m.gate.get(), m.up.get(), T * c.ffn, m.act.get(), s));
    m.gemm(L.w_down.get(), H, c.ffn, m.act.get(), T, m.proj.get());
    emit("mlp_out", l, m.proj.get(), {T, H});
    ESA_CUDA_CHECK(cuda::launch_add(m.x.get(), m.proj.get(), T * H, s));
    emit("hidden", l, m.x.get(), {T, H});
  }
  if (policy == nullptr || device_select != Impl::DeviceSelection::none) {
    ESA_CUDA_CHECK(cudaStreamSynchronize(s));
    for (int64_t l = 0; l < c.n_layers; ++l) cache.append(l, host_keys + l * T * kw, nullptr, nullptr, T);
  }

  const int64_t rows = logit_rows;
  if (rows > 0) {
    ESA_CUDA_CHECK(cuda::launch_rms_norm(m.x.get() + (T - rows) * H, m.output_norm.get(), int(rows), int(H), eps,
                                         m.act.get(), s));
    emit_bf16("final_norm", -1, m.act.get(), {rows, H});
    m.logits.resize(size_t(rows * c.vocab), "the logits");
    m.gemm(m.output_weight(), c.vocab, H, m.act.get(), rows, m.logits.get());
    logits = m.download(m.logits.get(), {rows, c.vocab});
  }
  ESA_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace esa
