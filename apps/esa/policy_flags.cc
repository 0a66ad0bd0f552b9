#include "policy_flags.h"

#include <omp.h>

#include <algorithm>
#include <charconv>
#include <system_error>

#include "core/error.h"

namespace esa::cli {

std::vector<std::string> split_list(const std::string& text, const char* flag) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    ESA_CHECK(end > start, "{} '{}': an empty item", flag, text);
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

void add_seed_option(CLI::App* cmd, uint64_t& seed, const std::string& help) {
  cmd->add_option_function<std::string>(
         "--seed",
         [&seed](const std::string& text) {
           uint64_t value = 0;
           const char* end = text.data() + text.size();
           const auto [ptr, ec] = std::from_chars(text.data(), end, value);
           ESA_CHECK(!text.empty() && text.front() != '-' && text.front() != '+' && ec == std::errc() && ptr == end,
                     "--seed '{}': expected a whole number from 0 to 18446744073709551615", text);
           seed = value;
         },
         help)
      ->type_name("UINT")
      ->default_str(std::to_string(seed));
}

void apply_threads(int threads) {
  ESA_CHECK(threads >= 0 && threads <= 1024, "--threads {}: expected 0 (all cores) to 1024", threads);
  if (threads > 0) omp_set_num_threads(threads);
}

void add_device_flags(CLI::App* cmd, std::string& device, bool& kv_offload) {
  cmd->add_option("--device", device,
                  "cpu, or cuda: the forward pass on the GPU (bf16 weights and KV cache; esa selects on the GPU, the "
                  "other selective policies on the host)")
      ->capture_default_str();
  cmd->add_flag("--kv-offload", kv_offload,
                "With --device cuda: keep keys and values in page-locked host memory, read by the GPU over the bus "
                "(only the rows attended to); esa's compressed keys stay on the GPU");
}

void add_policy_flags(CLI::App* cmd, PolicyFlags& f) {
  cmd->add_option("--policy", f.policy, "Attention policy: full, streaming, infllm, quest, esa, oracle")
      ->capture_default_str();
  cmd->add_option("--init", f.budget.init, "Initial (sink) tokens always attended")->capture_default_str();
  cmd->add_option("--local", f.budget.local, "Local window: tokens before the chunk attended at true positions")
      ->capture_default_str();
  cmd->add_option("--select", f.budget.select, "Middle tokens selected per step (top-k)")->capture_default_str();
  cmd->add_option("--chunk", f.budget.chunk, "Prefill chunk size in tokens")->capture_default_str();
  cmd->add_option("--eps", f.eps, "Proximity max-pool half-width: neighbours of important tokens come along")
      ->capture_default_str();
  cmd->add_option("--heads", f.heads, "One selection for all heads (uniform) or one per KV head (individual)")
      ->capture_default_str();
  cmd->add_option("--score-space", f.score_space,
                  "Scoring vectors: rotated (query at w, key unrotated) or plain (both before RoPE)")
      ->capture_default_str();
  cmd->add_option("--w", f.w, "Long-branch query position (-1: the local window size)")->capture_default_str();
  cmd->add_option("--proj", f.projection, "Projection file for --policy esa (empty: identity, exact scores)")
      ->capture_default_str();
}

attention::PolicyOptions to_policy_options(const PolicyFlags& f, bool list) {
  attention::PolicyOptions o;
  o.kind = attention::parse_policy(f.policy);
  ESA_CHECK(list || o.kind == attention::PolicyKind::esa || f.projection.empty(),
            "--proj {} is a projection for --policy esa; --policy {} would ignore it", f.projection, f.policy);
  o.budget = f.budget;
  o.eps = f.eps;
  o.heads = attention::parse_head_mode(f.heads);
  o.score_space = attention::parse_score_space(f.score_space);
  o.w = f.w;
  o.projection = o.kind == attention::PolicyKind::esa ? f.projection : "";  // the others score without one
  o.validate();
  return o;
}

}  // namespace esa::cli
