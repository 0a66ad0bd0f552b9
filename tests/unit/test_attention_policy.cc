// The shared two-branch attention and the policies without scoring (full, streaming), against
// plain attention; and, on the embedded model, policies that must reproduce `full` exactly.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

#include "attention/policy.h"
#include "attention/two_branch.h"
#include "core/error.h"
#include "engine/llama.h"
#include "ops/attention.h"
#include "support/test_support.h"

namespace esa {
namespace {

using attention::LayerInputs;
using attention::Selection;

struct Case {
  int64_t S, T, hq, hkv, d;
};

std::vector<float> normal(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A one-layer cache of S random tokens whose rotated keys are rotated with `table`.
KvCache random_cache(const Case& c, const ops::RopeTable& table, std::mt19937_64& rng, Tensor* raw_keys = nullptr) {
  KvCache cache(1, c.hkv, c.d);
  Tensor k({c.S, c.hkv, c.d}, normal(size_t(c.S * c.hkv * c.d), rng));
  Tensor k_rot = k;
  std::vector<int64_t> pos(static_cast<size_t>(c.S));
  for (int64_t s = 0; s < c.S; ++s) pos[size_t(s)] = s;
  ops::rope(k_rot, pos, table);
  const std::vector<float> v = normal(size_t(c.S * c.hkv * c.d), rng);
  cache.append(0, k.data(), k_rot.data(), v.data(), c.S);
  if (raw_keys != nullptr) *raw_keys = k;
  return cache;
}

double rel_err(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    num += (double(a.data()[i]) - b.data()[i]) * (double(a.data()[i]) - b.data()[i]);
    den += double(b.data()[i]) * b.data()[i];
  }
  return std::sqrt(num / den);
}

// Positions do not matter when no pair rotates: the long branch then sees its tokens exactly
// as plain attention would, so two branches over (long ∪ local) must equal one pass over them.
TEST(TwoBranch, EqualsPlainAttentionOverTheSameTokens) {
  std::mt19937_64 rng(test::test_seed(2024));
  for (const Case c : {Case{40, 1, 4, 2, 16}, Case{60, 7, 6, 3, 8}, Case{700, 512, 4, 1, 16}, Case{20, 20, 2, 2, 8}}) {
    ops::RopeTable still;
    still.dim = c.d;
    still.inv_freq.assign(size_t(c.d / 2), 0.0);
    const KvCache cache = random_cache(c, still, rng);
    const Tensor q({c.T, c.hq, c.d}, normal(size_t(c.T * c.hq * c.d), rng));
    const LayerInputs in{0, q.view(), &cache, &still, nullptr};
    const int64_t begin = c.S - c.T;
    for (int64_t local_begin : {int64_t(0), begin / 2, begin}) {
      // Every token before the local branch is selected.
      Selection sel;
      sel.local_begin = local_begin;
      sel.long_tokens.emplace_back();
      for (int64_t t = 0; t < local_begin; ++t) sel.long_tokens[0].push_back(t);
      Tensor got;
      attention::two_branch_attention(in, sel, /*w=*/12345, got);
      std::vector<int64_t> q_pos(static_cast<size_t>(c.T)), k_pos(static_cast<size_t>(c.S));
      for (int64_t t = 0; t < c.T; ++t) q_pos[size_t(t)] = begin + t;
      for (int64_t s = 0; s < c.S; ++s) k_pos[size_t(s)] = s;
      Tensor want;
      ops::attention(q.view(), cache.keys(0), cache.values(0), q_pos, k_pos, {float(1.0 / std::sqrt(double(c.d))), true},
                     want, nullptr);
      EXPECT_LE(rel_err(got, want), 1e-5) << "S " << c.S << " T " << c.T << " local_begin " << local_begin;
    }
  }
}

// With real RoPE, one decoded query, and a long branch of one token whose true distance is w,
// the merged result equals plain attention at true positions.
TEST(TwoBranch, LongBranchAtTheTrueDistanceIsExact) {
  std::mt19937_64 rng(test::test_seed(7));
  RopeConfig rc;
  rc.base = 10000.0;
  rc.dim = 16;
  const ops::RopeTable table = ops::make_rope_table(rc);
  const Case c{50, 1, 4, 2, 16};
  const KvCache cache = random_cache(c, table, rng);
  const Tensor q({1, c.hq, c.d}, normal(size_t(c.hq * c.d), rng));
  const LayerInputs in{0, q.view(), &cache, &table, nullptr};
  for (int64_t j : {0, 5, 29}) {
    Selection sel;
    sel.local_begin = 30;
    sel.long_tokens = {{j}};
    Tensor got;
    attention::two_branch_attention(in, sel, /*w=*/(c.S - 1) - j, got);
    // Reference: the query at its true position over {j} ∪ [30, 50) rotated keys.
    Tensor q_rot = q;
    ops::rope(q_rot, {c.S - 1}, table);
    std::vector<int64_t> tokens = {j};
    for (int64_t s = 30; s < c.S; ++s) tokens.push_back(s);
    Tensor k({int64_t(tokens.size()), c.hkv, c.d}), v({int64_t(tokens.size()), c.hkv, c.d});
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::copy_n(cache.keys_rotated(0).data + tokens[i] * c.hkv * c.d, c.hkv * c.d, k.data() + i * c.hkv * c.d);
      std::copy_n(cache.values(0).data + tokens[i] * c.hkv * c.d, c.hkv * c.d, v.data() + i * c.hkv * c.d);
    }
    Tensor want;
    ops::attention(q_rot.view(), k.view(), v.view(), {0}, std::vector<int64_t>(tokens.size(), 0),
                   {float(1.0 / std::sqrt(double(c.d))), false}, want, nullptr);
    EXPECT_LE(rel_err(got, want), 1e-5) << "token " << j;
  }
}

TEST(TwoBranch, RejectsSelectionsIntoTheLocalBranchOrTheFuture) {
  std::mt19937_64 rng(test::test_seed(3));
  ops::RopeTable table = ops::make_rope_table(RopeConfig{10000.0, 8});
  const Case c{20, 4, 2, 1, 8};
  const KvCache cache = random_cache(c, table, rng);
  const Tensor q({c.T, c.hq, c.d}, normal(size_t(c.T * c.hq * c.d), rng));
  const LayerInputs in{0, q.view(), &cache, &table, nullptr};
  Tensor out;
  EXPECT_THROW(attention::two_branch_attention(in, Selection{10, {{3, 10}}}, 5, out), Error);   // in the window
  EXPECT_THROW(attention::two_branch_attention(in, Selection{17, {{3}}}, 5, out), Error);       // past the chunk start
  EXPECT_THROW(attention::two_branch_attention(in, Selection{10, {{1}, {2}, {3}}}, 5, out), Error);  // 3 lists, 1 KV head
}

TEST(ContextSplit, BudgetsAndClipping) {
  const attention::Budget b{4, 10, 8, 16};
  const attention::ContextSplit empty = attention::split_context(b, 0);
  EXPECT_EQ(empty.init_end, 0);
  EXPECT_EQ(empty.local_begin, 0);
  const attention::ContextSplit covered = attention::split_context(b, 10);
  EXPECT_EQ(covered.init_end, 0);  // the window covers everything: no long branch
  EXPECT_EQ(covered.local_begin, 0);
  const attention::ContextSplit small = attention::split_context(b, 12);
  EXPECT_EQ(small.init_end, 2);  // initial tokens are those the window does not cover
  EXPECT_EQ(small.local_begin, 2);
  const attention::ContextSplit big = attention::split_context(b, 100);
  EXPECT_EQ(big.init_end, 4);
  EXPECT_EQ(big.local_begin, 90);
}

TEST(Policies, NamesAndOptions) {
  for (const char* name : {"full", "streaming", "infllm", "quest", "esa", "oracle"}) {
    EXPECT_STREQ(attention::policy_name(attention::parse_policy(name)), name);
  }
  EXPECT_THROW(attention::parse_policy("dense"), Error);
  EXPECT_THROW(attention::parse_head_mode("all"), Error);
  attention::PolicyOptions o;
  o.eps = -1;
  EXPECT_THROW(o.validate(), Error);
  o.eps = 1;
  o.budget.chunk = 0;
  EXPECT_THROW(o.validate(), Error);
}

// On a real model: when the local window covers the whole context every policy gives exactly
// the logits of full attention; when the budget covers every middle token, the scoring
// policies give identical logits to each other.
TEST(PoliciesOnModel, WindowCoveringEverythingEqualsFull) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  std::vector<int32_t> ids;
  for (int i = 0; i < 150; ++i) ids.push_back((i * 53 + 7) % int(model.config().vocab));
  ForwardOptions plain;
  plain.chunk = 32;
  KvCache c0 = model.make_cache();
  const Tensor want = model.forward(ids, c0, plain);
  for (const char* name : {"full", "streaming", "infllm", "quest", "esa", "oracle"}) {
    attention::PolicyOptions o;
    o.kind = attention::parse_policy(name);
    o.budget = {4, 1000, 16, 32};
    const auto policy = attention::make_policy(o, model.config());
    ForwardOptions f = plain;
    f.policy = policy.get();
    KvCache c = model.make_cache();
    const Tensor got = model.forward(ids, c, f);
    EXPECT_LE(rel_err(got, want), 1e-6) << name;
  }
}

TEST(PoliciesOnModel, FullBudgetGivesTheSameLogitsForEveryScoringPolicy) {
  const LlamaModel model = LlamaModel::load(test::fixture("model/tiny_llama"));
  std::vector<int32_t> ids;
  for (int i = 0; i < 300; ++i) ids.push_back((i * 31 + 3) % int(model.config().vocab));
  Tensor first;
  for (const char* name : {"oracle", "esa", "infllm", "quest"}) {
    attention::PolicyOptions o;
    o.kind = attention::parse_policy(name);
    o.budget = {4, 64, 1000, 32};  // select covers every middle token
    const auto policy = attention::make_policy(o, model.config());
    ForwardOptions f;
    f.chunk = 32;
    f.policy = policy.get();
    KvCache c = model.make_cache();
    const Tensor got = model.forward(ids, c, f);
    if (first.empty()) first = got;
    else EXPECT_LE(rel_err(got, first), 1e-6) << name;
  }
}

}  // namespace
}  // namespace esa

namespace esa {
namespace {

// The same two properties on the embedded SmolLM2, over 700 tokens of the golden long prompt.
TEST(PoliciesOnModel, SmolLm2WindowAndFullBudget) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const LlamaModel model = LlamaModel::load(test::default_model_path());
  const auto golden = nlohmann::json::parse(test::read_file(test::fixture("model/smollm2.json")));
  std::vector<int32_t> ids;
  for (const auto& p : golden["prompts"]) {
    if (p["ids"].size() >= 700) ids = p["ids"].get<std::vector<int32_t>>();
  }
  ASSERT_GE(ids.size(), 700u);
  ids.resize(700);
  ForwardOptions plain;
  plain.chunk = 128;
  KvCache c0 = model.make_cache();
  const Tensor want = model.forward(ids, c0, plain);
  Tensor scoring_first;
  for (const char* name : {"full", "streaming", "infllm", "quest", "esa", "oracle"}) {
    for (const bool window_covers : {true, false}) {
      attention::PolicyOptions o;
      o.kind = attention::parse_policy(name);
      // Window over everything, or a small window with a budget over every middle token.
      o.budget = window_covers ? attention::Budget{16, 4096, 64, 128} : attention::Budget{16, 128, 4096, 128};
      const auto policy = attention::make_policy(o, model.config());
      ForwardOptions f = plain;
      f.policy = policy.get();
      KvCache c = model.make_cache();
      const Tensor got = model.forward(ids, c, f);
      if (window_covers) {
        EXPECT_LE(rel_err(got, want), 1e-6) << name << ": a window over the whole context must equal full";
      } else if (std::string(name) != "full" && std::string(name) != "streaming") {
        if (scoring_first.empty()) scoring_first = got;
        else EXPECT_LE(rel_err(got, scoring_first), 1e-6) << name << ": every middle token selected";
      }
    }
  }
}

}  // namespace
}  // namespace esa
