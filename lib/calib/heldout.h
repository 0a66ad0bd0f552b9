// Held-out quality of a projection (PAPER.md section 3, "report per layer"): on sequences not
// used for fitting, for sampled queries c and their candidates (keys at positions [skip, c) of
// the same sequence, as inference would score them), compare the exact score s = q~.k with the
// compressed one s' = q'.k':
//   rel_err      sqrt(sum (s - s')^2 / sum s^2) over all pairs;
//   recall@k     |top-k(s) ∩ top-k(s')| / k, averaged over the queries with more than k
//                candidates (NaN when none has), for each k in `ks` and for k = `fraction` of
//                each query's candidates. Ties are broken by the lower position, as in selection.
#pragma once

#include <cstdint>
#include <vector>

#include "attention/projection.h"
#include "calib/fit.h"

namespace esa::calib {

struct HeldoutOptions {
  int64_t queries = 256;                  // sampled queries, spread over the sequences
  std::vector<int64_t> ks = {16, 64, 256};
  double fraction = 0.25;                 // the extra recall at k = 25% of the candidates
  uint64_t seed = 0;
};

struct HeldoutMetrics {
  double rel_err = 0;
  std::vector<double> recall;  // one per ks, then the fraction
  int64_t queries = 0, pairs = 0;
};

/// Queries are drawn from positions [(len + skip) / 2, len) of each sequence (so that every query
/// has at least half a sequence of candidates).
HeldoutMetrics evaluate_heldout(const attention::LayerProjection& projection, const RowSet& rows,
                                const HeldoutOptions& options);

}  // namespace esa::calib
