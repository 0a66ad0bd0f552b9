// The CPU forward pass against Hugging Face transformers (fixtures from
// scripts/reference/hf_logits.py): last-position logits, per-layer hidden states, the final
// norm, and greedy continuations, for the embedded SmolLM2 GGUF and for tiny random Llama
// (sharded safetensors, llama3 RoPE scaling, untied head) and Qwen2 (QKV bias, tied) models.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"
#include "engine/generate.h"
#include "engine/llama.h"
#include "support/test_support.h"
#include "text/tokenizer.h"

namespace esa {
namespace {

using nlohmann::json;

struct LayerStats {
  double frob2 = 0.0;
  std::vector<float> first, last;
};

// max |a - b| / max |b| over the entries of b.
double rel_max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0.0, m = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    d = std::max(d, double(std::fabs(a.at(i) - b[i])));
    m = std::max(m, double(std::fabs(b[i])));
  }
  return m > 0 ? d / m : d;
}

std::vector<float> floats(const json& j) { return j.get<std::vector<float>>(); }

struct Golden {
  json doc;
  explicit Golden(const std::string& name) : doc(json::parse(test::read_file(test::fixture("model/" + name)))) {}
};

// Runs one fixture prompt through the model and compares everything the fixture records.
void check_prompt(const LlamaModel& model, const json& p, int64_t chunk, double logit_tol, double hidden_tol) {
  const std::string name = p["name"].get<std::string>();
  const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
  const int64_t width = int64_t(p["hidden"][0]["first"].size());
  const int64_t H = model.config().hidden;
  std::map<int64_t, LayerStats> stats;  // layer -1: embedding
  std::vector<float> final_norm;
  ForwardOptions opt;
  opt.chunk = chunk;
  int64_t seen = 0;  // tokens before the current chunk
  opt.hook = [&](std::string_view what, int64_t layer, const TensorView& v) {
    if (what == "final_norm") {
      final_norm.assign(v.data + (v.shape[0] - 1) * H, v.data + (v.shape[0] - 1) * H + width);
      return;
    }
    if (what != "embed" && what != "hidden") return;
    LayerStats& s = stats[layer];
    const int64_t T = v.shape[0];
    for (int64_t i = 0; i < T * H; ++i) s.frob2 += double(v.data[i]) * v.data[i];
    if (seen == 0) s.first.assign(v.data, v.data + width);
    s.last.assign(v.data + (T - 1) * H, v.data + (T - 1) * H + width);
    if (what == "hidden" && layer == model.config().n_layers - 1) seen += T;
  };
  KvCache cache = model.make_cache();
  const Tensor logits = model.forward(ids, cache, opt);

  // Hidden states per layer.
  double worst_hidden = 0.0;
  for (const json& h : p["hidden"]) {
    const int64_t layer = h["layer"].get<int64_t>();
    const LayerStats& s = stats.at(layer);
    const double frob = std::sqrt(s.frob2), ref = h["frobenius"].get<double>();
    const double d_first = rel_max_diff(s.first, floats(h["first"]));
    const double d_last = rel_max_diff(s.last, floats(h["last"]));
    const double d_frob = std::fabs(frob - ref) / ref;
    const double worst = std::max({d_first, d_last, d_frob});
    worst_hidden = std::max(worst_hidden, worst);
    std::printf("[ layer    ] %s layer %3lld: frobenius rel %.2e, first rel %.2e, last rel %.2e\n", name.c_str(),
                static_cast<long long>(layer), d_frob, d_first, d_last);
    EXPECT_LE(worst, hidden_tol) << name << " layer " << layer;
  }
  EXPECT_LE(rel_max_diff(final_norm, floats(p["final_norm"]["last"])), hidden_tol) << name << " final norm";

  // Last-position logits on the reference's top-50, and the argmax.
  const std::vector<int32_t> top_ids = p["logits"]["top_ids"].get<std::vector<int32_t>>();
  const std::vector<float> top_values = floats(p["logits"]["top_values"]);
  double max_d = 0.0;
  for (size_t i = 0; i < top_ids.size(); ++i) {
    max_d = std::max(max_d, double(std::fabs(logits.data()[top_ids[i]] - top_values[i])));
  }
  const double max_ref = p["logits"]["max_abs"].get<double>();
  std::printf("[ logits   ] %s (%zu tokens): max |d| / max |ref| over the top-%zu = %.2e, worst hidden rel %.2e\n",
              name.c_str(), ids.size(), top_ids.size(), max_d / max_ref, worst_hidden);
  EXPECT_LE(max_d / max_ref, logit_tol) << name;
  EXPECT_EQ(argmax(logits.data(), logits.numel()), p["logits"]["argmax"].get<int32_t>()) << name;

  // Greedy continuation (no stop tokens: the reference ran exactly n_new steps).
  const std::vector<int32_t> want = p["greedy"]["ids"].get<std::vector<int32_t>>();
  GenerateOptions g;
  g.max_new = int64_t(want.size());
  g.chunk = chunk;
  const GenerateResult r = generate_greedy(model, ids, g);
  EXPECT_EQ(r.tokens, want) << name << ": greedy continuation differs";
}

TEST(LlamaGolden, SmolLm2MatchesTransformers) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const Golden golden("smollm2.json");
  const LlamaModel model = LlamaModel::load(test::default_model_path());
  const auto tok = text::load_tokenizer(test::default_model_path());
  ASSERT_GE(golden.doc["prompts"].size(), 4u);
  bool long_prompt = false;
  for (const json& p : golden.doc["prompts"]) {
    // The tokenizer gives the fixture's ids (the forward pass below feeds the fixture's ids).
    EXPECT_EQ(tok->encode(p["text"].get<std::string>(), false, true), p["ids"].get<std::vector<int32_t>>())
        << p["name"];
    long_prompt = long_prompt || p["ids"].size() >= 2000;
    check_prompt(model, p, /*chunk=*/512, /*logit_tol=*/1e-3, /*hidden_tol=*/1e-3);
  }
  EXPECT_TRUE(long_prompt) << "the fixture needs a prompt of at least 2,000 tokens";
}

TEST(LlamaGolden, TinyLlamaShardedSafetensors) {
  const Golden golden("tiny_llama.json");
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  EXPECT_EQ(model.config().rope.scaling, RopeScaling::llama3);
  EXPECT_EQ(model.config().rope.style, RopeStyle::rotate_half);
  EXPECT_FALSE(model.config().tied_embeddings);
  for (const json& p : golden.doc["prompts"]) check_prompt(model, p, /*chunk=*/64, 1e-4, 1e-4);
}

TEST(LlamaGolden, TinyQwen2WithBias) {
  const Golden golden("tiny_qwen2.json");
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_qwen2"));
  EXPECT_TRUE(model.config().qkv_bias);
  for (const json& p : golden.doc["prompts"]) check_prompt(model, p, /*chunk=*/64, 1e-4, 1e-4);
}

TEST(Llama, ChunkSizeDoesNotChangeTheResult) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  std::vector<int32_t> ids;
  for (int i = 0; i < 97; ++i) ids.push_back((i * 37 + 11) % int(model.config().vocab));
  ForwardOptions opt;
  opt.all_logits = true;
  KvCache whole = model.make_cache();
  const Tensor a = model.forward(ids, whole, opt);
  for (int64_t chunk : {1, 7, 32, 96}) {
    opt.chunk = chunk;
    KvCache cache = model.make_cache();
    const Tensor b = model.forward(ids, cache, opt);
    const std::vector<float> va(a.data(), a.data() + a.numel()), vb(b.data(), b.data() + b.numel());
    EXPECT_LE(rel_max_diff(vb, va), 1e-5) << "chunk " << chunk;
    EXPECT_EQ(cache.size(), int64_t(ids.size()));
  }
  // Incremental decode equals one pass.
  KvCache inc = model.make_cache();
  Tensor last;
  for (int32_t id : ids) last = model.forward(std::span<const int32_t>(&id, 1), inc, {});
  const std::vector<float> row(a.data() + (a.dim(0) - 1) * a.dim(1), a.data() + a.numel());
  EXPECT_LE(rel_max_diff(std::vector<float>(last.data(), last.data() + last.numel()), row), 1e-5);
  EXPECT_GT(inc.bytes_used(), 0u);
}

TEST(Llama, BadInputsAreErrors) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  KvCache cache = model.make_cache();
  const std::vector<int32_t> bad = {1, int32_t(model.config().vocab)};
  EXPECT_THROW(model.forward(bad, cache, {}), Error);
  EXPECT_THROW(model.forward(std::span<const int32_t>(), cache, {}), Error);
  ForwardOptions zero;
  zero.chunk = 0;
  const std::vector<int32_t> ok = {1, 2};
  EXPECT_THROW(model.forward(ok, cache, zero), Error);
}

}  // namespace
}  // namespace esa

namespace esa {
namespace {

TEST(Llama, HookSeesEveryNamedIntermediate) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  const ModelConfig& c = model.config();
  std::map<std::string, int> calls;
  std::map<std::string, std::vector<int64_t>> shapes;
  ForwardOptions opt;
  opt.chunk = 4;
  opt.hook = [&](std::string_view name, int64_t layer, const TensorView& v) {
    calls[std::string(name)] += 1;
    shapes[std::string(name)] = v.shape;
    EXPECT_GE(layer, -1);
    EXPECT_LT(layer, c.n_layers);
  };
  KvCache cache = model.make_cache();
  const std::vector<int32_t> ids = {5, 6, 7, 8, 9, 10};  // two chunks: 4 + 2 tokens
  model.forward(ids, cache, opt);
  const int chunks = 2;
  for (const char* name : {"attn_norm", "q", "k", "v", "q_rope", "k_rope", "attn", "attn_out", "mlp_out", "hidden"}) {
    EXPECT_EQ(calls[name], chunks * c.n_layers) << name;
  }
  EXPECT_EQ(calls["embed"], chunks);
  EXPECT_EQ(calls["final_norm"], 1);  // logits only for the last token of the last chunk
  EXPECT_EQ(shapes["q"], (std::vector<int64_t>{2, c.n_heads, c.head_dim}));
  EXPECT_EQ(shapes["k_rope"], (std::vector<int64_t>{2, c.n_kv_heads, c.head_dim}));
  EXPECT_EQ(shapes["hidden"], (std::vector<int64_t>{2, c.hidden}));
  EXPECT_EQ(cache.size(), 6);
  EXPECT_EQ(cache.bytes_used(), size_t(3 * c.n_layers * 6 * c.n_kv_heads * c.head_dim) * sizeof(float));
}

TEST(Llama, KeysAreCachedBeforeRope) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  std::vector<float> k_seen, k_rope_seen;
  ForwardOptions opt;
  opt.hook = [&](std::string_view name, int64_t layer, const TensorView& v) {
    if (layer != 1) return;
    if (name == "k") k_seen.assign(v.data, v.data + v.numel());
    if (name == "k_rope") k_rope_seen.assign(v.data, v.data + v.numel());
  };
  KvCache cache = model.make_cache();
  const std::vector<int32_t> ids = {3, 1, 4, 1, 5};
  model.forward(ids, cache, opt);
  const TensorView raw = cache.keys(1), rotated = cache.keys_rotated(1);
  EXPECT_EQ(std::vector<float>(raw.data, raw.data + raw.numel()), k_seen);
  EXPECT_EQ(std::vector<float>(rotated.data, rotated.data + rotated.numel()), k_rope_seen);
  EXPECT_NE(k_seen, k_rope_seen);  // position > 0 rotates
}

// The host half of a GPU model's cache: keys before RoPE only; what lives on the device is refused.
TEST(KvCache, KeysOnlyHoldsTheKeysAndRefusesTheRest) {
  KvCache cache(2, 2, 4, KvContents::keys_only);
  std::vector<float> k(3 * 8);
  for (size_t i = 0; i < k.size(); ++i) k[i] = float(i);
  cache.append(0, k.data(), nullptr, nullptr, 3);
  cache.append(1, k.data(), nullptr, nullptr, 3);
  EXPECT_EQ(cache.size(), 3);
  const TensorView keys = cache.keys(1);
  EXPECT_EQ(std::vector<float>(keys.data, keys.data + keys.numel()), k);
  EXPECT_THROW(cache.values(0), Error);
  EXPECT_THROW(cache.keys_rotated(0), Error);
  cache.truncate(2);
  EXPECT_EQ(cache.size(), 2);
  EXPECT_EQ(cache.keys(0).numel(), 2 * 8);
  EXPECT_EQ(cache.bytes_used(), 2 * 2 * 8 * sizeof(float));
  // A CPU model refuses it (its forward needs the values).
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  KvCache foreign(model.config().n_layers, model.config().n_kv_heads, model.config().head_dim, KvContents::keys_only);
  const std::vector<int32_t> ids = {3, 1, 4};
  EXPECT_THROW(model.forward(ids, foreign), Error);
}

// Without a GPU (CI), --device cuda is one clear error, not a crash. The GPU side is
// tests/unit/test_forward_cuda.cc.
TEST(Llama, CudaWithoutAGpuIsAClearError) {
  if (!cuda_devices().empty()) GTEST_SKIP() << "a GPU is present (test_cuda covers it)";
  LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  try {
    model.use_device(Device::cuda);
    ADD_FAILURE() << "use_device(cuda) succeeded without a GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
  EXPECT_EQ(model.device(), Device::cpu);
}

// --kv-offload is a GPU mode: asked of the CPU it is one clear error, from the flag parser and
// from the model.
TEST(Llama, KvOffloadOnTheCpuIsAClearError) {
  LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      if (attempt == 0) parse_placement("cpu", true);
      if (attempt == 1) model.use_device(Placement(Device::cpu, true));
      ADD_FAILURE() << "--kv-offload on the CPU was accepted (attempt " << attempt << ")";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--kv-offload"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(model.device(), Device::cpu);
  EXPECT_FALSE(model.placement().kv_offload);
  EXPECT_EQ(placement_description(Placement(Device::cpu)), "cpu");
}

TEST(Generate, StopsAtAStopToken) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  const std::vector<int32_t> prompt = {11, 12, 13};
  GenerateOptions g;
  g.max_new = 8;
  const GenerateResult free_run = generate_greedy(model, prompt, g);
  ASSERT_EQ(free_run.tokens.size(), 8u);
  EXPECT_EQ(free_run.stop_reason, "max tokens");
  g.stop_ids = {free_run.tokens[3]};
  const GenerateResult stopped = generate_greedy(model, prompt, g);
  const auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[3]);
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(free_run.tokens.begin(), first));
  EXPECT_EQ(stopped.stop_reason, "stop token");
  EXPECT_GT(stopped.kv_cache_bytes, 0u);
}

}  // namespace
}  // namespace esa
