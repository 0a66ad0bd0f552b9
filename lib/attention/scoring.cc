// See scoring.h.
#include "attention/scoring.h"

#include "attention/selection.h"
#include "core/error.h"

namespace esa::attention {

Step prepare(const LayerInputs& in, const Budget& budget, const char* who) {
  ESA_CHECK(in.cache != nullptr && in.rope != nullptr, "{}: layer inputs without a cache or a RoPE table", who);
  ESA_CHECK(in.layer >= 0 && in.layer < in.cache->n_layers(), "{}: layer {} out of range ({} layers)", who, in.layer,
            in.cache->n_layers());
  ESA_CHECK(in.q.shape.size() == 3, "{}: q {} must be [T, heads, head_dim]", who, in.q.shape_str());
  const TensorView keys = in.cache->keys(in.layer);
  Step s;
  s.S = keys.shape[0];
  s.T = in.q.shape[0];
  s.hq = in.q.shape[1];
  s.hkv = keys.shape[1];
  s.d = keys.shape[2];
  s.width = s.hkv * s.d;
  ESA_CHECK(in.q.shape[2] == s.d && s.hq % s.hkv == 0, "{}: q {} does not fit the cache's {} KV heads of dim {}", who,
            in.q.shape_str(), s.hkv, s.d);
  ESA_CHECK(s.T <= s.S, "{}: chunk of {} queries but only {} cached tokens in layer {}", who, s.T, s.S, in.layer);
  s.split = split_context(budget, in.chunk_begin());
  s.m0 = s.split.init_end;
  s.m1 = s.split.local_begin;
  return s;
}

Tensor score_space_queries(const LayerInputs& in, int64_t n_kv_heads, ScoreSpace space, int64_t w) {
  // RoPE is linear and the same for every head: rotating the Hkv folded rows equals folding
  // the Hq rotated ones, at a fraction of the cost.
  Tensor q = gqa_fold(in.q, n_kv_heads);
  if (space == ScoreSpace::rotated) q = rotate_to_position(q.view(), w, *in.rope, in.angles);
  return q;
}

Selection ScoringPolicy::all_middle(const Step& s) const {
  Selection sel;
  sel.local_begin = s.split.local_begin;
  sel.long_tokens.assign(size_t(lists(s)), long_list_all(s.split.init_end, s.m0, s.m1));
  return sel;
}

}  // namespace esa::attention
