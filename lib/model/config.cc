// ModelConfig from GGUF metadata and from a Hugging Face config.json, and its validation.
// References: llama.cpp `src/llama-model.cpp` (llm_load_hparams: the `{arch}.*` keys and their
// defaults) and `convert_hf_to_gguf.py` (Q/K row permutation for llama, none for qwen2; llama3
// scaling stored as a `rope_freqs.weight` tensor); transformers `LlamaConfig`, `MistralConfig`,
// `Qwen2Config` and `modeling_rope_utils.py` (rope_scaling keys, defaults and yarn's mscale).
#include "model/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/file_io.h"
#include "io/gguf.h"

namespace esa {
namespace {

using Json = nlohmann::json;

/// Where each field comes from in the source, so that validation names the key the user wrote.
struct FieldNames {
  std::string n_layers = "n_layers", hidden = "hidden", n_heads = "n_heads", n_kv_heads = "n_kv_heads",
              head_dim = "head_dim", ffn = "ffn", vocab = "vocab", context = "context",
              rms_eps = "rms_eps", rope_base = "rope.base", rope_dim = "rope.dim",
              rope_factor = "rope.factor", original_context = "rope.original_context",
              low_freq_factor = "rope.low_freq_factor", high_freq_factor = "rope.high_freq_factor",
              beta_fast = "rope.yarn_beta_fast", beta_slow = "rope.yarn_beta_slow",
              attn_factor = "rope.yarn_attn_factor", sliding_window = "sliding_window";
};

FieldNames hf_names() {
  FieldNames n;
  n.n_layers = "num_hidden_layers";
  n.hidden = "hidden_size";
  n.n_heads = "num_attention_heads";
  n.n_kv_heads = "num_key_value_heads";
  n.head_dim = "head_dim";
  n.ffn = "intermediate_size";
  n.vocab = "vocab_size";
  n.context = "max_position_embeddings";
  n.rms_eps = "rms_norm_eps";
  n.rope_base = "rope_theta";
  n.rope_dim = "head_dim";
  n.rope_factor = "rope_scaling.factor";
  n.original_context = "rope_scaling.original_max_position_embeddings";
  n.low_freq_factor = "rope_scaling.low_freq_factor";
  n.high_freq_factor = "rope_scaling.high_freq_factor";
  n.beta_fast = "rope_scaling.beta_fast";
  n.beta_slow = "rope_scaling.beta_slow";
  n.attn_factor = "rope_scaling.attention_factor";
  n.sliding_window = "sliding_window";
  return n;
}

FieldNames gguf_names(const std::string& arch) {
  const auto k = [&](const char* key) { return arch + "." + key; };
  FieldNames n;
  n.n_layers = k("block_count");
  n.hidden = k("embedding_length");
  n.n_heads = k("attention.head_count");
  n.n_kv_heads = k("attention.head_count_kv");
  n.head_dim = k("attention.key_length");
  n.ffn = k("feed_forward_length");
  n.vocab = k("vocab_size");
  n.context = k("context_length");
  n.rms_eps = k("attention.layer_norm_rms_epsilon");
  n.rope_base = k("rope.freq_base");
  n.rope_dim = k("rope.dimension_count");
  n.rope_factor = k("rope.scaling.factor");
  n.original_context = k("rope.scaling.original_context_length");
  n.beta_fast = k("rope.scaling.yarn_beta_fast");
  n.beta_slow = k("rope.scaling.yarn_beta_slow");
  n.attn_factor = k("rope.scaling.attn_factor");
  n.sliding_window = k("attention.sliding_window");
  return n;
}

void validate_config(const ModelConfig& c, const std::string& src, const FieldNames& n) {
  const auto in_range = [&](int64_t v, const std::string& key, int64_t max) {
    ESA_CHECK(v >= 1 && v <= max, "{}: {} is {}, expected an integer in [1, {}]", src, key, v, max);
  };
  in_range(c.n_layers, n.n_layers, 4096);
  in_range(c.hidden, n.hidden, int64_t{1} << 20);
  in_range(c.n_heads, n.n_heads, 4096);
  in_range(c.n_kv_heads, n.n_kv_heads, 4096);
  in_range(c.head_dim, n.head_dim, 4096);
  in_range(c.ffn, n.ffn, int64_t{1} << 22);
  in_range(c.vocab, n.vocab, int64_t{1} << 24);
  in_range(c.context, n.context, int64_t{1} << 30);
  ESA_CHECK(c.n_heads % c.n_kv_heads == 0, "{}: {} ({}) is not a multiple of {} ({})", src, n.n_heads,
            c.n_heads, n.n_kv_heads, c.n_kv_heads);
  ESA_CHECK(std::isfinite(c.rms_eps) && c.rms_eps > 0 && c.rms_eps <= 0.1,
            "{}: {} is {}, expected a value in (0, 0.1]", src, n.rms_eps, c.rms_eps);

  const RopeConfig& r = c.rope;
  ESA_CHECK(std::isfinite(r.base) && r.base > 0, "{}: {} is {}, expected a positive number", src,
            n.rope_base, r.base);
  ESA_CHECK(r.dim >= 2 && r.dim % 2 == 0 && r.dim <= c.head_dim,
            "{}: {} is {}, expected an even number in [2, {}] (the head dim)", src, n.rope_dim, r.dim, c.head_dim);
  const auto positive = [&](double v, const std::string& key) {
    ESA_CHECK(std::isfinite(v) && v > 0, "{}: {} is {}, expected a positive number", src, key, v);
  };
  if (r.scaling != RopeScaling::none) positive(r.factor, n.rope_factor);
  if (r.scaling == RopeScaling::llama3 || r.scaling == RopeScaling::yarn) {
    ESA_CHECK(r.original_context >= 1, "{}: {} is {}, expected a positive integer for {} scaling", src,
              n.original_context, r.original_context, rope_scaling_name(r.scaling));
  }
  if (r.scaling == RopeScaling::llama3) {
    positive(r.low_freq_factor, n.low_freq_factor);
    ESA_CHECK(std::isfinite(r.high_freq_factor) && r.high_freq_factor > r.low_freq_factor,
              "{}: {} is {}, expected more than {} ({})", src, n.high_freq_factor, r.high_freq_factor,
              n.low_freq_factor, r.low_freq_factor);
  }
  if (r.scaling == RopeScaling::yarn) {
    positive(r.yarn_beta_fast, n.beta_fast);
    positive(r.yarn_beta_slow, n.beta_slow);
    positive(r.yarn_attn_factor, n.attn_factor);
  }
  ESA_CHECK(c.sliding_window >= 0, "{}: {} is {}, expected >= 0", src, n.sliding_window, c.sliding_window);
}

/// yarn's default attention scaling, transformers' get_mscale.
double yarn_mscale(double factor, double mscale = 1.0) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

// ---- Hugging Face config.json --------------------------------------------------------------

/// Typed access to one JSON object, every error naming the file and the (dotted) key. A key
/// whose value is null counts as absent, as in transformers.
class JsonReader {
 public:
  JsonReader(const Json& object, std::string path, std::string prefix = "")
      : object_(object), path_(std::move(path)), prefix_(std::move(prefix)) {}

  const Json* find(const char* key) const {
    const auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  std::string key(const char* key) const { return prefix_ + key; }

  std::optional<int64_t> find_int(const char* k) const {
    const Json* v = find(k);
    if (v == nullptr) return std::nullopt;
    if (v->is_number_integer()) {
      ESA_CHECK(!v->is_number_unsigned() || v->get<uint64_t>() <= uint64_t{1} << 62,
                "{}: key '{}' is {}, out of range", path_, key(k), v->dump());
      return v->get<int64_t>();
    }
    // 2048.0 is an integer written by a float-minded tool; 2048.5 is not.
    if (v->is_number_float() && std::abs(v->get<double>()) < 1e15 &&
        v->get<double>() == std::floor(v->get<double>())) {
      return static_cast<int64_t>(v->get<double>());
    }
    fail_type(k, *v, "an integer");
  }
  int64_t get_int(const char* k) const { return required(find_int(k), k); }

  std::optional<double> find_double(const char* k) const {
    const Json* v = find(k);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) fail_type(k, *v, "a number");
    return v->get<double>();
  }
  double get_double(const char* k) const { return required(find_double(k), k); }

  std::optional<bool> find_bool(const char* k) const {
    const Json* v = find(k);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) fail_type(k, *v, "true or false");
    return v->get<bool>();
  }

  std::optional<std::string> find_string(const char* k) const {
    const Json* v = find(k);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) fail_type(k, *v, "a string");
    return v->get<std::string>();
  }

 private:
  template <typename T>
  T required(const std::optional<T>& v, const char* k) const {
    ESA_CHECK(v.has_value(), "{}: missing key '{}'", path_, key(k));
    return *v;
  }
  [[noreturn]] void fail_type(const char* k, const Json& v, const char* expected) const {
    ESA_FAIL("{}: key '{}' is {} ({}), expected {}", path_, key(k), json_excerpt(v), v.type_name(), expected);
  }

  const Json& object_;
  std::string path_;
  std::string prefix_;
};

Architecture hf_architecture(const JsonReader& j, const Json& root, const std::string& path) {
  if (const auto model_type = j.find_string("model_type")) {
    if (*model_type == "llama") return Architecture::llama;
    if (*model_type == "mistral") return Architecture::mistral;
    if (*model_type == "qwen2") return Architecture::qwen2;
    ESA_FAIL("{}: unknown model_type '{}' (esa supports llama, mistral, qwen2)", path, *model_type);
  }
  const auto it = root.find("architectures");
  ESA_CHECK(it != root.end() && it->is_array() && !it->empty() && (*it)[0].is_string(),
            "{}: missing key 'model_type' (and no 'architectures' list to fall back on)", path);
  const auto name = (*it)[0].get<std::string>();
  if (name == "LlamaForCausalLM") return Architecture::llama;
  if (name == "MistralForCausalLM") return Architecture::mistral;
  if (name == "Qwen2ForCausalLM") return Architecture::qwen2;
  ESA_FAIL("{}: unknown architectures[0] '{}' (esa supports LlamaForCausalLM, MistralForCausalLM, "
           "Qwen2ForCausalLM)", path, name);
}

void hf_rope_scaling(const Json& root, const std::string& path, ModelConfig& c) {
  // transformers >= 5 writes "rope_parameters" (with rope_theta inside); older configs have a
  // top-level "rope_theta" and an optional "rope_scaling".
  const bool v5 = root.contains("rope_parameters") && !root["rope_parameters"].is_null();
  const std::string key = v5 ? "rope_parameters" : "rope_scaling";
  const auto it = root.find(key);
  if (it == root.end() || it->is_null()) return;
  ESA_CHECK(it->is_object(), "{}: key '{}' is a JSON {}, expected an object or null", path, key, it->type_name());
  const JsonReader r(*it, path, key + ".");
  if (v5) c.rope.base = r.find_double("rope_theta").value_or(c.rope.base);
  // transformers renamed "type" to "rope_type"; both appear in published configs.
  const char* type_key = r.find("rope_type") != nullptr ? "rope_type" : "type";
  const auto type = v5 ? std::optional<std::string>(r.find_string(type_key).value_or("default")) : r.find_string(type_key);
  ESA_CHECK(type.has_value(), "{}: missing key '{}.rope_type' (or '{}.type')", path, key, key);
  ESA_CHECK(*type == "default" || *type == "linear" || *type == "llama3" || *type == "yarn",
            "{}: {}.{} is '{}'; esa supports default, linear, llama3, yarn", path, key, type_key, *type);
  RopeConfig& rope = c.rope;
  rope.scaling = parse_rope_scaling(*type);
  if (rope.scaling == RopeScaling::none) return;
  rope.factor = r.get_double("factor");
  if (rope.scaling == RopeScaling::llama3) {
    rope.original_context = r.get_int("original_max_position_embeddings");
    rope.low_freq_factor = r.get_double("low_freq_factor");
    rope.high_freq_factor = r.get_double("high_freq_factor");
  } else if (rope.scaling == RopeScaling::yarn) {
    rope.original_context = r.find_int("original_max_position_embeddings").value_or(c.context);
    rope.yarn_beta_fast = r.find_double("beta_fast").value_or(32.0);
    rope.yarn_beta_slow = r.find_double("beta_slow").value_or(1.0);
    rope.yarn_truncate = r.find_bool("truncate").value_or(true);
    if (const auto attention_factor = r.find_double("attention_factor")) {
      rope.yarn_attn_factor = *attention_factor;
    } else {
      const auto mscale = r.find_double("mscale");
      const auto mscale_all_dim = r.find_double("mscale_all_dim");
      // transformers uses the ratio only when both are present and non-zero.
      rope.yarn_attn_factor = (mscale && mscale_all_dim && *mscale != 0 && *mscale_all_dim != 0)
                                  ? yarn_mscale(rope.factor, *mscale) / yarn_mscale(rope.factor, *mscale_all_dim)
                                  : yarn_mscale(rope.factor);
    }
  }
}

}  // namespace


const char* architecture_name(Architecture arch) {
  switch (arch) {
    case Architecture::llama: return "llama";
    case Architecture::mistral: return "mistral";
    case Architecture::qwen2: return "qwen2";
  }
  return "?";
}

void ModelConfig::validate(const std::string& source) const { validate_config(*this, source, FieldNames{}); }

ModelConfig config_from_hf_json(const std::string& path) {
  const Json root = read_json_file(path);
  ESA_CHECK(root.is_object(), "{}: config is a JSON {}, expected an object", path, root.type_name());
  const JsonReader j(root, path);

  ModelConfig c;
  c.arch = hf_architecture(j, root, path);
  c.name = j.find_string("_name_or_path").value_or("");
  if (c.name.empty()) c.name = std::filesystem::path(path).parent_path().filename().string();

  if (const auto act = j.find_string("hidden_act")) {
    ESA_CHECK(*act == "silu", "{}: hidden_act is '{}'; esa supports silu (SwiGLU)", path, *act);
  }
  c.n_layers = j.get_int("num_hidden_layers");
  c.hidden = j.get_int("hidden_size");
  c.n_heads = j.get_int("num_attention_heads");
  ESA_CHECK(c.n_heads > 0, "{}: num_attention_heads is {}, expected a positive integer", path, c.n_heads);
  c.n_kv_heads = j.find_int("num_key_value_heads").value_or(c.n_heads);
  c.head_dim = j.find_int("head_dim").value_or(c.hidden / c.n_heads);
  if (!j.find("head_dim")) {
    ESA_CHECK(c.hidden % c.n_heads == 0,
              "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}) and there is no head_dim",
              path, c.hidden, c.n_heads);
  }
  c.ffn = j.get_int("intermediate_size");
  c.vocab = j.get_int("vocab_size");
  c.context = j.get_int("max_position_embeddings");
  c.rms_eps = j.find_double("rms_norm_eps").value_or(1e-6);  // transformers' default for all three
  c.tied_embeddings = j.find_bool("tie_word_embeddings").value_or(false);
  if (c.arch == Architecture::qwen2) {
    c.qkv_bias = true;  // Qwen2Attention hard-codes bias=True on q/k/v, bias=False on o
    if (j.find_bool("use_sliding_window").value_or(false)) c.sliding_window = j.find_int("sliding_window").value_or(0);
  } else {
    c.qkv_bias = j.find_bool("attention_bias").value_or(false);
    if (c.arch == Architecture::mistral) c.sliding_window = j.find_int("sliding_window").value_or(0);
  }
  ESA_CHECK(!j.find_bool("mlp_bias").value_or(false), "{}: mlp_bias is true; esa supports bias-free MLPs", path);

  c.rope.base = j.find_double("rope_theta").value_or(10000.0);
  c.rope.dim = c.head_dim;
  c.rope.style = RopeStyle::rotate_half;  // HF weights are not permuted
  hf_rope_scaling(root, path, c);

  validate_config(c, path, hf_names());
  return c;
}

// ---- GGUF ----------------------------------------------------------------------------------

ModelConfig config_from_gguf(const io::GgufFile& gguf) {
  const std::string& path = gguf.path();
  const std::string arch = gguf.get_string("general.architecture");
  ModelConfig c;
  if (arch == "llama") {
    c.arch = Architecture::llama;  // Mistral GGUFs say llama too: same graph, same keys
  } else if (arch == "mistral") {
    c.arch = Architecture::mistral;
  } else if (arch == "qwen2") {
    c.arch = Architecture::qwen2;
  } else {
    ESA_FAIL("{}: unknown architecture '{}' (esa supports llama, mistral, qwen2)", path, arch);
  }
  const FieldNames n = gguf_names(arch);
  c.name = gguf.find_string("general.name").value_or(std::filesystem::path(path).stem().string());

  c.n_layers = gguf.get_int(n.n_layers);
  c.hidden = gguf.get_int(n.hidden);
  c.n_heads = gguf.get_int(n.n_heads);
  ESA_CHECK(c.n_heads > 0, "{}: {} is {}, expected a positive integer", path, n.n_heads, c.n_heads);
  c.n_kv_heads = gguf.find_int(n.n_kv_heads).value_or(c.n_heads);
  if (const auto key_length = gguf.find_int(n.head_dim)) {
    c.head_dim = *key_length;
    const std::string value_key = arch + ".attention.value_length";
    if (const auto value_length = gguf.find_int(value_key)) {
      ESA_CHECK(*value_length == *key_length, "{}: {} ({}) differs from {} ({}); esa needs equal K and V heads",
                path, value_key, *value_length, n.head_dim, *key_length);
    }
  } else {
    ESA_CHECK(c.hidden % c.n_heads == 0, "{}: {} ({}) is not a multiple of {} ({}) and there is no {}", path,
              n.hidden, c.hidden, n.n_heads, c.n_heads, n.head_dim);
    c.head_dim = c.hidden / c.n_heads;
  }
  c.ffn = gguf.get_int(n.ffn);
  c.context = gguf.get_int(n.context);
  c.rms_eps = gguf.get_float(n.rms_eps);
  c.sliding_window = gguf.find_int(n.sliding_window).value_or(0);

  // Vocabulary: the embedding's rows are what the engine needs; the token list is the fallback.
  const io::GgufTensorInfo* embd = gguf.find_tensor("token_embd.weight");
  if (const auto vocab = gguf.find_int(n.vocab)) {
    c.vocab = *vocab;
  } else if (embd != nullptr && embd->shape.size() == 2) {
    c.vocab = embd->shape[1];
  } else if (const io::GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->type == io::GgufType::array) {
    c.vocab = static_cast<int64_t>(tokens->count);
  } else {
    ESA_FAIL("{}: cannot tell the vocabulary size: no {}, token_embd.weight or tokenizer.ggml.tokens", path,
             n.vocab);
  }
  if (embd != nullptr) {
    ESA_CHECK(embd->shape.size() == 2 && embd->shape[0] == c.hidden && embd->shape[1] == c.vocab,
              "{}: token_embd.weight has {} dims [{}], expected [{} (hidden), {} (vocab)]", path,
              embd->shape.size(), fmt::join(embd->shape, ", "), c.hidden, c.vocab);
  }
  c.tied_embeddings = gguf.find_tensor("output.weight") == nullptr;
  c.qkv_bias = gguf.find_tensor("blk.0.attn_q.bias") != nullptr;

  RopeConfig& rope = c.rope;
  // llama.cpp runs llama with LLAMA_ROPE_TYPE_NORM on Q/K rows its converter permuted, and qwen2
  // with LLAMA_ROPE_TYPE_NEOX on unpermuted rows (HF's rotate_half).
  rope.style = c.arch == Architecture::qwen2 ? RopeStyle::rotate_half : RopeStyle::adjacent_pairs;
  rope.base = gguf.find_float(n.rope_base).value_or(10000.0);
  rope.dim = gguf.find_int(n.rope_dim).value_or(c.head_dim);
  const std::string type_key = arch + ".rope.scaling.type";
  if (const auto type = gguf.find_string(type_key)) {
    ESA_CHECK(*type == "none" || *type == "linear" || *type == "yarn",
              "{}: {} is '{}'; esa supports none, linear, yarn", path, type_key, *type);
    rope.scaling = parse_rope_scaling(*type);
    if (rope.scaling != RopeScaling::none) rope.factor = gguf.get_float(n.rope_factor);
  } else if (const auto scale = gguf.find_float(arch + ".rope.scale_linear"); scale && *scale != 1.0) {
    rope.scaling = RopeScaling::linear;  // the pre-2024 key
    rope.factor = *scale;
  }
  if (rope.scaling == RopeScaling::yarn) {
    rope.original_context = gguf.find_int(n.original_context).value_or(c.context);
    rope.yarn_beta_fast = gguf.find_float(n.beta_fast).value_or(32.0);
    rope.yarn_beta_slow = gguf.find_float(n.beta_slow).value_or(1.0);
    rope.yarn_attn_factor = gguf.find_float(n.attn_factor).value_or(1.0) * yarn_mscale(rope.factor);
  }
  rope.freq_factors_tensor = gguf.find_tensor("rope_freqs.weight") != nullptr;

  validate_config(c, path, n);
  return c;
}

}  // namespace esa
