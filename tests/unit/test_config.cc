// ModelConfig: Hugging Face config.json (the safetensors fixtures and invalid variants), GGUF
// metadata (the embedded SmolLM2 model and small synthetic GGUF files), and validation errors
// that name the file and the key.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "support/test_support.h"

namespace esa {
namespace {

using Json = nlohmann::json;

/// Expects an esa::Error whose one-line message starts with "<path>: " and contains each needle.
void expect_error(const std::function<void()>& fn, const std::string& path,
                  const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no esa::Error; expected one containing: " << needles.front();
  } catch (const esa::Error& e) {
    const std::string msg = e.what();
    std::printf("[ message  ] %s\n", msg.c_str());
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the file: " << msg;
    for (const auto& needle : needles) {
      EXPECT_NE(msg.find(needle), std::string::npos) << "message lacks '" << needle << "': " << msg;
    }
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

std::string write_json(const std::string& name, const Json& j) {
  const std::string path = esa::test::temp_dir() + "/" + name;
  std::ofstream(path) << j.dump(2);
  return path;
}

Json fixture_json(const std::string& relative) {
  return Json::parse(esa::test::read_file(esa::test::fixture(relative)));
}

// ---- Hugging Face config.json --------------------------------------------------------------

TEST(ConfigHf, LlamaFixtureWithLlama3Scaling) {
  const ModelConfig c = config_from_hf_json(esa::test::fixture("safetensors/llama_sharded/config.json"));
  EXPECT_EQ(c.arch, Architecture::llama);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.ffn, 128);
  EXPECT_EQ(c.vocab, 256);
  EXPECT_EQ(c.context, 4096);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.name, "llama_sharded");  // no _name_or_path: the folder
  EXPECT_DOUBLE_EQ(c.rope.base, 500000.0);
  EXPECT_EQ(c.rope.dim, 16);
  EXPECT_EQ(c.rope.style, RopeStyle::rotate_half);
  EXPECT_EQ(c.rope.scaling, RopeScaling::llama3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.rope.original_context, 512);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_FALSE(c.rope.freq_factors_tensor);
  EXPECT_NO_THROW(c.validate("x"));
}

TEST(ConfigHf, Qwen2Fixture) {
  const ModelConfig c = config_from_hf_json(esa::test::fixture("safetensors/qwen2_single/config.json"));
  EXPECT_EQ(c.arch, Architecture::qwen2);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.hidden, 16);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);  // hidden / heads: no head_dim key
  EXPECT_EQ(c.ffn, 32);
  EXPECT_EQ(c.vocab, 64);
  EXPECT_EQ(c.context, 32768);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_FALSE(c.tied_embeddings);  // the key is absent: default false
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window is false
  EXPECT_DOUBLE_EQ(c.rope.base, 1e6);
  EXPECT_EQ(c.rope.scaling, RopeScaling::none);
  EXPECT_EQ(c.rope.style, RopeStyle::rotate_half);
}

TEST(ConfigHf, FixtureConfigsMatchTheirWeights) {
  for (const char* name : {"llama_sharded", "qwen2_single"}) {
    SCOPED_TRACE(name);
    const std::string dir = esa::test::fixture(std::string("safetensors/") + name);
    const ModelConfig c = config_from_hf_json(dir + "/config.json");
    const io::SafetensorsCheckpoint ckpt(dir);
    EXPECT_EQ(ckpt.info("model.embed_tokens.weight").shape, (std::vector<int64_t>{c.vocab, c.hidden}));
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      EXPECT_EQ(ckpt.info(p + "self_attn.q_proj.weight").shape,
                (std::vector<int64_t>{c.n_heads * c.head_dim, c.hidden}));
      EXPECT_EQ(ckpt.info(p + "self_attn.k_proj.weight").shape,
                (std::vector<int64_t>{c.n_kv_heads * c.head_dim, c.hidden}));
      EXPECT_EQ(ckpt.info(p + "mlp.down_proj.weight").shape, (std::vector<int64_t>{c.hidden, c.ffn}));
      EXPECT_EQ(ckpt.find(p + "self_attn.q_proj.bias") != nullptr, c.qkv_bias);
    }
    EXPECT_EQ(ckpt.find("lm_head.weight") == nullptr, c.tied_embeddings);
  }
}

TEST(ConfigHf, MistralYarnAndArchitecturesFallback) {
  Json j = fixture_json("safetensors/llama_sharded/config.json");
  j.erase("model_type");
  j["architectures"] = {"MistralForCausalLM"};
  j["head_dim"] = nullptr;  // Mistral configs write null: hidden / heads
  j["sliding_window"] = 4096;
  j["_name_or_path"] = "tiny-mistral";
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 1024}};
  const ModelConfig c = config_from_hf_json(write_json("config.json", j));
  EXPECT_EQ(c.arch, Architecture::mistral);
  EXPECT_EQ(c.name, "tiny-mistral");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.rope.scaling, RopeScaling::yarn);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_EQ(c.rope.original_context, 1024);
  EXPECT_DOUBLE_EQ(c.rope.yarn_beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.yarn_beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.yarn_attn_factor, 0.1 * std::log(4.0) + 1.0);  // transformers' get_mscale

  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2}};
  const ModelConfig linear = config_from_hf_json(write_json("config.json", j));
  EXPECT_EQ(linear.rope.scaling, RopeScaling::linear);
  EXPECT_DOUBLE_EQ(linear.rope.factor, 2.0);

  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(config_from_hf_json(write_json("config.json", j)).rope.scaling, RopeScaling::none);
}

struct BadConfig {
  const char* name;
  std::function<void(Json&)> edit;
  std::vector<std::string> needles;  // the key, and what is wrong
};

TEST(ConfigHf, InvalidConfigsNameTheFileAndKey) {
  const Json base = fixture_json("safetensors/llama_sharded/config.json");
  const std::vector<BadConfig> cases = {
      {"heads_not_divisible", [](Json& j) { j["num_key_value_heads"] = 3; },
       {"num_attention_heads (4) is not a multiple of num_key_value_heads (3)"}},
      {"missing_hidden_size", [](Json& j) { j.erase("hidden_size"); }, {"missing key 'hidden_size'"}},
      {"missing_vocab_size", [](Json& j) { j.erase("vocab_size"); }, {"missing key 'vocab_size'"}},
      {"unknown_model_type", [](Json& j) { j["model_type"] = "gpt2"; },
       {"unknown model_type 'gpt2'", "esa supports llama, mistral, qwen2"}},
      {"unknown_architecture", [](Json& j) { j.erase("model_type"); j["architectures"] = {"GPT2LMHeadModel"}; },
       {"architectures[0] 'GPT2LMHeadModel'"}},
      {"no_type_at_all", [](Json& j) { j.erase("model_type"); j.erase("architectures"); },
       {"missing key 'model_type'"}},
      {"bad_rope_scaling_type", [](Json& j) { j["rope_scaling"]["rope_type"] = "dynamic"; },
       {"rope_scaling.rope_type is 'dynamic'"}},
      {"rope_scaling_without_type", [](Json& j) { j["rope_scaling"].erase("rope_type"); },
       {"missing key 'rope_scaling.rope_type'"}},
      {"llama3_without_low_freq", [](Json& j) { j["rope_scaling"].erase("low_freq_factor"); },
       {"missing key 'rope_scaling.low_freq_factor'"}},
      {"llama3_factor_zero", [](Json& j) { j["rope_scaling"]["factor"] = 0; },
       {"rope_scaling.factor is 0, expected a positive number"}},
      {"llama3_high_below_low", [](Json& j) { j["rope_scaling"]["high_freq_factor"] = 0.5; },
       {"rope_scaling.high_freq_factor is 0.5"}},
      {"rope_scaling_not_object", [](Json& j) { j["rope_scaling"] = "llama3"; },
       {"key 'rope_scaling' is a JSON string"}},
      {"hidden_size_string", [](Json& j) { j["hidden_size"] = "64"; },
       {"key 'hidden_size' is \"64\" (string), expected an integer"}},
      {"layers_fractional", [](Json& j) { j["num_hidden_layers"] = 2.5; }, {"key 'num_hidden_layers' is 2.5"}},
      {"layers_zero", [](Json& j) { j["num_hidden_layers"] = 0; },
       {"num_hidden_layers is 0, expected an integer in [1,"}},
      {"negative_ffn", [](Json& j) { j["intermediate_size"] = -128; }, {"intermediate_size is -128"}},
      {"odd_head_dim", [](Json& j) { j["head_dim"] = 15; }, {"head_dim is 15, expected an even number in [2, 15]"}},
      {"hidden_not_multiple", [](Json& j) { j.erase("head_dim"); j["hidden_size"] = 66; },
       {"hidden_size (66) is not a multiple of num_attention_heads (4)"}},
      {"eps_negative", [](Json& j) { j["rms_norm_eps"] = -1e-5; }, {"rms_norm_eps is -1e-05"}},
      {"theta_zero", [](Json& j) { j["rope_theta"] = 0; }, {"rope_theta is 0"}},
      {"gelu", [](Json& j) { j["hidden_act"] = "gelu"; }, {"hidden_act is 'gelu'"}},
      {"tie_not_bool", [](Json& j) { j["tie_word_embeddings"] = 1; }, {"key 'tie_word_embeddings' is 1"}},
      {"mlp_bias", [](Json& j) { j["mlp_bias"] = true; }, {"mlp_bias"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Json j = base;
    c.edit(j);
    const std::string path = write_json("config.json", j);
    expect_error([&] { config_from_hf_json(path); }, path, c.needles);
  }

  const std::string dir = esa::test::temp_dir();
  std::ofstream(dir + "/array.json") << "[1, 2]";
  expect_error([&] { config_from_hf_json(dir + "/array.json"); }, dir + "/array.json",
               {"config is a JSON array, expected an object"});
  std::ofstream(dir + "/broken.json") << R"({"model_type": "llama",)";
  expect_error([&] { config_from_hf_json(dir + "/broken.json"); }, dir + "/broken.json", {"not valid JSON"});
  expect_error([&] { config_from_hf_json(dir + "/absent.json"); }, dir + "/absent.json", {"no such file"});
}

TEST(Config, ValidateAndNames) {
  ModelConfig c;
  expect_error([&] { c.validate("defaults"); }, "defaults", {"n_layers is 0"});
  c = config_from_hf_json(esa::test::fixture("safetensors/llama_sharded/config.json"));
  c.n_kv_heads = 3;
  expect_error([&] { c.validate("edited"); }, "edited", {"n_heads (4) is not a multiple of n_kv_heads (3)"});
  c.n_kv_heads = 2;
  c.rope.dim = 18;
  expect_error([&] { c.validate("edited"); }, "edited", {"rope.dim is 18, expected an even number in [2, 16]"});

  EXPECT_EQ(parse_rope_scaling("default"), RopeScaling::none);
  EXPECT_EQ(parse_rope_scaling("none"), RopeScaling::none);
  EXPECT_EQ(parse_rope_scaling("yarn"), RopeScaling::yarn);
  EXPECT_THROW(parse_rope_scaling("dynamic"), esa::Error);
  for (auto s : {RopeScaling::none, RopeScaling::linear, RopeScaling::llama3, RopeScaling::yarn}) {
    EXPECT_EQ(parse_rope_scaling(rope_scaling_name(s)), s);
  }
  EXPECT_STREQ(architecture_name(Architecture::qwen2), "qwen2");
  EXPECT_STREQ(rope_style_name(RopeStyle::adjacent_pairs), "adjacent_pairs");
}

// ---- GGUF ----------------------------------------------------------------------------------

TEST(ConfigGguf, EmbeddedSmolLM2) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const io::GgufFile gguf(esa::test::default_model_path());
  const ModelConfig c = config_from_gguf(gguf);
  EXPECT_EQ(c.arch, Architecture::llama);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.ffn, 1536);
  EXPECT_EQ(c.vocab, 49152);
  EXPECT_EQ(c.context, 8192);
  EXPECT_DOUBLE_EQ(c.rope.base, 100000.0);
  EXPECT_EQ(c.rope.dim, 64);
  EXPECT_EQ(c.rope.style, RopeStyle::adjacent_pairs);
  EXPECT_EQ(c.rope.scaling, RopeScaling::none);
  EXPECT_FALSE(c.rope.freq_factors_tensor);
  EXPECT_NEAR(c.rms_eps, 1e-5, 1e-12);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.name.empty());
}

/// Writes a small GGUF v3 file: metadata (string, u32, f32 values) and F32 tensors of zeros.
class GgufWriter {
 public:
  GgufWriter& str(const std::string& key, const std::string& v) {
    kv(key, 8);
    string(meta_, v);
    ++n_kv_;
    return *this;
  }
  GgufWriter& u32(const std::string& key, uint32_t v) {
    kv(key, 4);
    pod(meta_, v);
    ++n_kv_;
    return *this;
  }
  GgufWriter& f32(const std::string& key, float v) {
    kv(key, 6);
    pod(meta_, v);
    ++n_kv_;
    return *this;
  }
  /// `shape` in GGUF order (fastest-varying first).
  GgufWriter& tensor(const std::string& name, const std::vector<uint64_t>& shape) {
    string(infos_, name);
    pod(infos_, static_cast<uint32_t>(shape.size()));
    uint64_t n = 1;
    for (uint64_t d : shape) {
      pod(infos_, d);
      n *= d;
    }
    pod(infos_, uint32_t{0});  // F32
    pod(infos_, static_cast<uint64_t>(data_.size()));
    data_.append(n * 4, '\0');
    data_.append((32 - data_.size() % 32) % 32, '\0');
    ++n_tensors_;
    return *this;
  }
  std::string write(const std::string& name) const {
    std::string out = "GGUF";
    pod(out, uint32_t{3});
    pod(out, n_tensors_);
    pod(out, n_kv_);
    out += meta_ + infos_;
    out.append((32 - out.size() % 32) % 32, '\0');
    out += data_;
    const std::string path = esa::test::temp_dir() + "/" + name;
    std::ofstream(path, std::ios::binary).write(out.data(), static_cast<std::streamsize>(out.size()));
    return path;
  }

 private:
  template <typename T>
  static void pod(std::string& out, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
  }
  static void string(std::string& out, const std::string& s) {
    pod(out, static_cast<uint64_t>(s.size()));
    out += s;
  }
  void kv(const std::string& key, uint32_t type) {
    string(meta_, key);
    pod(meta_, type);
  }
  std::string meta_, infos_, data_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
};

/// A consistent tiny model's metadata under `arch`.
GgufWriter tiny_gguf(const std::string& arch) {
  GgufWriter w;
  w.str("general.architecture", arch)
      .u32(arch + ".block_count", 2)
      .u32(arch + ".context_length", 1024)
      .u32(arch + ".embedding_length", 32)
      .u32(arch + ".feed_forward_length", 64)
      .u32(arch + ".attention.head_count", 4)
      .f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  return w;
}

TEST(ConfigGguf, SyntheticQwen2Defaults) {
  const std::string path = tiny_gguf("qwen2")
                               .f32("qwen2.rope.freq_base", 1e6f)
                               .tensor("token_embd.weight", {32, 48})
                               .tensor("blk.0.attn_q.bias", {32})
                               .tensor("output.weight", {32, 48})
                               .write("qwen2.gguf");
  const ModelConfig c = config_from_gguf(io::GgufFile(path));
  EXPECT_EQ(c.arch, Architecture::qwen2);
  EXPECT_EQ(c.n_kv_heads, 4);    // head_count_kv absent: = head_count
  EXPECT_EQ(c.head_dim, 8);      // no key_length: hidden / heads
  EXPECT_EQ(c.rope.dim, 8);      // no dimension_count: head_dim
  EXPECT_EQ(c.vocab, 48);        // no vocab_size: token_embd.weight's rows
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.rope.style, RopeStyle::rotate_half);  // llama.cpp runs qwen2 as NEOX
  EXPECT_DOUBLE_EQ(c.rope.base, 1e6);
  EXPECT_EQ(c.name, "qwen2");  // no general.name: the file stem

  // Defaults for a llama file without rope keys; yarn scaling; a rope_freqs tensor.
  const std::string yarn = tiny_gguf("llama")
                               .u32("llama.vocab_size", 100)
                               .str("llama.rope.scaling.type", "yarn")
                               .f32("llama.rope.scaling.factor", 4.0f)
                               .u32("llama.rope.scaling.original_context_length", 256)
                               .tensor("rope_freqs.weight", {4})
                               .write("yarn.gguf");
  const ModelConfig y = config_from_gguf(io::GgufFile(yarn));
  EXPECT_EQ(y.rope.style, RopeStyle::adjacent_pairs);
  EXPECT_DOUBLE_EQ(y.rope.base, 10000.0);
  EXPECT_EQ(y.vocab, 100);
  EXPECT_TRUE(y.tied_embeddings);
  EXPECT_EQ(y.rope.scaling, RopeScaling::yarn);
  EXPECT_DOUBLE_EQ(y.rope.factor, 4.0);
  EXPECT_EQ(y.rope.original_context, 256);
  EXPECT_DOUBLE_EQ(y.rope.yarn_attn_factor, 0.1 * std::log(4.0) + 1.0);
  EXPECT_TRUE(y.rope.freq_factors_tensor);
}

TEST(ConfigGguf, InvalidMetadataNamesTheFileAndKey) {
  {
    const std::string path = GgufWriter().str("general.architecture", "gpt2").write("gpt2.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path,
                 {"unknown architecture 'gpt2' (esa supports llama, mistral, qwen2)"});
  }
  {
    const std::string path = GgufWriter()
                                 .str("general.architecture", "llama")
                                 .u32("llama.context_length", 1024)
                                 .write("no_blocks.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path, {"llama.block_count"});
  }
  {
    const std::string path = tiny_gguf("llama").u32("llama.attention.head_count_kv", 3).u32("llama.vocab_size", 8)
                                 .write("kv.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path,
                 {"llama.attention.head_count (4) is not a multiple of llama.attention.head_count_kv (3)"});
  }
  {
    const std::string path = tiny_gguf("llama").write("no_vocab.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path, {"vocabulary size", "llama.vocab_size"});
  }
  {
    const std::string path = tiny_gguf("llama").u32("llama.vocab_size", 8).str("llama.rope.scaling.type", "longrope")
                                 .write("longrope.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path, {"llama.rope.scaling.type is 'longrope'"});
  }
  {
    const std::string path = tiny_gguf("llama").u32("llama.vocab_size", 8).u32("llama.rope.dimension_count", 7)
                                 .write("rope_dim.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path, {"llama.rope.dimension_count is 7"});
  }
  {
    const std::string path =
        tiny_gguf("llama").u32("llama.vocab_size", 8).tensor("token_embd.weight", {32, 9}).write("embd.gguf");
    expect_error([&] { config_from_gguf(io::GgufFile(path)); }, path, {"token_embd.weight", "8 (vocab)"});
  }
}

}  // namespace
}  // namespace esa
