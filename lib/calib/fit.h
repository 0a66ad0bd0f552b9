// Fitting the compression maps q' = Wq q~ + bq, k' = Wk k + bk of one layer (PAPER.md section 3).
//
//   closed  the optimum of the pair-averaged squared score error E_{q,k} (q.k - q'.k')^2 over
//           rank-d' maps *with* bias, from second moments alone: with augmented vectors
//           q_a = [q; 1], k_a = [k; 1], P = E[q_a q_a^T]^{1/2}, R = E[k_a k_a^T]^{1/2} and
//           J = diag(1, ..., 1, 0) (the target q.k = q_a^T J k_a), the error is
//           ||P (J - A^T B) R||_F^2, minimised (Eckart-Young) by the SVD P J R = U S V^T:
//           A = S_r^{1/2} U_r^T P^+, B = S_r^{1/2} V_r^T R^+ ([W | b] in one matrix each).
//           Without the augmentation this is the paper's whitened-SVD decision; the "1" column
//           adds the biases at no cost. P^+ is the pseudo-inverse square root with eigenvalues
//           below ridge * max treated as zero (the regularised inverse).
//   pca     Loki's baseline: the top-d' principal directions U of the keys' covariance, applied
//           to queries and keys alike (Wq = Wk = U^T, no bias).
//   adam    starts from `closed` and minimises, with Adam on mini-batches, the loss over the
//           pairs inference scores: a query and the keys *before* it in its sequence (past the
//           first `skip` sink tokens, which are always attended). `mse`: the paper's
//           (q.k - q'.k')^2; `rank`: per query, KL(softmax(s / tau) || softmax(s' / tau)) over its
//           keys, which weighs the top of the ranking. The parameters with the lowest loss on a
//           fixed monitor set of training pairs (checked at the start and after every epoch) are
//           returned, so it never ends worse than it started.
#pragma once

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

#include "attention/projection.h"

namespace esa::calib {

/// Streaming E[[x; 1][x; 1]^T] in float64, x of `dim` floats.
class SecondMoments {
 public:
  explicit SecondMoments(int64_t dim);
  /// Adds n rows of `dim` floats each (a row-major [n, dim] block).
  void add(const float* rows, int64_t n);
  int64_t count() const { return count_; }
  int64_t dim() const { return dim_; }
  /// E[x_a x_a^T], (dim + 1) x (dim + 1); the last row/column hold the mean and 1.
  Eigen::MatrixXd augmented() const;
  /// E[(x - mean)(x - mean)^T].
  Eigen::MatrixXd covariance() const;

 private:
  int64_t dim_, count_ = 0;
  Eigen::MatrixXd sum_;  // sum of x_a x_a^T (lower triangle filled by rank updates)
};

struct FitResult {
  attention::LayerProjection projection;
  /// Descending: sigma_i^2 of P J R (closed: the score energy each dimension captures) or the
  /// key covariance's eigenvalues (pca).
  std::vector<double> spectrum;
};

/// `dim` when > 0 (must be <= the spectrum's size); otherwise the smallest d' whose leading
/// spectrum holds at least `energy` (0 < energy <= 1) of the total.
int64_t choose_dim(const std::vector<double>& spectrum, int64_t dim, double energy);

FitResult fit_closed(const SecondMoments& queries, const SecondMoments& keys, int64_t dim, double energy,
                     double ridge = 1e-9);
FitResult fit_pca(const SecondMoments& keys, int64_t dim, double energy);

/// One layer's rows, sequences concatenated: q [rows, in_dim] (the folded queries in the score
/// space) and k [rows, in_dim] (keys before RoPE); sequence i is rows [begin[i], end[i]).
struct RowSet {
  const float* q = nullptr;
  const float* k = nullptr;
  int64_t in_dim = 0;
  std::vector<int64_t> begin, end;
  int64_t skip = 64;  // the first `skip` tokens of a sequence are sinks: never candidates
};

enum class Loss { mse, rank };

struct AdamOptions {
  int64_t epochs = 10;           // an epoch = as many batches as the training set has queries / batch
  int64_t batch = 128;           // queries per batch (the paper's batch size)
  int64_t keys = 512;            // keys per batch, each pair masked to key position < query position
  double lr = 5e-4;              // the paper's learning rate
  Loss loss = Loss::mse;
  double temperature = 8.0;      // tau of the rank loss (the attention's sqrt(head_dim) is a good value)
  int64_t monitor_queries = 256; // queries of the fixed monitor set (all their causal keys)
  uint64_t seed = 0;
};

struct AdamResult {
  attention::LayerProjection projection;
  double loss_start = 0, loss_end = 0;  // monitor-set loss of `start` and of the result
  int64_t steps = 0, best_epoch = 0;    // best_epoch 0: the start was never improved on
};

AdamResult fit_adam(const attention::LayerProjection& start, const RowSet& train, const AdamOptions& options);

/// The adam loss of a projection on the monitor set drawn from `train` with options.seed.
double monitor_loss(const attention::LayerProjection& projection, const RowSet& train, const AdamOptions& options);

}  // namespace esa::calib
