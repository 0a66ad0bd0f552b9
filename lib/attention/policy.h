// Attention policies: which cached tokens a chunk of queries attends to, and at which
// positions (PAPER.md sections 1-5). A policy only *selects*; the arithmetic is shared
// (two_branch.h): the local branch attends to the window + chunk at true positions, causally;
// the long branch attends to the initial tokens + the selected middle tokens with every key at
// position 0 and every query at position w; the two are merged exactly by log-sum-exp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "ops/rope.h"

namespace esa::attention {

enum class PolicyKind { full, streaming, infllm, quest, esa, oracle };
const char* policy_name(PolicyKind kind);
/// Parses a policy name; throws esa::Error listing the known ones.
PolicyKind parse_policy(const std::string& name);

enum class HeadMode { uniform, individual };
enum class ScoreSpace { rotated, plain };
const char* head_mode_name(HeadMode m);
const char* score_space_name(ScoreSpace s);
HeadMode parse_head_mode(const std::string& name);
ScoreSpace parse_score_space(const std::string& name);

/// Token budgets shared by every policy, so that comparisons are fair (PAPER.md section 1).
/// Defaults are sized for the embedded 8k-context model: 64 + 2048 + 1024 + a 512-token chunk.
struct Budget {
  int64_t init = 64;      // l_I: initial (sink) tokens
  int64_t local = 2048;   // l_L: local window before the chunk
  int64_t select = 1024;  // k: middle tokens selected per step
  int64_t chunk = 512;    // l_C: prefill chunk
};

struct PolicyOptions {
  PolicyKind kind = PolicyKind::full;
  Budget budget;
  int64_t eps = 1;                          // proximity max-pool half-width
  HeadMode heads = HeadMode::uniform;
  ScoreSpace score_space = ScoreSpace::rotated;
  int64_t w = -1;                           // long-branch query position; -1: budget.local
  std::string projection;                   // esa: proj.h5 ("" = identity projection)

  int64_t query_position() const { return w >= 0 ? w : budget.local; }
  /// Throws esa::Error on inconsistent values (negative budgets, eps < 0, ...).
  void validate() const;
  /// Throws esa::Error when a selective policy's budget covers a `context`-token sequence: it
  /// would silently be full attention (a result labelled esa that is not esa's).
  void check_selective_for(int64_t context) const;
};

/// What a policy sees for one layer and one chunk. The cache already holds the chunk's keys and
/// values: tokens [0, S), the chunk is [S - T, S).
struct LayerInputs {
  int64_t layer = 0;
  TensorView q;                 // [T, n_heads, head_dim], before RoPE
  const KvCache* cache = nullptr;
  const ops::RopeTable* rope = nullptr;
  const ops::RopeAngles* angles = nullptr;
  int64_t chunk_begin() const { return cache->length(layer) - q.shape[0]; }
};

/// The tokens a chunk attends to. Local branch: [local_begin, S) at true positions (causal).
/// Long branch: `long_tokens`, sorted, each < local_begin, keys at position 0 and queries at w.
/// `long_tokens` has one list (uniform: shared by all heads) or one per KV head (individual).
struct Selection {
  int64_t local_begin = 0;
  std::vector<std::vector<int64_t>> long_tokens;
};

struct DeviceContext;
class DeviceSelector;

class Policy {
 public:
  virtual ~Policy() = default;
  /// Chooses the tokens for one layer and chunk; may update the policy's own per-layer state
  /// (compressed keys, block representatives). Called once per layer per chunk, in order. The
  /// host half, and the reference of the device half.
  virtual Selection select(const LayerInputs& in) = 0;
  /// This policy's GPU half for one sequence (attention/device_selector.h), or null: the GPU
  /// forward then calls select() on a host copy of the keys. Null by default, so a policy that
  /// wraps another to record or change its choices (diagnostics, esa dump) keeps being called;
  /// null too in a build without CUDA, and for options the device half does not take.
  virtual std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const;
  /// Whether the policy reads cached keys before RoPE (a long branch, scores over keys). One that
  /// does not (full) lets the GPU cache keep its keys rotated only, as dense attention reads them.
  virtual bool reads_keys_before_rope() const { return true; }
  const PolicyOptions& options() const { return options_; }
  /// Unique among the policies of this process: a device half made for one policy object is
  /// never reused for another that happens to reuse its address.
  uint64_t instance() const { return instance_; }

 protected:
  explicit Policy(PolicyOptions options);
  PolicyOptions options_;

 private:
  uint64_t instance_;
};

/// Builds the policy for a model; one policy object per sequence (it may hold per-layer state).
/// Defined in attention/registry.cc, which knows every kind.
std::unique_ptr<Policy> make_policy(const PolicyOptions& options, const ModelConfig& config);

/// The split of [0, chunk_begin) into initial, middle and local tokens for a budget:
/// local = [max(0, chunk_begin - local), chunk_begin), initial = the first min(init, local
/// start) tokens, middle = what lies between. Every policy uses it, so that all see the same
/// candidates; a window that covers the whole context makes every policy exact attention.
struct ContextSplit {
  int64_t init_end = 0;     // initial tokens are [0, init_end)
  int64_t local_begin = 0;  // middle tokens are [init_end, local_begin)
};
ContextSplit split_context(const Budget& budget, int64_t chunk_begin);

}  // namespace esa::attention
