// esa generate: greedy text generation with the CPU engine; text on stdout as it is produced,
// prefill and decode speed on stderr.
#include <fmt/format.h>
#include <omp.h>

#include <chrono>
#include <cstdio>

#include "attention/diagnostics.h"
#include "attention/policy.h"
#include "commands.h"
#include "policy_flags.h"
#include "prompt_input.h"
#include "core/device.h"
#include "core/error.h"
#include "engine/generate.h"
#include "model/kv_cache.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace esa::cli {
namespace {

struct GenerateCliOptions {
  std::string model;
  PromptSource prompt;
  int64_t max_new = 64;
  bool chat = false;
  PolicyFlags policy;
  bool diag = false;
  int threads = 0;
  int64_t max_context = 0;
  std::string device = "cpu";
  bool kv_offload = false;
  bool no_cuda_graphs = false;
};

void run_generate(const GenerateCliOptions& opt) {
  check_one_prompt_source(opt.prompt, "generate");
  ESA_CHECK(!(opt.chat && opt.prompt.has_ids()), "esa generate: --chat wraps prompt text; --prompt-ids are fed as they "
            "are (put the chat template's ids in the file)");
  const attention::PolicyOptions policy_options = to_policy_options(opt.policy);
  ESA_CHECK(opt.max_context >= 0, "--max-context must be >= 0, got {}", opt.max_context);
  apply_threads(opt.threads);
  ESA_CHECK(opt.max_new >= 0, "--max-new must be >= 0, got {}", opt.max_new);
  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = text::load_tokenizer(opt.model);
  const LlamaModel model = LlamaModel::load(opt.model, parse_placement(opt.device, opt.kv_offload));
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::vector<int32_t> prompt;
  if (opt.prompt.has_ids()) {
    prompt = prompt_ids(opt.prompt, model.config().vocab);
  } else {
    const std::string text = prompt_text(opt.prompt);
    const std::string input = opt.chat ? text::chat_prompt(tok->spec(), text) : text;
    prompt = tok->encode(input, /*add_special=*/true, /*parse_special=*/opt.chat);
  }
  const int64_t max_context = opt.max_context > 0 ? opt.max_context : model.config().context;
  ESA_CHECK(int64_t(prompt.size()) + opt.max_new <= max_context,
            "prompt ({} tokens) + --max-new {} exceeds the model's trained context of {} tokens; pass --max-context "
            "to go past it (full attention does not extrapolate: that is what the selective policies are for)",
            prompt.size(), opt.max_new, max_context);
  // The policy first: a bad --proj is reported before anything is printed.
  std::unique_ptr<attention::Policy> policy = attention::make_policy(policy_options, model.config());
  policy_options.check_selective_for(int64_t(prompt.size()) + opt.max_new);
  const ModelConfig& c = model.config();
  KvCache::check_fits(c.n_layers, c.n_kv_heads, c.head_dim, int64_t(prompt.size()) + opt.max_new,
                      model.device() == Device::cuda ? KvContents::keys_only : KvContents::all);
  fmt::print(stderr, "model loaded in {:.2f} s ({:.0f} MiB of float32 weights), prompt {} tokens\n", load_s,
             double(model.weights().bytes()) / (1 << 20), prompt.size());

  GenerateOptions g;
  g.max_new = opt.max_new;
  g.chunk = policy_options.budget.chunk;
  attention::DiagnosticPolicy* diagnostics = nullptr;
  if (opt.diag) {
    auto wrapped = std::make_unique<attention::DiagnosticPolicy>(std::move(policy), model.config());
    diagnostics = wrapped.get();
    policy = std::move(wrapped);
  }
  g.policy = policy.get();
  g.cuda_graphs = !opt.no_cuda_graphs;
  g.stop_ids = tok->stop_ids();
  std::vector<int32_t> out;
  size_t printed = 0;
  const GenerateResult r = generate_greedy(model, prompt, g, [&](int32_t id) {
    out.push_back(id);
    const std::string text = tok->decode(out, /*skip_special=*/true);
    if (text.size() > printed) {
      std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
      std::fflush(stdout);
      printed = text.size();
    }
  });
  std::fputc('\n', stdout);
  const double decode_tps = r.tokens.size() > 1 ? double(r.tokens.size() - 1) / r.decode_seconds : 0.0;
  fmt::print(stderr, "prefill {} tokens in {:.2f} s ({:.1f} tokens/s); decode {} tokens ({:.1f} tokens/s); "
             "stopped: {}; KV cache {:.1f} MiB; {} threads; policy {}\n",
             r.prompt_tokens, r.prefill_seconds, double(r.prompt_tokens) / r.prefill_seconds, r.tokens.size(),
             decode_tps, r.stop_reason, double(r.kv_cache_bytes) / (1 << 20), omp_get_max_threads(),
             attention::policy_name(policy_options.kind));
  if (diagnostics != nullptr) {
    // Per layer, over every prefill chunk and decode step: how much of the exact top-k and of
    // the middle tokens' attention mass the policy's selection kept.
    fmt::print(stderr, "selection diagnostics (against the exact-score oracle, over the middle tokens):\n");
    fmt::print(stderr, "{:>6} {:>7} {:>12} {:>11} {:>10}\n", "layer", "calls", "mean recall", "min recall", "mean mass");
    for (const auto& row : diagnostics->summary()) {
      fmt::print(stderr, "{:>6} {:>7} {:>12.3f} {:>11.3f} {:>10.3f}\n", row.layer, row.calls, row.mean_recall,
                 row.min_recall, row.mean_mass);
    }
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto opt = std::make_shared<GenerateCliOptions>();
  opt->model = default_model_path();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text greedily (any attention policy, CPU or GPU)");
  cmd->add_option("--model,-m", opt->model, "Model: a .gguf file or a Hugging Face folder")->capture_default_str();
  add_prompt_flags(cmd, opt->prompt);
  cmd->add_option("--max-new,-n", opt->max_new, "Tokens to generate at most")->capture_default_str();
  cmd->add_flag("--chat", opt->chat, "Wrap the prompt as a user message in the model's chat template");
  add_policy_flags(cmd, opt->policy);
  add_device_flags(cmd, opt->device, opt->kv_offload);
  cmd->add_flag("--no-cuda-graphs", opt->no_cuda_graphs,
                "GPU: launch each decode step's kernels one by one instead of replaying a CUDA graph (the same tokens)");
  cmd->add_flag("--diag", opt->diag,
                "Record per-layer selection diagnostics (oracle top-k recall, attention mass kept); slow");
  cmd->add_option("--threads", opt->threads, "CPU threads (0: OpenMP's default, all cores)")->capture_default_str();
  cmd->add_option("--max-context", opt->max_context,
                  "Longest prompt + generation allowed (0: the model's trained context)")->capture_default_str();
  cmd->callback([opt] { run_generate(*opt); });
}

}  // namespace esa::cli
