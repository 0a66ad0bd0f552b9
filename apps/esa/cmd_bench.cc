// esa bench: throughput measurements (tokenize now; model and attention with the engine).
// Each repetition is timed separately; the median and the spread are reported, never one run.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "commands.h"
#include "core/device.h"
#include "core/error.h"
#include "core/file_io.h"
#include "attention/projection.h"
#include "attention/policies.h"
#include "engine/generate.h"
#include "engine/llama.h"
#include "tasks/eval.h"
#include "text/tokenizer.h"

#include <sys/resource.h>

#include "policy_flags.h"

namespace esa::cli {
namespace {

struct BenchTokenizeOptions {
  std::string model;
  std::string file;
  int64_t bytes = 1 << 20;
  int repeat = 5;
  uint64_t seed = 1234;
};

// Deterministic English-like text with numbers, punctuation, code and line breaks, used when
// no --file is given (a real corpus arrives with the calibration data).
std::string synthetic_text(int64_t bytes, uint64_t seed) {
  static const char* words[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by",
      "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
      "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been",
      "attention", "selective", "compression", "context", "window", "token", "query", "key", "value",
      "model", "length", "memory", "sequence", "important", "neighbour", "retrieval", "needle",
      "haystack", "passkey", "projection", "calibration", "London", "Paris", "Wednesday", "don't",
      "it's", "we've", "they're", "I'll", "she'd", "naïve", "café", "über", "résumé", "2025", "3.14159",
      "1,000,000", "(see", "below)", "e.g.", "i.e.,", "--", "\"quoted\"", "end.", "again?", "yes!"};
  std::mt19937_64 rng(seed);
  std::string out;
  out.reserve(size_t(bytes) + 64);
  int in_sentence = 0;
  while (int64_t(out.size()) < bytes) {
    const auto r = rng();
    if (r % 97 == 0) {
      out += "\n\n    for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }\n\n";
      continue;
    }
    const char* w = words[r % std::size(words)];
    if (in_sentence == 0 && !out.empty()) out += ' ';
    out += w;
    if (++in_sentence > 8 + int(r % 13)) {
      out += (r % 5 == 0) ? ".\n" : ". ";
      in_sentence = 0;
    } else {
      out += ' ';
    }
  }
  out.resize(size_t(bytes));
  return out;
}

void run_bench_tokenize(const BenchTokenizeOptions& opt) {
  ESA_CHECK(opt.repeat >= 1, "--repeat must be at least 1, got {}", opt.repeat);
  ESA_CHECK(opt.bytes >= 1, "--bytes must be positive, got {}", opt.bytes);
  omp_set_num_threads(1);
  const auto tok = text::load_tokenizer(opt.model);
  std::string input;
  std::string source;
  if (!opt.file.empty()) {
    input = read_file(opt.file);
    ESA_CHECK(!input.empty(), "{}: empty file", opt.file);
    source = opt.file;
  } else {
    input = synthetic_text(opt.bytes, opt.seed);
    source = fmt::format("synthetic English-like text, seed {}", opt.seed);
  }
  // The first run is reported on its own: it starts with an empty word cache, as a one-off
  // tokenization of a document does.
  const auto c0 = std::chrono::steady_clock::now();
  size_t n_tokens = tok->encode(input, false, true).size();
  const double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  std::vector<double> seconds;
  for (int r = 0; r < opt.repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    n_tokens = tok->encode(input, false, true).size();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    fmt::print(stderr, "\rrepetition {}/{}", r + 1, opt.repeat);
  }
  fmt::print(stderr, "\n");
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double mb = double(input.size()) / 1e6;
  fmt::print("bench tokenize: {} ({} bytes, {} tokens), 1 thread, cold first run, then {} repetitions\n", source,
             input.size(), n_tokens, opt.repeat);
  fmt::print("{:<12} {:>10} {:>10} {:>10} {:>10} {:>12}\n", "", "cold", "median", "best", "worst", "tokens/s");
  fmt::print("{:<12} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>12.0f}\n", "MB/s", mb / cold, mb / median,
             mb / seconds.front(), mb / seconds.back(), double(n_tokens) / median);
}

struct BenchModelOptions {
  std::string model;
  std::string prefill = "512,2048,8192";
  int64_t decode = 128;
  int64_t chunk = 512;
  int threads = 0;
  uint64_t seed = 1234;
  std::string device = "cpu";
  bool kv_offload = false;
  std::string policies = "full";
  attention::Budget budget{128, 2048, 4096, 512};
  int64_t eps = 1;
  int64_t dim = 128;
  bool profile = false;  // GPU: where each prefill's time goes, per stage
  bool no_cuda_graphs = false;  // GPU decode: launch one by one
};

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Prefill and decode speed of the engine on random token ids (speed does not depend on the
// text), per policy: full, or esa with a random projection of d' = --dim (its speed does not
// depend on the projection's values). FLOPs counted for full: 2 per multiply-add of every
// projection and of attention (QK^T and PV over the causal triangle); the LM head only for the
// last token.
void run_bench_model(const BenchModelOptions& opt) {
  ESA_CHECK(opt.decode >= 0, "--decode must be >= 0, got {}", opt.decode);
  cli::apply_threads(opt.threads);
  const std::vector<int64_t> lengths = tasks::parse_lengths(opt.prefill, "--prefill");
  const Placement device = parse_placement(opt.device, opt.kv_offload);
  ESA_CHECK(!opt.profile || device.device == Device::cuda, "--profile: the GPU forward is profiled (--device cuda)");
  const LlamaModel model = LlamaModel::load(opt.model, device);
  const ModelConfig& c = model.config();
  for (int64_t p : lengths) {
    KvCache::check_fits(c.n_layers, c.n_kv_heads, c.head_dim, p + opt.decode,  // before any allocation of p
                        device.device == Device::cuda ? KvContents::keys_only : KvContents::all);
    if (p + opt.decode > c.context) {
      fmt::print(stderr, "note: --prefill {} + --decode {} goes past the trained context {} (speed is measured all the "
                 "same; the text would not be meaningful)\n", p, opt.decode, c.context);
    }
  }
  const double proj_params = double(c.n_layers) * double(c.hidden) *
                             double(2 * c.n_heads * c.head_dim + 2 * c.n_kv_heads * c.head_dim + 3 * c.ffn);
  // The policies, built once (esa's projection for every layer).
  std::vector<std::pair<std::string, std::unique_ptr<attention::Policy>>> policies;
  for (const std::string& name : split_list(opt.policies, "--policy")) {
    cli::PolicyFlags f;
    f.policy = name;
    f.budget = opt.budget;
    f.budget.chunk = opt.chunk;
    f.eps = opt.eps;
    const attention::PolicyOptions po = cli::to_policy_options(f);
    ESA_CHECK(po.kind == attention::PolicyKind::full || po.kind == attention::PolicyKind::esa,
              "--policy: bench model runs full and esa, not '{}'", name);
    ESA_CHECK(opt.dim >= 1, "--dim must be >= 1, got {}", opt.dim);
    policies.emplace_back(name, po.kind == attention::PolicyKind::full
                                    ? nullptr
                                    : attention::make_esa_policy(po, attention::Projection::random(
                                                                         c.n_layers, c.n_kv_heads * c.head_dim, opt.dim,
                                                                         opt.seed)));
  }
  std::mt19937_64 rng(opt.seed);
  fmt::print("bench model: {} ({} layers, hidden {}), {}, chunk {}, {}; esa: budget {}+{}+{}, eps {}, random d' {}\n",
             opt.model, c.n_layers, c.hidden,
             device.device == Device::cpu ? fmt::format("{} threads", omp_get_max_threads())
                                          : placement_description(device),
             opt.chunk, device.device == Device::cpu ? "float32" : "bf16 weights and cache", opt.budget.init,
             opt.budget.local, opt.budget.select, opt.eps, opt.dim);
  // decode t/s: greedy decoding (on the GPU replaying a CUDA graph per token); eager t/s: the
  // same launched one by one (on the CPU, and with --no-cuda-graphs, the same figure).
  fmt::print("{:<6} {:>8} {:>10} {:>12} {:>10} {:>12} {:>10} {:>10} {:>12}\n", "policy", "prefill", "seconds", "tokens/s",
             "GFLOP/s", "decode t/s", "eager t/s", "KV MiB", "peak RSS MiB");
  for (int64_t p : lengths) {
    std::vector<int32_t> ids(static_cast<size_t>(p));
    for (auto& id : ids) id = int32_t(rng() % uint64_t(c.vocab));
    for (const auto& [name, policy] : policies) {
      KvCache cache = model.make_cache();
      cache.reserve(p + opt.decode);
      ForwardOptions fwd;
      fwd.chunk = opt.chunk;
      fwd.policy = policy.get();
      StageTimes stages;
      if (opt.profile) fwd.profile = &stages;
      const auto t0 = std::chrono::steady_clock::now();
      Tensor logits = model.forward(ids, cache, fwd);
      const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double flops = 2.0 * proj_params * double(p) +
                           2.0 * 2.0 * double(c.n_layers * c.n_heads * c.head_dim) * double(p) * double(p + 1) / 2.0 +
                           2.0 * double(c.vocab * c.hidden);
      fwd.profile = nullptr;
      // Greedy decoding of opt.decode tokens from the prefill's; on the GPU once replaying CUDA
      // graphs and once launching one by one, from the same cache, and the tokens must agree.
      const int32_t first = argmax(logits.data(), logits.numel());
      auto time_decode = [&](bool graphs, std::vector<int32_t>& tokens) {
        fwd.cuda_graphs = graphs;
        cache.truncate(p);
        const auto t1 = std::chrono::steady_clock::now();
        model.decode_greedy(first, opt.decode, cache, fwd, [&](int32_t id) {
          tokens.push_back(id);
          return true;
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        return opt.decode > 0 ? double(opt.decode) / s : 0.0;
      };
      std::vector<int32_t> tokens, eager_tokens;
      const bool both = device.device == Device::cuda && !opt.no_cuda_graphs;
      const double decode_rate = time_decode(!opt.no_cuda_graphs, tokens);
      const double eager_rate = both ? time_decode(false, eager_tokens) : decode_rate;
      if (both && tokens != eager_tokens) {
        const size_t at = size_t(std::mismatch(tokens.begin(), tokens.end(), eager_tokens.begin()).first - tokens.begin());
        ESA_FAIL("bench model: {} at prefill {}: greedy tokens with and without CUDA graphs differ at step {}", name, p,
                 at);
      }
      fmt::print("{:<6} {:>8} {:>10.2f} {:>12.1f} {:>10} {:>12.1f} {:>10.1f} {:>10.1f} {:>12.0f}\n", name, p, prefill_s,
                 double(p) / prefill_s, policy ? std::string("-") : fmt::format("{:.1f}", flops / prefill_s / 1e9),
                 decode_rate, eager_rate, double(cache.bytes_allocated()) / (1 << 20), peak_rss_mib());
      if (opt.profile) {  // GPU time per stage of the prefill (events on the stream; sums over layers)
        fmt::print("  profile {} {}: GPU {:.3f} s of {:.3f} s wall;", name, p, stages.total(), prefill_s);
        for (int i = 0; i < StageTimes::kCount; ++i) {
          if (stages.seconds[i] > 0.0) {
            fmt::print(" {} {:.3f} s ({:.0f}%);", StageTimes::name(i), stages.seconds[i],
                       100.0 * stages.seconds[i] / stages.total());
          }
        }
        fmt::print("\n");
      }
      std::fflush(stdout);
    }
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Throughput benchmarks (median and spread of repeated runs)");
  bench->require_subcommand(1);
  auto opt = std::make_shared<BenchTokenizeOptions>();
  opt->model = default_model_path();
  CLI::App* cmd = bench->add_subcommand("tokenize", "Tokenizer throughput on one core");
  cmd->add_option("--model,-m", opt->model, "Model whose tokenizer to use")->capture_default_str();
  cmd->add_option("--file,-f", opt->file, "Text file to tokenize (default: synthetic text of --bytes)")
      ->capture_default_str();
  cmd->add_option("--bytes", opt->bytes, "Size of the synthetic text in bytes")->capture_default_str();
  cmd->add_option("--repeat", opt->repeat, "Timed repetitions (after one warm-up)")->capture_default_str();
  cli::add_seed_option(cmd, opt->seed, "Seed of the synthetic text");
  cmd->callback([opt] { run_bench_tokenize(*opt); });

  auto mopt = std::make_shared<BenchModelOptions>();
  mopt->model = default_model_path();
  CLI::App* model = bench->add_subcommand("model", "Prefill and decode speed of the engine, and peak memory");
  model->add_option("--model,-m", mopt->model, "Model: a .gguf file or a Hugging Face folder")->capture_default_str();
  model->add_option("--prefill", mopt->prefill, "Prompt lengths to prefill (comma-separated; 4k = 4096)")
      ->capture_default_str();
  model->add_option("--decode", mopt->decode, "Tokens to decode after each prefill")->capture_default_str();
  model->add_option("--chunk", mopt->chunk, "Prefill chunk size")->capture_default_str();
  model->add_option("--threads", mopt->threads, "CPU threads (0: OpenMP's default)")->capture_default_str();
  cli::add_seed_option(model, mopt->seed, "Seed of the random prompt ids");
  add_device_flags(model, mopt->device, mopt->kv_offload);
  model->add_flag("--no-cuda-graphs", mopt->no_cuda_graphs,
                  "GPU decode: launch each step's kernels one by one instead of replaying a CUDA graph");
  model->add_option("--policy", mopt->policies, "Policies to time, comma-separated: full, esa")->capture_default_str();
  model->add_option("--init", mopt->budget.init, "esa: initial (sink) tokens")->capture_default_str();
  model->add_option("--local", mopt->budget.local, "esa: local window")->capture_default_str();
  model->add_option("--select", mopt->budget.select, "esa: middle tokens selected (top-k)")->capture_default_str();
  model->add_option("--eps", mopt->eps, "esa: proximity max-pool half-width")->capture_default_str();
  model->add_option("--dim", mopt->dim, "esa: compressed dimension d' of its random projection (speed does not "
                    "depend on the projection's values)")->capture_default_str();
  model->add_flag("--profile", mopt->profile, "GPU: print where each prefill's time goes per stage (projections, "
                  "KV write, selection, attention, the rest; CUDA events between stages)");
  model->callback([mopt] { run_bench_model(*mopt); });

  register_bench_attention(*bench);
}

}  // namespace esa::cli
