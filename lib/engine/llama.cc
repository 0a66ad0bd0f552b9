#include "engine/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention/policy.h"
#include "attention/two_branch.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "engine/generate.h"
#include "io/gguf.h"
#include "model/model_files.h"
#ifdef ESA_WITH_CUDA
#include "engine/llama_cuda.h"
#endif
#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/rms_norm.h"
#include "ops/swiglu.h"

namespace esa {

const char* StageTimes::name(int stage) {
  static const char* const names[kCount] = {"projections", "kv write + rope", "selection", "host selection",
                                            "attention", "norms, residual, copies"};
  return stage >= 0 && stage < kCount ? names[stage] : "?";
}

double StageTimes::total() const {
  double t = 0.0;
  for (double x : seconds) t += x;
  return t;
}
namespace {

TensorView as_view(const Tensor& t, std::vector<int64_t> shape) {
  return {t.data(), std::move(shape), DType::f32, Device::cpu};
}

TensorView none() { return {}; }

void add_in_place(Tensor& x, const Tensor& y) {
  float* a = x.data();
  const float* b = y.data();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}

ModelConfig load_config(const std::string& path) {
  if (detect_model_format(path) == ModelFormat::gguf) return config_from_gguf(io::GgufFile(path));
  return summarize_model(path, false).config;
}

}  // namespace

LlamaModel LlamaModel::load(const std::string& path, Placement placement) {
  ModelConfig config = load_config(path);
  ModelWeights weights = load_weights(path, config);
  LlamaModel model(std::move(config), std::move(weights));
  model.use_device(placement);
  return model;
}

void LlamaModel::use_device(Placement placement) {
  ESA_CHECK(!placement.kv_offload || placement.device == Device::cuda,
            "--kv-offload keeps the GPU's KV cache in host memory: it needs --device cuda");
  const Device device = placement.device;
  if (device == placement_.device) {
    placement_ = placement;
    return;
  }
  if (device == Device::cpu) {
    cuda_.reset();
  } else {
#ifdef ESA_WITH_CUDA
    std::string why;
    ESA_CHECK(!cuda_devices(&why).empty(), "--device cuda: no usable GPU ({})", why);
    cuda_ = std::make_shared<const CudaForward>(config_, weights_, rope_);
#else
    ESA_FAIL("--device cuda: this esa was built without CUDA");
#endif
  }
  placement_ = placement;
}

LlamaModel::LlamaModel(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)),
      rope_(ops::make_rope_table(config_.rope, weights_.rope_freqs)) {
  ESA_CHECK(int64_t(weights_.layers.size()) == config_.n_layers, "model: {} layers of weights for {} in the config",
            weights_.layers.size(), config_.n_layers);
}

std::shared_ptr<const ops::RopeAngles> LlamaModel::angles_for(int64_t positions) const {
  std::lock_guard<std::mutex> lock(angle_cache_->mutex);
  auto& current = angle_cache_->angles;
  if (!current || current->positions() < positions) {
    const int64_t have = current ? current->positions() : 0;
    const int64_t n = std::max({positions, 2 * have, int64_t(4096)});
    current = std::make_shared<const ops::RopeAngles>(ops::make_rope_angles(rope_, n));
  }
  return current;
}

KvCache LlamaModel::make_cache() const {
  if (placement_.device == Device::cpu) return KvCache(config_.n_layers, config_.n_kv_heads, config_.head_dim);
  KvCache cache(config_.n_layers, config_.n_kv_heads, config_.head_dim, KvContents::keys_only);
#ifdef ESA_WITH_CUDA
  cache.set_device_storage(cuda_->make_storage(placement_.kv_offload));
#endif
  return cache;
}

Tensor LlamaModel::forward(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options) const {
  ESA_CHECK(!ids.empty(), "forward: no tokens");
  ESA_CHECK(options.chunk >= 1, "forward: chunk must be at least 1, got {}", options.chunk);
  ESA_CHECK(cache.n_layers() == config_.n_layers, "forward: the cache has {} layers, the model {}", cache.n_layers(),
            config_.n_layers);
  for (int32_t id : ids) {
    ESA_CHECK(id >= 0 && id < config_.vocab, "forward: token id {} is outside the vocabulary [0, {})", id, config_.vocab);
  }
  Tensor logits;
  Tensor all;
  const int64_t n = int64_t(ids.size());
  for (int64_t start = 0; start < n; start += options.chunk) {
    check_interrupt();  // a SIGINT / SIGTERM ends the run between chunks (core/interrupt.h)
    const int64_t len = std::min(options.chunk, n - start);
    const bool last = start + len == n;
    const int64_t logit_rows = options.all_logits ? len : (last ? 1 : 0);
    Tensor chunk_logits;
    forward_chunk(ids.subspan(size_t(start), size_t(len)), cache, options, logit_rows, chunk_logits);
    if (options.all_logits) {
      if (all.empty()) all = Tensor({n, config_.vocab});
      std::memcpy(all.data() + start * config_.vocab, chunk_logits.data(), chunk_logits.bytes());
    } else if (last) {
      logits = std::move(chunk_logits);
    }
  }
  return options.all_logits ? all : logits;
}

int64_t LlamaModel::decode_greedy(int32_t first, int64_t steps, KvCache& cache, const ForwardOptions& options,
                                  const std::function<bool(int32_t)>& on_token) const {
  ESA_CHECK(cache.n_layers() == config_.n_layers, "forward: the cache has {} layers, the model {}", cache.n_layers(),
            config_.n_layers);
#ifdef ESA_WITH_CUDA
  if (cuda_ && cuda_->decodes_on_device(options, cache)) return cuda_->decode_greedy(first, steps, cache, options, on_token);
#endif
  int64_t accepted = 0;
  int32_t next = first;
  for (int64_t i = 0; i < steps; ++i) {
    const Tensor logits = forward(std::span<const int32_t>(&next, 1), cache, options);
    next = argmax(logits.data(), logits.numel());
    if (!on_token(next)) break;
    ++accepted;
  }
  return accepted;
}

void LlamaModel::forward_chunk(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options,
                               int64_t logit_rows, Tensor& logits) const {
#ifdef ESA_WITH_CUDA
  if (cuda_) {
    // Only a policy reads the host angles (the GPU kernels compute theirs).
    std::shared_ptr<const ops::RopeAngles> angles;
    if (options.policy != nullptr) angles = angles_for(cache.size() + int64_t(ids.size()));
    cuda_->forward_chunk(ids, cache, options, angles.get(), logit_rows, logits);
    return;
  }
#endif
  ESA_CHECK(cache.contents() == KvContents::all, "forward: a model on the CPU needs a cache made by its make_cache()");
  const ModelConfig& c = config_;
  const int64_t T = int64_t(ids.size());
  const int64_t H = c.hidden, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  const int64_t start = cache.size();
  const ForwardHook& hook = options.hook;

  Tensor x({T, H});  // residual stream [T, hidden]
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(x.data() + t * H, weights_.token_embd.data() + int64_t(ids[size_t(t)]) * H, size_t(H) * sizeof(float));
  }
  if (hook) hook("embed", -1, x.view());

  std::vector<int64_t> chunk_pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) chunk_pos[size_t(t)] = start + t;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const std::shared_ptr<const ops::RopeAngles> angles = angles_for(start + T);
  std::vector<int64_t> k_pos(static_cast<size_t>(start + T));  // every cached key at its true position
  for (int64_t s = 0; s < start + T; ++s) k_pos[size_t(s)] = s;

  Tensor h, q, k, v, attn, o, gate, up, mlp;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[size_t(l)];
    ops::rms_norm(x.view(), L.attn_norm.view(), float(c.rms_eps), h);
    if (hook) hook("attn_norm", l, h.view());
    ops::linear(h.view(), L.wq.view(), L.bq.empty() ? none() : L.bq.view(), q);  // [T, nh*hd]
    ops::linear(h.view(), L.wk.view(), L.bk.empty() ? none() : L.bk.view(), k);  // [T, nkv*hd]
    ops::linear(h.view(), L.wv.view(), L.bv.empty() ? none() : L.bv.view(), v);  // [T, nkv*hd]
    q.reshape({T, nh, hd});
    k.reshape({T, nkv, hd});
    v.reshape({T, nkv, hd});
    if (hook) {
      hook("q", l, q.view());
      hook("k", l, k.view());
      hook("v", l, v.view());
    }
    // Rotate the chunk's queries and keys to their true positions; the cache keeps the keys
    // both before RoPE (for the selective policies) and rotated (for exact attention).
    const Tensor q_before_rope = options.policy != nullptr ? q : Tensor();
    Tensor k_rot = k;
    ops::rope(q, chunk_pos, rope_, angles.get());
    ops::rope(k_rot, chunk_pos, rope_, angles.get());
    cache.append(l, k.data(), k_rot.data(), v.data(), T);
    ESA_CHECK(cache.length(l) == start + T, "forward: layer {} cache holds {} tokens, expected {}", l, cache.length(l),
              start + T);
    if (hook) {
      hook("q_rope", l, q.view());
      hook("k_rope", l, k_rot.view());
    }
    if (options.policy != nullptr) {
      const attention::LayerInputs in{l, q_before_rope.view(), &cache, &rope_, angles.get()};
      const attention::Selection selection = options.policy->select(in);
      if (hook && selection.long_tokens.size() == 1) {
        const std::vector<int64_t>& rows = selection.long_tokens[0];
        Tensor t({int64_t(rows.size())});
        for (size_t i = 0; i < rows.size(); ++i) t.data()[i] = float(rows[i]);
        hook("long_rows", l, t.view());
      }
      attention::two_branch_attention(in, selection, options.policy->options().query_position(), attn);
    } else {
      ops::attention(q.view(), cache.keys_rotated(l), cache.values(l), chunk_pos, k_pos, {scale, true}, attn, nullptr);
    }
    if (hook) hook("attn", l, attn.view());
    ops::linear(as_view(attn, {T, nh * hd}), L.wo.view(), none(), o);
    if (hook) hook("attn_out", l, o.view());
    add_in_place(x, o);

    ops::rms_norm(x.view(), L.ffn_norm.view(), float(c.rms_eps), h);
    ops::linear(h.view(), L.w_gate.view(), none(), gate);
    ops::linear(h.view(), L.w_up.view(), none(), up);
    ops::swiglu(gate, up.view());
    ops::linear(gate.view(), L.w_down.view(), none(), mlp);
    if (hook) hook("mlp_out", l, mlp.view());
    add_in_place(x, mlp);
    if (hook) hook("hidden", l, x.view());
  }

  // Final norm and LM head, only for the rows whose logits are wanted.
  const int64_t rows = logit_rows;
  if (rows == 0) return;
  const TensorView tail{x.data() + (T - rows) * H, {rows, H}, DType::f32, Device::cpu};
  ops::rms_norm(tail, weights_.output_norm.view(), float(c.rms_eps), h);
  if (hook) hook("final_norm", -1, h.view());
  ops::linear(h.view(), weights_.output().view(), none(), logits);
}

}  // namespace esa
