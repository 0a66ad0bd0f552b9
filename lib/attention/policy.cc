// Policy names, options, the context split and the Policy base. The policies themselves are
// attention/<kind>.cc (policies.h); make_policy is attention/registry.cc.
#include "attention/policy.h"

#include <algorithm>
#include <atomic>

#include "attention/device_selector.h"
#include "core/error.h"

namespace esa::attention {
namespace {

constexpr std::pair<PolicyKind, const char*> kPolicyNames[] = {
    {PolicyKind::full, "full"},     {PolicyKind::streaming, "streaming"}, {PolicyKind::infllm, "infllm"},
    {PolicyKind::quest, "quest"},   {PolicyKind::esa, "esa"},             {PolicyKind::oracle, "oracle"}};

}  // namespace

const char* policy_name(PolicyKind kind) {
  for (const auto& [k, name] : kPolicyNames) {
    if (k == kind) return name;
  }
  return "?";
}

PolicyKind parse_policy(const std::string& name) {
  for (const auto& [k, n] : kPolicyNames) {
    if (name == n) return k;
  }
  ESA_FAIL("unknown policy '{}' (expected full, streaming, infllm, quest, esa or oracle)", name);
}

const char* head_mode_name(HeadMode m) { return m == HeadMode::uniform ? "uniform" : "individual"; }
const char* score_space_name(ScoreSpace s) { return s == ScoreSpace::rotated ? "rotated" : "plain"; }

HeadMode parse_head_mode(const std::string& name) {
  if (name == "uniform") return HeadMode::uniform;
  if (name == "individual") return HeadMode::individual;
  ESA_FAIL("unknown --heads '{}' (expected uniform or individual)", name);
}

ScoreSpace parse_score_space(const std::string& name) {
  if (name == "rotated") return ScoreSpace::rotated;
  if (name == "plain") return ScoreSpace::plain;
  ESA_FAIL("unknown --score-space '{}' (expected rotated or plain)", name);
}

void PolicyOptions::validate() const {
  ESA_CHECK(budget.init >= 0, "--init must be >= 0, got {}", budget.init);
  ESA_CHECK(budget.local >= 0, "--local must be >= 0, got {}", budget.local);
  ESA_CHECK(budget.select >= 0, "--select must be >= 0, got {}", budget.select);
  ESA_CHECK(budget.chunk >= 1, "--chunk must be >= 1, got {}", budget.chunk);
  ESA_CHECK(eps >= 0, "--eps must be >= 0, got {}", eps);
  ESA_CHECK(w >= -1, "--w must be >= 0 (or -1 for --local), got {}", w);
  // Each at most 2^40 tokens (no context is longer), so that their sums cannot overflow.
  constexpr int64_t kMaxTokens = int64_t(1) << 40;
  for (const auto& [flag, v] : {std::pair{"--init", budget.init}, std::pair{"--local", budget.local},
                                std::pair{"--select", budget.select}, std::pair{"--chunk", budget.chunk},
                                std::pair{"--eps", eps}, std::pair{"--w", w}}) {
    ESA_CHECK(v <= kMaxTokens, "{} {} is more than 2^40 tokens (no context is that long)", flag, v);
  }
}

void PolicyOptions::check_selective_for(int64_t context) const {
  if (kind == PolicyKind::full) return;
  const bool selects = kind != PolicyKind::streaming;
  const int64_t budget_tokens = budget.init + budget.local + (selects ? budget.select : 0);
  ESA_CHECK(budget_tokens < context,
            "--policy {}: its budget (--init {} + --local {}{}) = {} tokens covers the whole {}-token context, "
            "which makes it full attention; lower the budget or use --policy full",
            policy_name(kind), budget.init, budget.local, selects ? fmt::format(" + --select {}", budget.select) : "",
            budget_tokens, context);
}

ContextSplit split_context(const Budget& budget, int64_t chunk_begin) {
  // The window comes first: the initial tokens are the first `init` tokens it does not
  // already cover. So a window that reaches back to token 0 leaves nothing to the long branch,
  // and the policy is then exact attention.
  ContextSplit s;
  s.local_begin = std::max<int64_t>(0, chunk_begin - budget.local);
  s.init_end = std::min(budget.init, s.local_begin);
  return s;
}

Policy::Policy(PolicyOptions options) : options_(std::move(options)) {
  static std::atomic<uint64_t> next{1};
  instance_ = next.fetch_add(1);
}

std::unique_ptr<DeviceSelector> Policy::make_device_selector(const DeviceContext&) const { return nullptr; }

}  // namespace esa::attention
