// evaluate_heldout; see heldout.h.
#include "calib/heldout.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "attention/selection.h"
#include "core/error.h"

namespace esa::calib {
namespace {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMapF = Eigen::Map<const MatF>;

double overlap(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  // Both sorted (top_k_indices returns indices in order).
  size_t i = 0, j = 0, common = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) {
      ++common, ++i, ++j;
    } else if (a[i] < b[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  return double(common);
}

}  // namespace

HeldoutMetrics evaluate_heldout(const attention::LayerProjection& p, const RowSet& rows, const HeldoutOptions& o) {
  ESA_CHECK(o.queries >= 1, "--eval-queries must be >= 1, got {}", o.queries);
  ESA_CHECK(o.fraction > 0 && o.fraction <= 1, "recall fraction must be in (0, 1], got {}", o.fraction);
  const int64_t n = rows.in_dim, r = p.dim;
  ESA_CHECK(int64_t(p.wq.size()) == r * n, "held-out: projection of input dimension {} for rows of {}",
            int64_t(p.wq.size()) / std::max<int64_t>(r, 1), n);
  const ConstMapF Wq(p.wq.data(), r, n), Wk(p.wk.data(), r, n);
  const Eigen::Map<const Eigen::VectorXf> bq(p.bq.data(), r), bk(p.bk.data(), r);

  const size_t nk = o.ks.size() + 1;
  std::vector<double> recall_sum(nk, 0.0);
  std::vector<int64_t> recall_n(nk, 0);
  double err2 = 0, ref2 = 0;
  HeldoutMetrics out;
  std::mt19937_64 gen(o.seed ^ 0x686f6c646f7574ull);  // "holdout"
  int64_t slots_total = 0;
  for (size_t s = 0; s < rows.begin.size(); ++s) {
    slots_total += std::max<int64_t>(0, (rows.end[s] - rows.begin[s]) - (rows.end[s] - rows.begin[s] + rows.skip) / 2);
  }
  ESA_CHECK(slots_total > 0, "held-out: no held-out sequence is longer than --skip {} tokens", rows.skip);
  for (size_t s = 0; s < rows.begin.size(); ++s) {
    const int64_t len = rows.end[s] - rows.begin[s];
    const int64_t lo = std::max(rows.skip + 1, (len + rows.skip) / 2);
    if (lo >= len) continue;
    const int64_t want = std::max<int64_t>(1, (o.queries * (len - lo) + slots_total - 1) / slots_total);
    std::uniform_int_distribution<int64_t> pick(lo, len - 1);
    // The sequence's candidate keys [skip, len) once, exact and compressed.
    const ConstMapF K(rows.k + (rows.begin[s] + rows.skip) * n, len - rows.skip, n);
    const MatF Kc = (K * Wk.transpose()).rowwise() + bk.transpose();
    for (int64_t qi = 0; qi < want; ++qi) {
      const int64_t c = pick(gen);
      const int64_t m = c - rows.skip;  // candidates: positions [skip, c)
      const ConstMapF q(rows.q + (rows.begin[s] + c) * n, 1, n);
      const MatF qc = (q * Wq.transpose()) + bq.transpose();
      std::vector<float> exact(static_cast<size_t>(m)), approx(static_cast<size_t>(m));
      Eigen::Map<MatF>(exact.data(), 1, m) = q * K.topRows(m).transpose();
      Eigen::Map<MatF>(approx.data(), 1, m) = qc * Kc.topRows(m).transpose();
      for (int64_t j = 0; j < m; ++j) {
        const double e = double(approx[size_t(j)]) - double(exact[size_t(j)]);
        err2 += e * e;
        ref2 += double(exact[size_t(j)]) * double(exact[size_t(j)]);
      }
      out.pairs += m;
      out.queries += 1;
      for (size_t ki = 0; ki < nk; ++ki) {
        const int64_t k = ki < o.ks.size() ? o.ks[ki] : std::max<int64_t>(1, int64_t(std::llround(o.fraction * double(m))));
        if (k >= m) continue;  // every candidate is kept: nothing to measure
        const auto a = attention::top_k_indices(exact, k), b = attention::top_k_indices(approx, k);
        recall_sum[ki] += overlap(a, b) / double(k);
        recall_n[ki] += 1;
      }
    }
  }
  out.rel_err = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  for (size_t ki = 0; ki < nk; ++ki) {
    out.recall.push_back(recall_n[ki] > 0 ? recall_sum[ki] / double(recall_n[ki]) : std::numeric_limits<double>::quiet_NaN());
  }
  return out;
}

}  // namespace esa::calib
