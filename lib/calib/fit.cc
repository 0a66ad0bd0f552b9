// The three fits; see fit.h for the mathematics. Dense algebra is Eigen: moments and the closed
// form in float64 (the matrices are (in_dim + 1)^2, tiny next to the data), Adam in float32.
#include "calib/fit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/interrupt.h"

namespace esa::calib {
namespace {

using MatD = Eigen::MatrixXd;
using VecD = Eigen::VectorXd;
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VecF = Eigen::VectorXf;
using ConstMapF = Eigen::Map<const MatF>;

// Square root and regularised pseudo-inverse square root of a symmetric PSD matrix.
void sqrt_and_pinv_sqrt(const MatD& S, double ridge, MatD& root, MatD& inv_root) {
  Eigen::SelfAdjointEigenSolver<MatD> eig(S);
  ESA_CHECK(eig.info() == Eigen::Success, "calibrate: eigen-decomposition of a second-moment matrix failed");
  const VecD& l = eig.eigenvalues();
  const double tol = ridge * std::max(l.maxCoeff(), 0.0);
  VecD r(l.size()), ir(l.size());
  for (Eigen::Index i = 0; i < l.size(); ++i) {
    r[i] = std::sqrt(std::max(l[i], 0.0));
    ir[i] = l[i] > tol && l[i] > 0 ? 1.0 / r[i] : 0.0;
  }
  root = eig.eigenvectors() * r.asDiagonal() * eig.eigenvectors().transpose();
  inv_root = eig.eigenvectors() * ir.asDiagonal() * eig.eigenvectors().transpose();
}

// [W | b] (r x (n + 1), float64) -> the projection's row-major float arrays.
void split_augmented(const MatD& Wb, std::vector<float>& w, std::vector<float>& b) {
  const Eigen::Index r = Wb.rows(), n = Wb.cols() - 1;
  w.resize(size_t(r * n));
  b.resize(size_t(r));
  for (Eigen::Index i = 0; i < r; ++i) {
    for (Eigen::Index j = 0; j < n; ++j) w[size_t(i * n + j)] = float(Wb(i, j));
    b[size_t(i)] = float(Wb(i, n));
  }
}

}  // namespace

// ---- moments ------------------------------------------------------------------------------------

SecondMoments::SecondMoments(int64_t dim) : dim_(dim), sum_(MatD::Zero(dim + 1, dim + 1)) {
  ESA_CHECK(dim > 0, "calibrate: vector dimension {} must be positive", dim);
}

void SecondMoments::add(const float* rows, int64_t n) {
  // Blocks of rows in float64, one symmetric rank-k update each (half the flops of X^T X).
  constexpr int64_t kBlock = 4096;
  MatD X(std::min(n, kBlock), dim_ + 1);
  for (int64_t r0 = 0; r0 < n; r0 += kBlock) {
    const int64_t m = std::min(kBlock, n - r0);
    X.resize(m, dim_ + 1);
    X.leftCols(dim_) = ConstMapF(rows + r0 * dim_, m, dim_).cast<double>();
    X.col(dim_).setOnes();
    sum_.selfadjointView<Eigen::Lower>().rankUpdate(X.transpose());
  }
  count_ += n;
}

MatD SecondMoments::augmented() const {
  ESA_CHECK(count_ > 0, "calibrate: second moments of no rows");
  MatD full = sum_.selfadjointView<Eigen::Lower>();
  return full / double(count_);
}

MatD SecondMoments::covariance() const {
  const MatD a = augmented();
  const VecD mean = a.col(dim_).head(dim_);
  return a.topLeftCorner(dim_, dim_) - mean * mean.transpose();
}

// ---- closed form and PCA ------------------------------------------------------------------------

int64_t choose_dim(const std::vector<double>& spectrum, int64_t dim, double energy) {
  const int64_t n = int64_t(spectrum.size());
  if (dim > 0) {
    ESA_CHECK(dim <= n, "--dim {} is larger than the key dimension {}", dim, n);
    return dim;
  }
  ESA_CHECK(energy > 0 && energy <= 1, "--energy must be in (0, 1], got {}", energy);
  double total = 0;
  for (double s : spectrum) total += std::max(s, 0.0);
  if (total <= 0) return 1;
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc += std::max(spectrum[size_t(i)], 0.0);
    if (acc >= energy * total * (1 - 1e-12)) return i + 1;
  }
  return n;
}

FitResult fit_closed(const SecondMoments& queries, const SecondMoments& keys, int64_t dim, double energy, double ridge) {
  ESA_CHECK(queries.dim() == keys.dim(), "calibrate: queries of {} dimensions, keys of {}", queries.dim(), keys.dim());
  const int64_t n = keys.dim();
  MatD P, Pinv, R, Rinv;
  sqrt_and_pinv_sqrt(queries.augmented(), ridge, P, Pinv);
  sqrt_and_pinv_sqrt(keys.augmented(), ridge, R, Rinv);
  MatD PJ = P;
  PJ.col(n).setZero();  // P J: the target ignores the augmented "1" of the query
  Eigen::JacobiSVD<MatD> svd(PJ * R, Eigen::ComputeFullU | Eigen::ComputeFullV);
  const VecD& s = svd.singularValues();
  FitResult out;
  for (int64_t i = 0; i < n; ++i) out.spectrum.push_back(s[i] * s[i]);  // rank <= n (J has rank n)
  const int64_t r = choose_dim(out.spectrum, dim, energy);
  const VecD half = s.head(r).cwiseSqrt();
  const MatD A = half.asDiagonal() * svd.matrixU().leftCols(r).transpose() * Pinv;  // [r, n + 1]
  const MatD B = half.asDiagonal() * svd.matrixV().leftCols(r).transpose() * Rinv;
  out.projection.dim = r;
  split_augmented(A, out.projection.wq, out.projection.bq);
  split_augmented(B, out.projection.wk, out.projection.bk);
  return out;
}

FitResult fit_pca(const SecondMoments& keys, int64_t dim, double energy) {
  const int64_t n = keys.dim();
  Eigen::SelfAdjointEigenSolver<MatD> eig(keys.covariance());
  ESA_CHECK(eig.info() == Eigen::Success, "calibrate: eigen-decomposition of the key covariance failed");
  FitResult out;
  for (int64_t i = n - 1; i >= 0; --i) out.spectrum.push_back(eig.eigenvalues()[i]);  // descending
  const int64_t r = choose_dim(out.spectrum, dim, energy);
  out.projection.dim = r;
  out.projection.wq.resize(size_t(r * n));
  for (int64_t i = 0; i < r; ++i) {
    const auto u = eig.eigenvectors().col(n - 1 - i);
    for (int64_t j = 0; j < n; ++j) out.projection.wq[size_t(i * n + j)] = float(u[j]);
  }
  out.projection.wk = out.projection.wq;
  out.projection.bq.assign(size_t(r), 0.0f);
  out.projection.bk.assign(size_t(r), 0.0f);
  return out;
}

// ---- Adam ---------------------------------------------------------------------------------------

namespace {

struct Params {
  MatF wq, wk;  // [r, n]
  VecF bq, bk;  // [r]
};

Params to_params(const attention::LayerProjection& p, int64_t n) {
  Params o;
  o.wq = ConstMapF(p.wq.data(), p.dim, n);
  o.wk = ConstMapF(p.wk.data(), p.dim, n);
  o.bq = Eigen::Map<const VecF>(p.bq.data(), p.dim);
  o.bk = Eigen::Map<const VecF>(p.bk.data(), p.dim);
  return o;
}

attention::LayerProjection from_params(const Params& p) {
  attention::LayerProjection o;
  o.dim = p.wq.rows();
  o.wq.assign(p.wq.data(), p.wq.data() + p.wq.size());
  o.wk.assign(p.wk.data(), p.wk.data() + p.wk.size());
  o.bq.assign(p.bq.data(), p.bq.data() + p.bq.size());
  o.bk.assign(p.bk.data(), p.bk.data() + p.bk.size());
  return o;
}

// Queries Q [B, n] at positions qpos, keys K [M, n] at kpos of one sequence; a pair counts when
// kpos < qpos. Returns the loss (mean over valid pairs for mse, over queries with a valid key for
// rank) and, when grad is given, its gradient.
double batch_loss(const Params& p, const MatF& Q, const std::vector<int64_t>& qpos, const MatF& K,
                  const std::vector<int64_t>& kpos, const AdamOptions& o, Params* grad) {
  const MatF Qp = (Q * p.wq.transpose()).rowwise() + p.bq.transpose();  // [B, r]
  const MatF Kp = (K * p.wk.transpose()).rowwise() + p.bk.transpose();  // [M, r]
  const MatF S = Q * K.transpose();
  const MatF Sp = Qp * Kp.transpose();
  const Eigen::Index B = Q.rows(), M = K.rows();
  MatF G = MatF::Zero(B, M);
  double loss = 0;
  if (o.loss == Loss::mse) {
    int64_t pairs = 0;
    for (Eigen::Index i = 0; i < B; ++i) {
      for (Eigen::Index j = 0; j < M; ++j) {
        if (kpos[size_t(j)] >= qpos[size_t(i)]) continue;
        const double e = double(Sp(i, j)) - double(S(i, j));
        loss += e * e;
        G(i, j) = float(2 * e);
        ++pairs;
      }
    }
    if (pairs == 0) return 0;
    loss /= double(pairs);
    G /= float(pairs);
  } else {
    const double tau = o.temperature;
    int64_t rows = 0;
    std::vector<double> pt(static_cast<size_t>(M)), pa(static_cast<size_t>(M));
    for (Eigen::Index i = 0; i < B; ++i) {
      double mt = -std::numeric_limits<double>::infinity(), ma = mt;
      int64_t valid = 0;
      for (Eigen::Index j = 0; j < M; ++j) {
        if (kpos[size_t(j)] >= qpos[size_t(i)]) continue;
        mt = std::max(mt, double(S(i, j)) / tau);
        ma = std::max(ma, double(Sp(i, j)) / tau);
        ++valid;
      }
      if (valid == 0) continue;
      double zt = 0, za = 0;
      for (Eigen::Index j = 0; j < M; ++j) {
        if (kpos[size_t(j)] >= qpos[size_t(i)]) continue;
        zt += pt[size_t(j)] = std::exp(double(S(i, j)) / tau - mt);
        za += pa[size_t(j)] = std::exp(double(Sp(i, j)) / tau - ma);
      }
      double kl = 0;
      for (Eigen::Index j = 0; j < M; ++j) {
        if (kpos[size_t(j)] >= qpos[size_t(i)]) continue;
        const double t = pt[size_t(j)] / zt, a = pa[size_t(j)] / za;
        if (t > 0) kl += t * (std::log(t) - std::log(std::max(a, 1e-300)));
        G(i, j) = float((a - t) / tau);
      }
      loss += kl;
      ++rows;
    }
    if (rows == 0) return 0;
    loss /= double(rows);
    G /= float(rows);
  }
  if (grad != nullptr) {
    const MatF dQp = G * Kp;              // [B, r]
    const MatF dKp = G.transpose() * Qp;  // [M, r]
    grad->wq = dQp.transpose() * Q;
    grad->bq = dQp.colwise().sum().transpose();
    grad->wk = dKp.transpose() * K;
    grad->bk = dKp.colwise().sum().transpose();
  }
  return loss;
}

MatF gather_rows(const float* data, int64_t n, const std::vector<int64_t>& rows) {
  MatF out(Eigen::Index(rows.size()), n);
  for (size_t i = 0; i < rows.size(); ++i) out.row(Eigen::Index(i)) = ConstMapF(data + rows[i] * n, 1, n);
  return out;
}

// The monitor set: per sequence, some query rows and all of its candidate keys.
struct MonitorSet {
  struct Part {
    MatF Q, K;
    std::vector<int64_t> qpos, kpos;
  };
  std::vector<Part> parts;
};

void check_rows(const RowSet& rows) {
  ESA_CHECK(rows.q != nullptr && rows.k != nullptr && rows.in_dim > 0, "calibrate: empty row set");
  ESA_CHECK(rows.begin.size() == rows.end.size() && !rows.begin.empty(), "calibrate: no sequences");
  ESA_CHECK(rows.skip >= 0, "--skip must be >= 0, got {}", rows.skip);
}

// Query candidates of sequence i: positions (skip, len).
int64_t query_slots(const RowSet& rows, size_t i) {
  return std::max<int64_t>(0, rows.end[i] - rows.begin[i] - rows.skip - 1);
}

MonitorSet make_monitor(const RowSet& rows, const AdamOptions& o) {
  int64_t total = 0;
  for (size_t i = 0; i < rows.begin.size(); ++i) total += query_slots(rows, i);
  ESA_CHECK(total > 0, "calibrate: no training sequence is longer than --skip {} + 1 tokens", rows.skip);
  std::mt19937_64 gen(o.seed ^ 0x6d6f6e69746f72ull);  // "monitor"
  MonitorSet m;
  for (size_t i = 0; i < rows.begin.size(); ++i) {
    const int64_t slots = query_slots(rows, i);
    const int64_t want = (o.monitor_queries * slots + total - 1) / total;
    if (slots == 0 || want == 0) continue;
    std::uniform_int_distribution<int64_t> pick(rows.skip + 1, rows.end[i] - rows.begin[i] - 1);
    MonitorSet::Part part;
    std::vector<int64_t> qrows, krows;
    for (int64_t j = 0; j < want; ++j) {
      part.qpos.push_back(pick(gen));
      qrows.push_back(rows.begin[i] + part.qpos.back());
    }
    for (int64_t p = rows.skip; p < rows.end[i] - rows.begin[i]; ++p) {
      part.kpos.push_back(p);
      krows.push_back(rows.begin[i] + p);
    }
    part.Q = gather_rows(rows.q, rows.in_dim, qrows);
    part.K = gather_rows(rows.k, rows.in_dim, krows);
    m.parts.push_back(std::move(part));
  }
  return m;
}

double monitor_loss_of(const Params& p, const MonitorSet& m, const AdamOptions& o) {
  double sum = 0;
  int64_t n = 0;
  for (const auto& part : m.parts) {
    sum += batch_loss(p, part.Q, part.qpos, part.K, part.kpos, o, nullptr) * double(part.Q.rows());
    n += part.Q.rows();
  }
  return n > 0 ? sum / double(n) : 0.0;
}

void check_adam(const AdamOptions& o) {
  ESA_CHECK(o.epochs >= 0, "--epochs must be >= 0, got {}", o.epochs);
  ESA_CHECK(o.batch >= 1, "--batch must be >= 1, got {}", o.batch);
  ESA_CHECK(o.keys >= 1, "--batch-keys must be >= 1, got {}", o.keys);
  ESA_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be > 0, got {}", o.lr);
  ESA_CHECK(o.temperature > 0 && std::isfinite(o.temperature), "--temperature must be > 0, got {}", o.temperature);
  ESA_CHECK(o.monitor_queries >= 1, "--monitor-queries must be >= 1, got {}", o.monitor_queries);
}

}  // namespace

double monitor_loss(const attention::LayerProjection& projection, const RowSet& train, const AdamOptions& options) {
  check_rows(train);
  check_adam(options);
  return monitor_loss_of(to_params(projection, train.in_dim), make_monitor(train, options), options);
}

AdamResult fit_adam(const attention::LayerProjection& start, const RowSet& train, const AdamOptions& o) {
  check_rows(train);
  check_adam(o);
  const int64_t n = train.in_dim;
  Params p = to_params(start, n);
  const MonitorSet monitor = make_monitor(train, o);
  AdamResult out;
  out.loss_start = monitor_loss_of(p, monitor, o);
  Params best = p;
  double best_loss = out.loss_start;

  std::vector<double> weights;
  int64_t total = 0;
  for (size_t i = 0; i < train.begin.size(); ++i) {
    weights.push_back(double(query_slots(train, i)));
    total += query_slots(train, i);
  }
  std::mt19937_64 gen(o.seed);
  std::discrete_distribution<size_t> pick_seq(weights.begin(), weights.end());
  const int64_t steps_per_epoch = std::max<int64_t>(1, (total + o.batch - 1) / o.batch);
  constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  Params m{MatF::Zero(p.wq.rows(), n), MatF::Zero(p.wk.rows(), n), VecF::Zero(p.bq.size()), VecF::Zero(p.bk.size())};
  Params v = m, g = m;
  int64_t t = 0;
  std::vector<int64_t> qpos(size_t(o.batch)), kpos(size_t(o.keys)), qrows(size_t(o.batch)), krows(size_t(o.keys));
  for (int64_t epoch = 1; epoch <= o.epochs; ++epoch) {
    for (int64_t step = 0; step < steps_per_epoch; ++step) {
      check_interrupt();  // a fit runs for minutes: SIGTERM ends it within a step
      const size_t s = pick_seq(gen);
      const int64_t len = train.end[s] - train.begin[s];
      std::uniform_int_distribution<int64_t> qd(train.skip + 1, len - 1), kd(train.skip, len - 1);
      for (size_t i = 0; i < qpos.size(); ++i) qrows[i] = train.begin[s] + (qpos[i] = qd(gen));
      for (size_t i = 0; i < kpos.size(); ++i) krows[i] = train.begin[s] + (kpos[i] = kd(gen));
      const MatF Q = gather_rows(train.q, n, qrows), K = gather_rows(train.k, n, krows);
      batch_loss(p, Q, qpos, K, kpos, o, &g);
      ++t;
      const float lr_t = float(o.lr * std::sqrt(1 - std::pow(kBeta2, double(t))) / (1 - std::pow(kBeta1, double(t))));
      auto update = [&](auto& param, auto& mm, auto& vv, const auto& gg) {
        mm = float(kBeta1) * mm + float(1 - kBeta1) * gg;
        vv = float(kBeta2) * vv + float(1 - kBeta2) * gg.cwiseProduct(gg);
        param.array() -= lr_t * mm.array() / (vv.array().sqrt() + float(kEps));
      };
      update(p.wq, m.wq, v.wq, g.wq);
      update(p.bq, m.bq, v.bq, g.bq);
      update(p.wk, m.wk, v.wk, g.wk);
      update(p.bk, m.bk, v.bk, g.bk);
    }
    const double loss = monitor_loss_of(p, monitor, o);
    if (std::isfinite(loss) && loss < best_loss) {
      best_loss = loss;
      best = p;
      out.best_epoch = epoch;
    }
  }
  out.steps = t;
  out.loss_end = best_loss;
  out.projection = from_params(best);
  return out;
}

}  // namespace esa::calib
