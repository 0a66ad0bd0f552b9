#include "policy_flags.h"

namespace esa::cli {

void add_device_flag(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device,
                  "cpu, or cuda: the forward pass on the GPU (bf16 weights and KV cache; a selective policy selects on "
                  "the host)")
      ->capture_default_str();
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

attention::PolicyOptions to_policy_options(const PolicyFlags& f) {
  attention::PolicyOptions o;
  o.kind = attention::parse_policy(f.policy);
  o.budget = f.budget;
  o.eps = f.eps;
  o.heads = attention::parse_head_mode(f.heads);
  o.score_space = attention::parse_score_space(f.score_space);
  o.w = f.w;
  o.projection = f.projection;
  o.validate();
  return o;
}

}  // namespace esa::cli
