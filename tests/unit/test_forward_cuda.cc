// The model forward on the GPU (engine/llama_cuda.h) against LlamaModel on the CPU: random bf16
// models of several shapes with every policy (the CPU replays the GPU's selection so logits
// compare by arithmetic; the GPU's choice is compared with the CPU policy's own), every named
// intermediate, the embedded model, and greedy decoding on the device (CUDA graphs) against the
// host loop. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "attention/policy.h"
#include "core/error.h"
#include "core/half.h"
#include "engine/generate.h"
#include "engine/llama.h"
#include "ops/rope.h"
#include "support/cuda_test.h"
#include "support/test_support.h"

namespace esa {
namespace {

using test::CudaTest;
using test::DeviceArray;
using test::to_bf16;

// ---- the model forward on the GPU (engine/llama_cuda.h) against LlamaModel on the CPU ----------

struct TinyShape {
  int64_t heads, kv_heads, head_dim, rope_dim;
  RopeStyle style;
  bool bias, tied;
};

// A random Llama-family model whose weights are bf16 values (the GPU keeps bf16), so that GPU
// and CPU differ only by the GPU's bf16 activations and cache.
LlamaModel random_model(const TinyShape& s, std::mt19937_64& rng) {
  ModelConfig c;
  c.name = "random";
  c.n_layers = 2;
  c.hidden = 128;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.ffn = 192;
  c.vocab = 256;
  c.context = 4096;
  c.tied_embeddings = s.tied;
  c.qkv_bias = s.bias;
  c.rope.dim = s.rope_dim;
  c.rope.style = s.style;
  std::normal_distribution<float> normal;
  auto tensor = [&](std::vector<int64_t> shape, float sd, float mean = 0.0f) {
    Tensor t(std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = bf16_to_float(to_bf16(mean + sd * normal(rng)));
    return t;
  };
  const float sd = 1.0f / std::sqrt(float(c.hidden));
  ModelWeights w;
  w.token_embd = tensor({c.vocab, c.hidden}, 1.0f);
  w.output_norm = tensor({c.hidden}, 0.1f, 1.0f);
  if (!s.tied) w.lm_head = tensor({c.vocab, c.hidden}, sd);
  const int64_t qw = c.n_heads * c.head_dim, kw = c.n_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights L;
    L.attn_norm = tensor({c.hidden}, 0.1f, 1.0f);
    L.ffn_norm = tensor({c.hidden}, 0.1f, 1.0f);
    L.wq = tensor({qw, c.hidden}, 2 * sd);
    L.wk = tensor({kw, c.hidden}, 2 * sd);
    L.wv = tensor({kw, c.hidden}, sd);
    L.wo = tensor({c.hidden, qw}, 1.0f / std::sqrt(float(qw)));
    if (s.bias) {
      L.bq = tensor({qw}, 0.2f);
      L.bk = tensor({kw}, 0.2f);
      L.bv = tensor({kw}, 0.2f);
    }
    L.w_gate = tensor({c.ffn, c.hidden}, sd);
    L.w_up = tensor({c.ffn, c.hidden}, sd);
    L.w_down = tensor({c.hidden, c.ffn}, 1.0f / std::sqrt(float(c.ffn)));
    w.layers.push_back(std::move(L));
  }
  return LlamaModel(c, std::move(w));
}

double relative_error(const Tensor& got, const Tensor& want) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    num += std::pow(double(got.data()[i]) - want.data()[i], 2);
    den += std::pow(double(want.data()[i]), 2);
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Replays recorded selections (one list per layer and chunk, in call order): the CPU attends to
// exactly what the GPU chose, so that logits compare by arithmetic alone (a top-k boundary that
// bf16 rounding flips changes the output by more than rounding does).
class ReplayPolicy final : public attention::Policy {
 public:
  ReplayPolicy(attention::PolicyOptions o, std::vector<std::vector<int64_t>> calls)
      : Policy(std::move(o)), calls_(std::move(calls)) {}
  attention::Selection select(const attention::LayerInputs& in) override {
    attention::Selection s;
    s.local_begin = attention::split_context(options_.budget, in.chunk_begin()).local_begin;
    EXPECT_LT(next_, calls_.size()) << "more selections asked for than the GPU made";
    s.long_tokens.push_back(next_ < calls_.size() ? calls_[next_] : std::vector<int64_t>{});
    ++next_;
    return s;
  }

 private:
  std::vector<std::vector<int64_t>> calls_;
  size_t next_ = 0;
};

// Records the long-branch rows of every layer and chunk ("long_rows" hook).
ForwardHook record_rows(std::vector<std::vector<int64_t>>& calls) {
  return [&calls](std::string_view name, int64_t, const TensorView& v) {
    if (name == "long_rows") calls.emplace_back(v.data, v.data + v.numel());
  };
}

// Of the rows `got` selected per call, the fraction that `want` selected too.
double overlap(const std::vector<std::vector<int64_t>>& got, const std::vector<std::vector<int64_t>>& want) {
  int64_t same = 0, total = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    for (int64_t r : got[i]) same += std::count(want[i].begin(), want[i].end(), r);
    total += int64_t(got[i].size());
  }
  return total == 0 ? 1.0 : double(same) / double(total);
}

// One policy, GPU against CPU: the GPU prefills ids[0, prompt) in chunks of 64 and decodes the
// rest one token at a time, recording what it selects; the CPU replays the same selection and
// its logits must agree; then the CPU policy selects on its own, and at least `least` of the
// GPU's long-branch rows must be its rows too.
void expect_forward_matches_cpu(const LlamaModel& cpu, const LlamaModel& gpu, const std::vector<int32_t>& ids,
                                size_t prompt_len, const attention::PolicyOptions& po, double least,
                                const std::string& what) {
  const std::span<const int32_t> prompt(ids.data(), prompt_len);
  const bool selective = po.kind != attention::PolicyKind::full;
  std::vector<std::vector<int64_t>> gpu_rows, cpu_rows;
  const std::unique_ptr<attention::Policy> gpu_policy = selective ? attention::make_policy(po, gpu.config()) : nullptr;
  ForwardOptions fg;
  fg.chunk = 64;
  fg.all_logits = true;
  fg.policy = gpu_policy.get();
  fg.hook = record_rows(gpu_rows);
  KvCache cache_g = gpu.make_cache();
  std::vector<Tensor> got{gpu.forward(prompt, cache_g, fg)};
  for (size_t i = prompt_len; i < ids.size(); ++i) got.push_back(gpu.forward(std::span(&ids[i], 1), cache_g, fg));

  ReplayPolicy replay(po, gpu_rows);
  ForwardOptions fc = fg;
  fc.policy = selective ? &replay : nullptr;
  fc.hook = nullptr;
  KvCache cache_c = cpu.make_cache();
  std::vector<Tensor> want{cpu.forward(prompt, cache_c, fc)};
  for (size_t i = prompt_len; i < ids.size(); ++i) want.push_back(cpu.forward(std::span(&ids[i], 1), cache_c, fc));
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].shape(), want[i].shape()) << what;
    EXPECT_LT(relative_error(got[i], want[i]), 2e-2) << what << (i == 0 ? " (prefill)" : " (decode step)") << i;
  }
  EXPECT_EQ(cache_g.size(), cache_c.size()) << what;
  if (!selective) return;
  // The GPU's selection against the CPU policy's own: equal but for top-k boundaries that bf16
  // keys and queries move.
  const std::unique_ptr<attention::Policy> own = attention::make_policy(po, cpu.config());
  ForwardOptions fo = fc;
  fo.policy = own.get();
  fo.hook = record_rows(cpu_rows);
  KvCache cache_o = cpu.make_cache();
  cpu.forward(prompt, cache_o, fo);
  for (size_t i = prompt_len; i < ids.size(); ++i) cpu.forward(std::span(&ids[i], 1), cache_o, fo);
  ASSERT_EQ(gpu_rows.size(), cpu_rows.size()) << what;
  const double agree = overlap(gpu_rows, cpu_rows);
  std::printf("%s: %.1f%% of the GPU's long-branch rows are the CPU's\n", what.c_str(), 100.0 * agree);
  EXPECT_GE(agree, least) << what;
}

std::string shape_name(const TinyShape& shape) {
  return fmt::format("heads {}/{} d {} rope {} {} bias {} tied {}", shape.heads, shape.kv_heads, shape.head_dim,
                     shape.rope_dim, shape.style == RopeStyle::rotate_half ? "rotate_half" : "adjacent", shape.bias,
                     shape.tied);
}

TEST_F(CudaTest, ForwardMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(31));
  int shape_index = 0;
  for (const TinyShape& shape : {TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, false, true},
                                 TinyShape{6, 2, 128, 128, RopeStyle::rotate_half, false, true},
                                 TinyShape{4, 2, 64, 64, RopeStyle::adjacent_pairs, false, true},
                                 TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, true, true},
                                 TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, false, false},
                                 TinyShape{6, 2, 128, 64, RopeStyle::adjacent_pairs, true, false},
                                 TinyShape{8, 1, 64, 32, RopeStyle::rotate_half, false, false},
                                 TinyShape{9, 3, 64, 64, RopeStyle::rotate_half, false, true}}) {  // SmolLM2's heads
    LlamaModel cpu = random_model(shape, rng);
    LlamaModel gpu(cpu.config(), cpu.weights());
    const bool offload = shape_index++ % 2 == 1;  // every other shape with its KV cache in host memory
    gpu.use_device(Placement(Device::cuda, offload));
    std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
    std::vector<int32_t> ids(133 + 4);  // a prompt in chunks of 64, 64 and 5 (flash kernel, then the split-K
    for (int32_t& id : ids) id = token(rng);  // kernel), then 4 decode steps
    // full, esa, oracle, quest, infllm: selected on the device; streaming: on the host.
    for (const char* policy_name : {"full", "esa", "streaming", "oracle", "quest", "infllm"}) {
      attention::PolicyOptions po;
      po.kind = attention::parse_policy(policy_name);
      po.budget = {4, 16, 24, 64};
      if (po.kind == attention::PolicyKind::quest) po.budget.select = 48;  // 3 pages of 16
      // Quest's choices are whole pages: one flipped near-tie moves 16 rows at once. infllm keeps
      // the most recent middle tokens here (no block of 128 is out of the window yet).
      const double least = po.kind == attention::PolicyKind::streaming || po.kind == attention::PolicyKind::infllm ? 1.0
                           : po.kind == attention::PolicyKind::quest                                           ? 0.8
                                                                                                               : 0.9;
      expect_forward_matches_cpu(cpu, gpu, ids, 133, po, least,
                                 fmt::format("{} policy {}{}", shape_name(shape), policy_name, offload ? " kv-offload" : ""));
    }
  }
}

// The block policies past their first blocks: a prompt of 700 tokens (5 InfLLM blocks, 40 Quest
// pages out of the window), budget 256, so that both score, choose and expand whole units.
TEST_F(CudaTest, ForwardBlockPoliciesMatchCpu) {
  std::mt19937_64 rng(test::test_seed(47));
  int shape_index = 0;
  for (const TinyShape& shape : {TinyShape{9, 3, 64, 64, RopeStyle::rotate_half, false, true},
                                 TinyShape{8, 2, 128, 128, RopeStyle::rotate_half, false, true}}) {
    LlamaModel cpu = random_model(shape, rng);
    LlamaModel gpu(cpu.config(), cpu.weights());
    const bool offload = shape_index++ % 2 == 1;
    gpu.use_device(Placement(Device::cuda, offload));
    std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
    std::vector<int32_t> ids(700 + 4);
    for (int32_t& id : ids) id = token(rng);
    for (const char* policy_name : {"quest", "infllm"}) {
      attention::PolicyOptions po;
      po.kind = attention::parse_policy(policy_name);
      po.budget = {4, 32, 256, 64};
      expect_forward_matches_cpu(cpu, gpu, ids, 700, po, 0.8,
                                 fmt::format("{} policy {}{}", shape_name(shape), policy_name, offload ? " kv-offload" : ""));
    }
  }
}

// Every named intermediate of a prefill (full attention), GPU against CPU: where the logits
// differ, this says which op.
TEST_F(CudaTest, ForwardIntermediatesMatchCpu) {
  std::mt19937_64 rng(test::test_seed(43));
  for (const TinyShape& shape : {TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, false, true},
                                 TinyShape{6, 2, 128, 128, RopeStyle::rotate_half, false, true},
                                 TinyShape{8, 8, 128, 128, RopeStyle::rotate_half, false, true}}) {
    LlamaModel cpu = random_model(shape, rng);
    LlamaModel gpu(cpu.config(), cpu.weights());
    gpu.use_device(Device::cuda);
    std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
    std::vector<int32_t> ids(40);
    for (int32_t& id : ids) id = token(rng);
    std::map<std::string, Tensor> seen[2];
    for (int which = 0; which < 2; ++which) {
      ForwardOptions f;
      f.chunk = 64;
      f.hook = [&](std::string_view name, int64_t layer, const TensorView& v) {
        Tensor t(v.shape);
        std::memcpy(t.data(), v.data, size_t(v.numel()) * sizeof(float));
        seen[which][fmt::format("{}:{}", layer, name)] = std::move(t);
      };
      KvCache cache = (which == 0 ? cpu : gpu).make_cache();
      (which == 0 ? cpu : gpu).forward(ids, cache, f);
    }
    for (const auto& [name, want] : seen[0]) {
      ASSERT_TRUE(seen[1].count(name)) << name;
      const Tensor& got = seen[1].at(name);
      ASSERT_EQ(got.shape(), want.shape()) << name;
      const double err = relative_error(got, want);
      EXPECT_LT(err, 2e-2) << "heads " << shape.heads << "/" << shape.kv_heads << " d " << shape.head_dim << ": " << name;
    }
  }
}

// The embedded model (SmolLM2-135M, Q4_1 dequantised; bf16 on the GPU): last-token logits of
// random prompts with full and esa attention, GPU against CPU.
TEST_F(CudaTest, EmbeddedModelMatchesCpu) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const LlamaModel cpu = LlamaModel::load(test::default_model_path());
  LlamaModel gpu(cpu.config(), cpu.weights());
  gpu.use_device(Device::cuda);
  std::mt19937_64 rng(test::test_seed(41));
  std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
  for (int64_t length : {700, 1500}) {
    std::vector<int32_t> prompt(static_cast<size_t>(length));
    for (int32_t& id : prompt) id = token(rng);
    for (const char* policy_name : {"full", "esa"}) {
      attention::PolicyOptions po;
      po.kind = attention::parse_policy(policy_name);
      po.budget = {16, 256, 128, 256};
      std::unique_ptr<attention::Policy> pc, pg;
      if (po.kind != attention::PolicyKind::full) {
        pc = attention::make_policy(po, cpu.config());
        pg = attention::make_policy(po, gpu.config());
      }
      ForwardOptions fc, fg;
      fc.chunk = fg.chunk = 256;
      fc.policy = pc.get();
      fg.policy = pg.get();
      KvCache cc = cpu.make_cache(), cg = gpu.make_cache();
      const Tensor want = cpu.forward(prompt, cc, fc), got = gpu.forward(prompt, cg, fg);
      const std::string what = fmt::format("{} tokens, {}", length, policy_name);
      const double err = relative_error(got, want);
      std::printf("embedded model, %s: relative error of the logits %.3g\n", what.c_str(), err);
      EXPECT_LT(err, 5e-2) << what;
      // The top token agrees unless the CPU's top two are within bf16 noise.
      std::vector<float> sorted(want.data(), want.data() + want.numel());
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      const auto top = [](const Tensor& t) { return std::max_element(t.data(), t.data() + t.numel()) - t.data(); };
      if (sorted[0] - sorted[1] > 0.5f) {
        EXPECT_EQ(top(got), top(want)) << what;
      }
    }
  }
}

// ---- greedy decoding on the device (CudaForward::decode_greedy) -------------------------------

struct Decoded {
  std::vector<int32_t> tokens;
  int64_t cache_size = 0;
};

// Prefills `prompt`, takes the first token from the prefill's logits as generate does, then
// decode_greedy for `steps` steps, stopping after `keep` tokens when keep >= 0.
Decoded decode(const LlamaModel& model, std::span<const int32_t> prompt, const attention::PolicyOptions& po,
               int64_t steps, bool graphs, int64_t keep = -1) {
  const std::unique_ptr<attention::Policy> policy =
      po.kind == attention::PolicyKind::full ? nullptr : attention::make_policy(po, model.config());
  ForwardOptions f;
  f.chunk = 512;
  f.policy = policy.get();
  f.cuda_graphs = graphs;
  KvCache cache = model.make_cache();
  const Tensor logits = model.forward(prompt, cache, f);
  Decoded d;
  d.tokens.push_back(argmax(logits.data(), logits.numel()));
  model.decode_greedy(d.tokens[0], steps, cache, f, [&](int32_t id) {
    if (keep >= 0 && int64_t(d.tokens.size()) >= keep) return false;
    d.tokens.push_back(id);
    return true;
  });
  d.cache_size = cache.size();
  return d;
}

// The device loop against the host's: each step's logits downloaded and esa::argmax (a hook on
// every forward keeps decode_greedy on the host), recording the long-branch rows; the CPU then
// replays those rows over the same tokens and every step's logits must agree.
void expect_decode_matches_host(const LlamaModel& cpu, const LlamaModel& gpu, std::span<const int32_t> prompt,
                                const attention::PolicyOptions& po, int64_t steps, bool cpu_check,
                                const std::string& what) {
  const Decoded graphed = decode(gpu, prompt, po, steps, true), eager = decode(gpu, prompt, po, steps, false);
  ASSERT_EQ(graphed.tokens.size(), size_t(steps + 1)) << what;
  EXPECT_EQ(graphed.tokens, eager.tokens) << what << ": greedy tokens with and without CUDA graphs";
  EXPECT_EQ(graphed.cache_size, int64_t(prompt.size()) + steps) << what;

  const bool selective = po.kind != attention::PolicyKind::full;
  const std::unique_ptr<attention::Policy> policy = selective ? attention::make_policy(po, gpu.config()) : nullptr;
  std::vector<std::vector<int64_t>> rows;
  ForwardOptions f;
  f.chunk = 512;
  f.policy = policy.get();
  f.hook = record_rows(rows);
  KvCache cache = gpu.make_cache();
  std::vector<Tensor> host_logits{gpu.forward(prompt, cache, f)};
  std::vector<int32_t> host_tokens{argmax(host_logits[0].data(), host_logits[0].numel())};
  for (int64_t i = 0; i < steps; ++i) {
    host_logits.push_back(gpu.forward(std::span(&host_tokens.back(), 1), cache, f));
    host_tokens.push_back(argmax(host_logits.back().data(), host_logits.back().numel()));
  }
  EXPECT_EQ(graphed.tokens, host_tokens) << what << ": greedy tokens of the device loop and of the host loop";
  if (!cpu_check) return;
  ReplayPolicy replay(po, rows);
  ForwardOptions fc;
  fc.chunk = 512;
  fc.policy = selective ? &replay : nullptr;
  KvCache cc = cpu.make_cache();
  double worst = relative_error(host_logits[0], cpu.forward(prompt, cc, fc));  // the prefill's
  for (int64_t i = 0; i < steps; ++i) {
    const Tensor want = cpu.forward(std::span(&host_tokens[size_t(i)], 1), cc, fc);
    worst = std::max(worst, relative_error(host_logits[size_t(i + 1)], want));
  }
  std::printf("%s: worst relative error of %lld decode steps' logits against the CPU %.3g\n", what.c_str(),
              (long long)steps, worst);
  EXPECT_LT(worst, 2e-2) << what;
}

// 256 greedy steps after prefills of 4K (CPU-checked) and 70K tokens (the device loop against the
// host loop), every policy whose selection runs on the device; then a stop part-way: the cache
// keeps exactly the fed tokens, and decoding on from there continues the uninterrupted run.
TEST_F(CudaTest, DecodeGreedyOnTheDeviceMatchesTheHostLoop) {
  std::mt19937_64 rng(test::test_seed(53));
  const LlamaModel cpu = random_model({9, 3, 64, 64, RopeStyle::rotate_half, false, true}, rng);
  ModelConfig long_config = cpu.config();
  long_config.context = 1 << 17;
  LlamaModel gpu(long_config, cpu.weights());
  gpu.use_device(Device::cuda);
  std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
  // ESA_TEST_SHORT_DECODE=1 (the compute-sanitizer runs of scripts/gpu_check.sh): 768 tokens, 16
  // steps, full and esa.
  const bool short_run = std::getenv("ESA_TEST_SHORT_DECODE") != nullptr;
  std::vector<int32_t> ids(short_run ? 768 : 70000);
  for (int32_t& id : ids) id = token(rng);
  const int64_t steps = short_run ? 16 : 256, cpu_checked = short_run ? 768 : 4096;
  const std::vector<const char*> policies = short_run ? std::vector<const char*>{"full", "esa"}
                                                      : std::vector<const char*>{"full", "esa", "oracle", "quest", "infllm"};
  for (const char* policy_name : policies) {
    attention::PolicyOptions po;
    po.kind = attention::parse_policy(policy_name);
    po.budget = {16, 256, 512, 512};
    for (const size_t length : std::set<size_t>{size_t(cpu_checked), ids.size()}) {
      expect_decode_matches_host(cpu, gpu, std::span(ids.data(), length), po, steps, int64_t(length) <= cpu_checked,
                                 fmt::format("{}, prompt {}", policy_name, length));
    }
    const std::span<const int32_t> prompt(ids.data(), size_t(cpu_checked));
    const Decoded whole = decode(gpu, prompt, po, steps, true);
    const int64_t keep = steps / 2;
    const Decoded stopped = decode(gpu, prompt, po, steps, true, keep);
    ASSERT_EQ(int64_t(stopped.tokens.size()), keep) << policy_name;
    EXPECT_EQ(stopped.cache_size, cpu_checked + keep) << policy_name << ": the cache holds the fed tokens only";
    EXPECT_TRUE(std::equal(stopped.tokens.begin(), stopped.tokens.end(), whole.tokens.begin())) << policy_name;
  }
}

// The embedded model: greedy tokens of the device loop equal the host loop's (and with and
// without graphs) after a 2K prompt of random ids, full and esa attention.
TEST_F(CudaTest, EmbeddedModelDecodesOnTheDeviceAsTheHostLoop) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const LlamaModel cpu = LlamaModel::load(test::default_model_path());
  LlamaModel gpu(cpu.config(), cpu.weights());
  gpu.use_device(Device::cuda);
  std::mt19937_64 rng(test::test_seed(59));
  std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
  std::vector<int32_t> prompt(2048);
  for (int32_t& id : prompt) id = token(rng);
  for (const char* policy_name : {"full", "esa"}) {
    attention::PolicyOptions po;
    po.kind = attention::parse_policy(policy_name);
    po.budget = {16, 256, 256, 512};
    expect_decode_matches_host(cpu, gpu, prompt, po, 256, false, fmt::format("embedded model, {}", policy_name));
  }
}

TEST_F(CudaTest, ForwardRefusesAForeignCache) {
  std::mt19937_64 rng(test::test_seed(37));
  LlamaModel gpu = random_model({4, 2, 64, 64, RopeStyle::rotate_half, false, true}, rng);
  KvCache cpu_cache = gpu.make_cache();
  gpu.use_device(Device::cuda);
  const std::vector<int32_t> ids{1, 2, 3};
  EXPECT_THROW(gpu.forward(ids, cpu_cache), Error);
  KvCache gpu_cache = gpu.make_cache();
  EXPECT_NO_THROW(gpu.forward(ids, gpu_cache));
}


}  // namespace
}  // namespace esa
