// The compressed-score projection; see projection.h. The maps are ops::linear_cpu (one Eigen
// GEMM each), checked against a float64 loop in tests/unit/test_selection.cc.
#include "attention/projection.h"

#include <cmath>
#include <random>

#include "core/error.h"
#include "ops/linear.h"

namespace esa::attention {

Projection Projection::identity(int64_t n_layers, int64_t in_dim) {
  ESA_CHECK(n_layers > 0 && in_dim > 0, "projection: bad geometry {} layers, input dimension {}", n_layers, in_dim);
  Projection p;
  p.in_dim = in_dim;
  LayerProjection l;
  l.dim = in_dim;
  l.wq.assign(size_t(in_dim * in_dim), 0.0f);
  for (int64_t i = 0; i < in_dim; ++i) l.wq[size_t(i * in_dim + i)] = 1.0f;
  l.wk = l.wq;
  l.bq.assign(size_t(in_dim), 0.0f);
  l.bk = l.bq;
  p.layers.assign(size_t(n_layers), l);
  return p;
}

Projection Projection::random(int64_t n_layers, int64_t in_dim, int64_t dim, uint64_t seed) {
  ESA_CHECK(n_layers > 0 && in_dim > 0 && dim > 0, "projection: bad geometry {} layers, {} -> {} dimensions", n_layers,
            in_dim, dim);
  Projection p;
  p.in_dim = in_dim;
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> w(0.0f, 1.0f / std::sqrt(float(in_dim))), b(0.0f, 0.1f);
  p.layers.resize(size_t(n_layers));
  for (auto& l : p.layers) {
    l.dim = dim;
    for (auto* v : {&l.wq, &l.wk}) {
      v->resize(size_t(dim * in_dim));
      for (auto& x : *v) x = w(gen);
    }
    for (auto* v : {&l.bq, &l.bk}) {
      v->resize(size_t(dim));
      for (auto& x : *v) x = b(gen);
    }
  }
  return p;
}

void Projection::validate() const {
  ESA_CHECK(in_dim > 0, "projection: input dimension {} must be positive", in_dim);
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    ESA_CHECK(l.dim > 0, "projection: layer {} has dimension {}", i, l.dim);
    const size_t w = size_t(l.dim * in_dim), b = size_t(l.dim);
    ESA_CHECK(l.wq.size() == w, "projection: layer {} wq has {} values, expected {} x {}", i, l.wq.size(), l.dim, in_dim);
    ESA_CHECK(l.wk.size() == w, "projection: layer {} wk has {} values, expected {} x {}", i, l.wk.size(), l.dim, in_dim);
    ESA_CHECK(l.bq.size() == b, "projection: layer {} bq has {} values, expected {}", i, l.bq.size(), l.dim);
    ESA_CHECK(l.bk.size() == b, "projection: layer {} bk has {} values, expected {}", i, l.bk.size(), l.dim);
  }
}

void Projection::project_queries(int64_t layer, const float* x, int64_t rows, std::vector<float>& y) const {
  const auto& l = layers.at(size_t(layer));
  y.resize(size_t(rows * l.dim));
  if (rows > 0) ops::linear_cpu(x, l.wq.data(), l.bq.data(), y.data(), rows, in_dim, l.dim);
}

void Projection::append_keys(int64_t layer, const float* x, int64_t rows, std::vector<float>& y) const {
  const auto& l = layers.at(size_t(layer));
  const size_t old = y.size();
  y.resize(old + size_t(rows * l.dim));
  if (rows > 0) ops::linear_cpu(x, l.wk.data(), l.bk.data(), y.data() + old, rows, in_dim, l.dim);
}

}  // namespace esa::attention
