// Selection diagnostics; see diagnostics.h. References: the float64 brute forces of
// tests/unit/test_diagnostics.cc.
#include "attention/diagnostics.h"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "attention/selection.h"
#include "core/error.h"

namespace esa::attention {
namespace {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMapF = Eigen::Map<const RowMatrixF, 0, Eigen::OuterStride<>>;

constexpr int64_t kMassBlock = 2048;  // middle tokens per GEMM column block
constexpr double kNegInfD = -std::numeric_limits<double>::infinity();

// Which middle tokens [m0, m1) list `list` of `sel` attends to: those in the long list and
// those the local branch sees (>= local_begin). A Selection without lists has an empty one.
std::vector<char> chosen_mask(const Selection& sel, size_t list, int64_t m0, int64_t m1) {
  std::vector<char> mask(size_t(std::max<int64_t>(0, m1 - m0)), 0);
  for (int64_t m = std::max(m0, sel.local_begin); m < m1; ++m) mask[size_t(m - m0)] = 1;
  if (list < sel.long_tokens.size()) {
    for (int64_t t : sel.long_tokens[list]) {
      if (t >= m0 && t < m1) mask[size_t(t - m0)] = 1;
    }
  }
  return mask;
}

size_t list_count(const Selection& sel) { return std::max<size_t>(1, sel.long_tokens.size()); }

}  // namespace

double selection_mass(const LayerInputs& in, const Selection& sel, const PolicyOptions& options) {
  ESA_CHECK(in.cache != nullptr && in.rope != nullptr, "selection_mass: layer inputs without a cache or a RoPE table");
  ESA_CHECK(in.layer >= 0 && in.layer < in.cache->n_layers(), "selection_mass: layer {} out of range ({} layers)",
            in.layer, in.cache->n_layers());
  ESA_CHECK(in.q.shape.size() == 3, "selection_mass: q {} must be [T, heads, head_dim]", in.q.shape_str());
  const TensorView keys = in.cache->keys(in.layer);  // [S, Hkv, d]
  const int64_t T = in.q.shape[0], hq = in.q.shape[1], hkv = keys.shape[1], d = keys.shape[2], width = hkv * d;
  ESA_CHECK(in.q.shape[2] == d && hq % hkv == 0, "selection_mass: q {} does not fit the cache's {} KV heads of dim {}",
            in.q.shape_str(), hkv, d);
  ESA_CHECK(T <= keys.shape[0], "selection_mass: chunk of {} queries but only {} cached tokens", T, keys.shape[0]);
  const size_t lists = list_count(sel);
  ESA_CHECK(lists == 1 || int64_t(lists) == hkv, "selection_mass: {} long-token lists for {} KV heads", lists, hkv);
  const ContextSplit split = split_context(options.budget, in.chunk_begin());
  const int64_t m0 = split.init_end, m1 = split.local_begin, n = m1 - m0;
  if (n <= 0 || T == 0) return 1.0;

  std::vector<std::vector<char>> masks(lists);
  for (size_t l = 0; l < lists; ++l) masks[l] = chosen_mask(sel, l, m0, m1);

  // Queries in the score space, as float64: [T, Hq * d] (row t holds every head).
  const Tensor q = options.score_space == ScoreSpace::rotated
                       ? rotate_to_position(in.q, options.query_position(), *in.rope, in.angles)
                       : Tensor(in.q.shape, std::vector<float>(in.q.data, in.q.data + in.q.numel()));
  const RowMatrixD qd = StridedMapF(q.data(), T, hq * d, Eigen::OuterStride<>(hq * d)).cast<double>();
  const double scale = 1.0 / std::sqrt(double(d));
  const int64_t group = hq / hkv;

  // Online softmax per (head, query): running max, sum of exp and sum of exp over the chosen.
  std::vector<double> run_max(size_t(hq * T), kNegInfD), run_sum(size_t(hq * T), 0.0), run_chosen(size_t(hq * T), 0.0);
  RowMatrixD kd, s;
  for (int64_t j0 = 0; j0 < n; j0 += kMassBlock) {
    const int64_t count = std::min(kMassBlock, n - j0);
    for (int64_t g = 0; g < hkv; ++g) {
      kd = StridedMapF(keys.data + (m0 + j0) * width + g * d, count, d, Eigen::OuterStride<>(width)).cast<double>();
      const std::vector<char>& mask = masks[lists == 1 ? 0 : size_t(g)];
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        s.noalias() = qd.middleCols(h * d, d) * kd.transpose();  // [T, count]
        s *= scale;
        for (int64_t t = 0; t < T; ++t) {
          const size_t r = size_t(h * T + t);
          const double block_max = s.row(t).maxCoeff();
          const double new_max = std::max(run_max[r], block_max);
          const double factor = run_max[r] == kNegInfD ? 0.0 : std::exp(run_max[r] - new_max);
          double sum = 0, chosen = 0;
          for (int64_t j = 0; j < count; ++j) {
            const double e = std::exp(s(t, j) - new_max);
            sum += e;
            if (mask[size_t(j0 + j)]) chosen += e;
          }
          run_sum[r] = run_sum[r] * factor + sum;
          run_chosen[r] = run_chosen[r] * factor + chosen;
          run_max[r] = new_max;
        }
      }
    }
  }
  double total = 0;
  for (size_t r = 0; r < run_sum.size(); ++r) total += run_chosen[r] / run_sum[r];
  return total / double(hq * T);
}

DiagnosticPolicy::DiagnosticPolicy(std::unique_ptr<Policy> inner, const ModelConfig& config)
    : Policy(inner != nullptr ? inner->options() : PolicyOptions{}), inner_(std::move(inner)) {
  ESA_CHECK(inner_ != nullptr, "DiagnosticPolicy: no policy to wrap");
  PolicyOptions oracle = options_;
  oracle.kind = PolicyKind::oracle;
  oracle.heads = HeadMode::uniform;
  oracle.projection.clear();
  oracle_ = make_policy(oracle, config);
}

void DiagnosticPolicy::set_needles(std::vector<std::pair<int64_t, int64_t>> needles) {
  for (const auto& [begin, end] : needles) {
    ESA_CHECK(begin >= 0 && end >= begin, "DiagnosticPolicy: needle range [{}, {}) is invalid", begin, end);
  }
  needles_ = std::move(needles);
}

Selection DiagnosticPolicy::select(const LayerInputs& in) {
  Selection sel = inner_->select(in);
  const Selection ref = oracle_->select(in);

  SelectionRecord rec;
  rec.layer = in.layer;
  rec.chunk_begin = in.chunk_begin();
  rec.chunk_len = in.q.shape[0];
  const ContextSplit split = split_context(options_.budget, rec.chunk_begin);
  const int64_t m0 = split.init_end, m1 = split.local_begin;
  rec.n_middle = std::max<int64_t>(0, m1 - m0);

  // Chosen middle tokens: per list (n_selected) and their union (recall).
  std::vector<char> any(size_t(rec.n_middle), 0);
  for (size_t l = 0; l < list_count(sel); ++l) {
    const std::vector<char> mask = chosen_mask(sel, l, m0, m1);
    int64_t count = 0;
    for (size_t j = 0; j < mask.size(); ++j) {
      count += mask[j];
      any[j] |= mask[j];
    }
    rec.n_selected = std::max(rec.n_selected, count);
  }
  const std::vector<char> oracle = chosen_mask(ref, 0, m0, m1);
  int64_t n_oracle = 0, hit = 0;
  for (size_t j = 0; j < oracle.size(); ++j) {
    n_oracle += oracle[j];
    hit += oracle[j] & any[j];
  }
  rec.recall = n_oracle == 0 ? 1.0 : double(hit) / double(n_oracle);
  rec.mass = selection_mass(in, sel, options_);

  // Needles: attended by the long branch (any list) or the local branch.
  rec.needle_fraction.reserve(needles_.size());
  for (const auto& [begin, end] : needles_) {
    if (end > rec.chunk_begin || end == begin) {
      rec.needle_fraction.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    std::vector<char> seen(size_t(end - begin), 0);
    for (int64_t t = std::max(begin, sel.local_begin); t < end; ++t) seen[size_t(t - begin)] = 1;
    for (const std::vector<int64_t>& list : sel.long_tokens) {
      for (int64_t t : list) {
        if (t >= begin && t < end) seen[size_t(t - begin)] = 1;
      }
    }
    int64_t covered = 0;
    for (char c : seen) covered += c;
    rec.needle_fraction.push_back(double(covered) / double(end - begin));
  }
  records_.push_back(std::move(rec));
  return sel;
}

std::vector<DiagnosticPolicy::LayerSummary> DiagnosticPolicy::summary() const {
  std::map<int64_t, LayerSummary> by_layer;
  for (const SelectionRecord& r : records_) {
    auto [it, fresh] = by_layer.try_emplace(r.layer);
    LayerSummary& s = it->second;
    if (fresh) {
      s.layer = r.layer;
      s.min_recall = r.recall;
    }
    ++s.calls;
    s.mean_recall += r.recall;
    s.mean_mass += r.mass;
    s.min_recall = std::min(s.min_recall, r.recall);
  }
  std::vector<LayerSummary> out;
  out.reserve(by_layer.size());
  for (auto& [layer, s] : by_layer) {
    s.mean_recall /= double(s.calls);
    s.mean_mass /= double(s.calls);
    out.push_back(s);
  }
  return out;
}

}  // namespace esa::attention
