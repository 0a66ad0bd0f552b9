// esa bench attention: the cost of one decoded token's attention in one layer at long
// contexts, per policy: selection (scoring, max-pool, top-k) and the two-branch attention,
// on random keys and values of a named model shape. ESA's scoring reads d' floats per cached
// token (its compressed keys), the exact oracle H_kv * d: the table shows which one a policy pays.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "attention/projection.h"
#include "attention/policies.h"
#include "attention/two_branch.h"
#include "bench_attention_cuda.h"
#include "commands.h"
#include "core/device.h"
#include "core/error.h"
#include "model/kv_cache.h"
#include "ops/rope.h"
#include "policy_flags.h"

namespace esa::cli {
namespace {

struct BenchAttentionOptions {
  std::string shape = "llama3-8b";
  std::string contexts = "32768";
  std::string policies = "full,streaming,infllm,quest,oracle,esa";
  std::string dims = "16,32,64,128";
  attention::Budget budget{128, 4096, 2048, 512};
  int64_t steps = 16;
  int threads = 0;
  uint64_t seed = 1234;
  std::string device = "cpu";
  int64_t eps = 1;
};

struct Shape {
  int64_t hq, hkv, d;
  double rope_base;
};

Shape parse_shape(const std::string& name) {
  if (name == "llama3-8b") return {32, 8, 128, 500000.0};
  if (name == "smollm2-135m") return {9, 3, 64, 100000.0};
  if (name == "mistral-7b") return {32, 8, 128, 1000000.0};
  ESA_FAIL("--shape: unknown '{}' (expected llama3-8b, mistral-7b or smollm2-135m)", name);
}

// "32768", "32k", "1m" (k = 1024): the cached tokens of each row.
std::vector<int64_t> parse_contexts(const std::string& text) {
  std::vector<int64_t> out;
  for (std::string item : split_list(text, "--context")) {
    int64_t unit = 1;
    if (!item.empty() && (item.back() == 'k' || item.back() == 'K')) unit = 1024, item.pop_back();
    else if (!item.empty() && (item.back() == 'm' || item.back() == 'M')) unit = 1024 * 1024, item.pop_back();
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    ESA_CHECK(used == item.size() && !item.empty() && value > 0 && value <= (int64_t(1) << 40) / unit,
              "--context: '{}' is not a positive token count (e.g. 32768, 128k, 1m)", text);
    out.push_back(value * unit);
  }
  ESA_CHECK(!out.empty(), "--context: no context length in '{}'", text);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void run_bench_attention(const BenchAttentionOptions& opt) {
  ESA_CHECK(opt.steps >= 1, "--steps must be >= 1, got {}", opt.steps);
  cli::apply_threads(opt.threads);
  const Shape shape = parse_shape(opt.shape);
  ModelConfig config;
  config.n_layers = 1;
  config.n_heads = shape.hq;
  config.n_kv_heads = shape.hkv;
  config.head_dim = shape.d;
  config.hidden = shape.hq * shape.d;
  config.rope.base = shape.rope_base;
  config.rope.dim = shape.d;
  config.rope.style = RopeStyle::rotate_half;
  const ops::RopeTable rope = ops::make_rope_table(config.rope);
  const int64_t width = shape.hkv * shape.d, in_dim = width;
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<float> normal;

  fmt::print("bench attention: shape {} ({} query heads, {} KV heads, head dim {}), budget {} + {} + {}, {} threads, "
             "median of {} decode steps, one layer\n",
             opt.shape, shape.hq, shape.hkv, shape.d, opt.budget.init, opt.budget.select, opt.budget.local,
             omp_get_max_threads(), opt.steps);
  fmt::print("{:>8} {:<14} {:>8} {:>12} {:>12} {:>12} {:>14}\n", "context", "policy", "tokens", "select ms",
             "attend ms", "total ms", "scored floats");
  for (const int64_t context : parse_contexts(opt.contexts)) {
    // The cache: random keys (raw and rotated to their positions) and values.
    KvCache cache(1, shape.hkv, shape.d);
    cache.reserve(context + opt.steps);
    {
      const int64_t block = 4096;
      for (int64_t s0 = 0; s0 < context; s0 += block) {
        const int64_t n = std::min(block, context - s0);
        Tensor k({n, shape.hkv, shape.d}), v({n, shape.hkv, shape.d});
        for (int64_t i = 0; i < k.numel(); ++i) k.data()[i] = normal(rng);
        for (int64_t i = 0; i < v.numel(); ++i) v.data()[i] = normal(rng);
        Tensor k_rot = k;
        std::vector<int64_t> pos(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = s0 + i;
        ops::rope(k_rot, pos, rope);
        cache.append(0, k.data(), k_rot.data(), v.data(), n);
      }
    }
    struct Row {
      std::string label;
      attention::PolicyKind kind;
      int64_t dim;  // esa: compressed dimension
    };
    std::vector<Row> rows;
    for (const std::string& p : split_list(opt.policies, "--policy")) {
      const attention::PolicyKind kind = attention::parse_policy(p);
      if (kind == attention::PolicyKind::esa) {
        for (const std::string& d : split_list(opt.dims, "--dim")) rows.push_back({"esa d'=" + d, kind, std::stoll(d)});
      } else {
        rows.push_back({p, kind, 0});
      }
    }
    for (const Row& row : rows) {
      attention::PolicyOptions po;
      po.kind = row.kind;
      po.budget = opt.budget;
      std::unique_ptr<attention::Policy> policy =
          row.kind == attention::PolicyKind::esa
              ? attention::make_esa_policy(po, attention::Projection::random(1, in_dim, row.dim, opt.seed))
              : attention::make_policy(po, config);
      const int64_t scored = row.kind == attention::PolicyKind::esa      ? row.dim
                             : row.kind == attention::PolicyKind::oracle ? in_dim
                                                                         : 0;
      KvCache work = cache;  // each policy decodes from the same cache
      std::vector<double> select_ms, attend_ms;
      int64_t attended = 0;
      for (int64_t step = 0; step <= opt.steps; ++step) {
        // One new token: its key, rotated key and value join the cache; then its query attends.
        Tensor k({1, shape.hkv, shape.d}), v({1, shape.hkv, shape.d}), q({1, shape.hq, shape.d});
        for (int64_t i = 0; i < k.numel(); ++i) k.data()[i] = normal(rng);
        for (int64_t i = 0; i < v.numel(); ++i) v.data()[i] = normal(rng);
        for (int64_t i = 0; i < q.numel(); ++i) q.data()[i] = normal(rng);
        Tensor k_rot = k;
        ops::rope(k_rot, {work.size()}, rope);
        work.append(0, k.data(), k_rot.data(), v.data(), 1);
        const attention::LayerInputs in{0, q.view(), &work, &rope, nullptr};
        const auto t0 = std::chrono::steady_clock::now();
        const attention::Selection sel = policy->select(in);
        const auto t1 = std::chrono::steady_clock::now();
        Tensor out;
        attention::two_branch_attention(in, sel, po.query_position(), out);
        const auto t2 = std::chrono::steady_clock::now();
        if (step == 0) continue;  // warm-up: builds per-policy state (compressed keys, blocks)
        select_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        attend_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        attended = work.size() - sel.local_begin;
        size_t most = 0;
        for (const auto& list : sel.long_tokens) most = std::max(most, list.size());
        attended += int64_t(most);
      }
      const double s = median(select_ms), a = median(attend_ms);
      fmt::print("{:>8} {:<14} {:>8} {:>12.3f} {:>12.3f} {:>12.3f} {:>14}\n", context, row.label, attended, s, a, s + a,
                 scored > 0 ? fmt::format("{} x {}", scored, context) : std::string("-"));
      std::fflush(stdout);
    }
  }
}

}  // namespace

void register_bench_attention(CLI::App& bench) {
  auto opt = std::make_shared<BenchAttentionOptions>();
  CLI::App* cmd = bench.add_subcommand("attention", "One layer's decode-step attention cost per policy at long contexts");
  cmd->add_option("--shape", opt->shape, "Head geometry: llama3-8b, mistral-7b or smollm2-135m")->capture_default_str();
  cmd->add_option("--context", opt->contexts, "Cached tokens (comma-separated)")->capture_default_str();
  cmd->add_option("--policy", opt->policies, "Policies to time (comma-separated)")->capture_default_str();
  cmd->add_option("--dim", opt->dims, "Compressed dimensions d' for esa (random projections)")->capture_default_str();
  cmd->add_option("--init", opt->budget.init, "Initial tokens")->capture_default_str();
  cmd->add_option("--local", opt->budget.local, "Local window")->capture_default_str();
  cmd->add_option("--select", opt->budget.select, "Selected middle tokens")->capture_default_str();
  cmd->add_option("--chunk", opt->budget.chunk, "cuda: queries of the timed prefill chunk")->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--steps", opt->steps, "Timed decode steps (after one warm-up)")->capture_default_str();
  cmd->add_option("--threads", opt->threads, "CPU threads (0: OpenMP's default)")->capture_default_str();
  cli::add_seed_option(cmd, opt->seed, "Seed of the random cache and queries");
  cmd->add_option("--device", opt->device, "cpu (every policy) or cuda (esa, full, topk: the selection alone, esa-rope: esa rotating the "
                  "local keys per step; bf16 cache on the GPU)")
      ->capture_default_str();
  cmd->add_option("--eps", opt->eps, "cuda: proximity max-pool half-width")->capture_default_str();
  CLI::Option* policy_flag = cmd->get_option("--policy");
  cmd->callback([opt, policy_flag] {
    if (parse_device(opt->device) == Device::cpu) {
      run_bench_attention(*opt);
      return;
    }
    CudaBenchAttentionOptions cuda_opt;
    const Shape shape = parse_shape(opt->shape);
    cuda_opt.shape_name = opt->shape;
    cuda_opt.hq = shape.hq;
    cuda_opt.hkv = shape.hkv;
    cuda_opt.d = shape.d;
    cuda_opt.rope_base = shape.rope_base;
    cuda_opt.contexts = parse_contexts(opt->contexts);
    cuda_opt.policies = policy_flag->count() > 0 ? split_list(opt->policies, "--policy") : std::vector<std::string>{"esa", "full", "topk"};
    const std::vector<std::string> dims = split_list(opt->dims, "--dim");
    ESA_CHECK(dims.size() == 1 || opt->dims == BenchAttentionOptions().dims,
              "--dim: the cuda bench takes one compressed dimension, got '{}'", opt->dims);
    cuda_opt.dim = opt->dims == BenchAttentionOptions().dims ? 128 : std::stoll(dims[0]);
    cuda_opt.budget = opt->budget;
    cuda_opt.eps = opt->eps;
    cuda_opt.steps = opt->steps;
    cuda_opt.seed = opt->seed;
    run_bench_attention_cuda(cuda_opt);
  });
}

}  // namespace esa::cli
