// Weight loading. GGUF shapes are listed fastest dimension first ({in, out}); they are turned
// into the row-major PyTorch order ([out, in]) here, which is the same memory. GGUF llama Q/K
// rows stay in the converter's permuted order: the engine rotates them as adjacent pairs
// (config.rope.style), which is the same attention as rotate_half on the original rows.
#include "model/weights.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

#include "core/error.h"
#include "core/memory_limit.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "ops/dequantize.h"
#include "model/model_files.h"

namespace esa {

std::vector<float> dequantize_tensor(const io::GgufFile& file, const io::GgufTensorInfo& tensor) {
  const io::GgmlTypeInfo& ti = io::ggml_type_info(tensor.type);
  ESA_CHECK(ti.dequantizable, "{}: tensor '{}' has type {}, which esa cannot dequantise (supported: {})", file.path(),
            tensor.name, ti.name, ops::dequantizable_types());
  std::vector<float> out(size_t(tensor.n_elements));
  ops::dequantize(tensor.type, tensor.data, tensor.n_bytes, out.data(), tensor.n_elements);
  return out;
}

namespace {

// Source-independent access: does a tensor exist, its row-major shape, its float data.
struct TensorSource {
  std::string path;
  std::function<bool(const std::string&)> has;
  std::function<std::vector<int64_t>(const std::string&)> shape;
  std::function<std::vector<float>(const std::string&)> load;
};

Tensor load_checked(const TensorSource& src, const std::string& name, const std::vector<int64_t>& expected,
                    const char* what) {
  ESA_CHECK(src.has(name), "{}: missing tensor '{}' ({})", src.path, name, what);
  const std::vector<int64_t> found = src.shape(name);
  ESA_CHECK(found == expected, "{}: tensor '{}' has shape {}, expected {} from the config ({})", src.path, name,
            shape_to_string(found), shape_to_string(expected), what);
  std::vector<float> values = src.load(name);
  for (size_t i = 0; i < values.size(); ++i) {
    ESA_CHECK(std::isfinite(values[i]), "{}: tensor '{}' holds a non-finite value ({}) at element {}", src.path, name,
              values[i], i);
  }
  return Tensor(expected, std::move(values));
}

TensorSource gguf_source(const io::GgufFile& gguf) {
  TensorSource s;
  s.path = gguf.path();
  s.has = [&gguf](const std::string& n) { return gguf.find_tensor(n) != nullptr; };
  s.shape = [&gguf](const std::string& n) {
    std::vector<int64_t> shape = gguf.tensor(n).shape;
    std::reverse(shape.begin(), shape.end());
    return shape;
  };
  s.load = [&gguf](const std::string& n) { return dequantize_tensor(gguf, gguf.tensor(n)); };
  return s;
}

TensorSource safetensors_source(const io::SafetensorsCheckpoint& ckpt) {
  TensorSource s;
  s.path = ckpt.path();
  s.has = [&ckpt](const std::string& n) { return ckpt.find(n) != nullptr; };
  s.shape = [&ckpt](const std::string& n) { return ckpt.info(n).shape; };
  s.load = [&ckpt](const std::string& n) { return ckpt.to_float(n); };
  return s;
}

struct Names {
  std::string embd, out_norm, lm_head, rope_freqs;
  std::function<std::string(int64_t, const char*)> layer;  // (layer, role) -> name
};

Names gguf_names() {
  Names n{"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight", nullptr};
  n.layer = [](int64_t l, const char* role) { return fmt::format("blk.{}.{}", l, role); };
  return n;
}

// Roles are spelled the GGUF way; the HF names are mapped from them.
Names hf_names() {
  Names n{"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "", nullptr};
  n.layer = [](int64_t l, const char* role) {
    static const std::pair<const char*, const char*> map[] = {
        {"attn_norm.weight", "input_layernorm.weight"}, {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},   {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},       {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.bias", "self_attn.v_proj.bias"},       {"attn_output.weight", "self_attn.o_proj.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},         {"ffn_down.weight", "mlp.down_proj.weight"}};
    for (const auto& [g, h] : map) {
      if (std::string_view(role) == g) return fmt::format("model.layers.{}.{}", l, h);
    }
    return fmt::format("model.layers.{}.{}", l, role);
  };
  return n;
}

ModelWeights load_from(const TensorSource& src, const Names& names, const ModelConfig& c) {
  const int64_t hidden = c.hidden, q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  ModelWeights w;
  w.token_embd = load_checked(src, names.embd, {c.vocab, hidden}, "token embedding [vocab, hidden]");
  w.output_norm = load_checked(src, names.out_norm, {hidden}, "final norm [hidden]");
  if (src.has(names.lm_head)) {
    w.lm_head = load_checked(src, names.lm_head, {c.vocab, hidden}, "LM head [vocab, hidden]");
  } else {
    ESA_CHECK(c.tied_embeddings, "{}: missing tensor '{}' and the config does not tie the LM head to the embedding",
              src.path, names.lm_head);
  }
  if (!names.rope_freqs.empty() && src.has(names.rope_freqs)) {
    const Tensor f = load_checked(src, names.rope_freqs, {c.rope.dim / 2}, "RoPE frequency factors [rope dim / 2]");
    w.rope_freqs.assign(f.data(), f.data() + f.numel());
    // The RoPE table divides by them: checked here, where the file can be named.
    for (size_t i = 0; i < w.rope_freqs.size(); ++i) {
      ESA_CHECK(w.rope_freqs[i] > 0.0f, "{}: tensor '{}' holds frequency factor {} = {}, expected > 0", src.path,
                names.rope_freqs, i, w.rope_freqs[i]);
    }
  }
  w.layers.resize(size_t(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    auto get = [&](const char* role, std::vector<int64_t> shape, const char* what) {
      return load_checked(src, names.layer(l, role), shape, what);
    };
    L.attn_norm = get("attn_norm.weight", {hidden}, "attention norm [hidden]");
    L.wq = get("attn_q.weight", {q_dim, hidden}, "query projection [heads*head_dim, hidden]");
    L.wk = get("attn_k.weight", {kv_dim, hidden}, "key projection [kv_heads*head_dim, hidden]");
    L.wv = get("attn_v.weight", {kv_dim, hidden}, "value projection [kv_heads*head_dim, hidden]");
    L.wo = get("attn_output.weight", {hidden, q_dim}, "output projection [hidden, heads*head_dim]");
    if (c.qkv_bias) {
      L.bq = get("attn_q.bias", {q_dim}, "query bias [heads*head_dim]");
      L.bk = get("attn_k.bias", {kv_dim}, "key bias [kv_heads*head_dim]");
      L.bv = get("attn_v.bias", {kv_dim}, "value bias [kv_heads*head_dim]");
    }
    L.ffn_norm = get("ffn_norm.weight", {hidden}, "MLP norm [hidden]");
    L.w_gate = get("ffn_gate.weight", {c.ffn, hidden}, "MLP gate [ffn, hidden]");
    L.w_up = get("ffn_up.weight", {c.ffn, hidden}, "MLP up [ffn, hidden]");
    L.w_down = get("ffn_down.weight", {hidden, c.ffn}, "MLP down [hidden, ffn]");
  }
  return w;
}

}  // namespace

size_t ModelWeights::bytes() const {
  size_t b = token_embd.bytes() + output_norm.bytes() + lm_head.bytes() + rope_freqs.size() * sizeof(float);
  for (const LayerWeights& L : layers) {
    for (const Tensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq, &L.bk, &L.bv, &L.ffn_norm, &L.w_gate,
                            &L.w_up, &L.w_down}) {
      b += t->bytes();
    }
  }
  return b;
}

uint64_t weight_bytes(const ModelConfig& c) {
  const uint64_t hidden = uint64_t(c.hidden), q_dim = uint64_t(c.n_heads * c.head_dim),
                 kv_dim = uint64_t(c.n_kv_heads * c.head_dim), ffn = uint64_t(c.ffn);
  uint64_t per_layer = 2 * hidden + 2 * q_dim * hidden + 2 * kv_dim * hidden + 3 * ffn * hidden;
  if (c.qkv_bias) per_layer += q_dim + 2 * kv_dim;
  const uint64_t embeddings = (c.tied_embeddings ? 1 : 2) * uint64_t(c.vocab) * hidden + hidden;
  return sizeof(float) * (embeddings + uint64_t(c.n_layers) * per_layer);
}

ModelWeights load_weights(const std::string& path, const ModelConfig& config) {
  // Held as fp32 whatever the file's type: checked before anything is dequantised.
  check_memory(fmt::format("{}: the weights (fp32)", path), 1, weight_bytes(config), "");
  if (detect_model_format(path) == ModelFormat::gguf) {
    const io::GgufFile gguf(path);
    return load_from(gguf_source(gguf), gguf_names(), config);
  }
  const io::SafetensorsCheckpoint ckpt(path);
  return load_from(safetensors_source(ckpt), hf_names(), config);
}

}  // namespace esa
