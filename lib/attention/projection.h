// The compressed-score projection of ESA (PAPER.md section 3): per layer, q' = Wq q~ + bq and
// k' = Wk k + bk, where q~ is the GQA-folded query and k the key, each concatenated over the KV
// heads (in_dim = n_kv_heads * head_dim), so that q'_c . k'_m approximates f(m; c).
// `esa calibrate` fits it and writes proj.h5; identity() reproduces the exact score (the
// oracle) and random() is for tests and benchmarks.
#pragma once

#include <cstdint>
#include <vector>

namespace esa::attention {

/// One layer's maps. Memory order: wq and wk are [dim, in_dim] row-major (PyTorch Linear
/// weights), bq and bk are [dim].
struct LayerProjection {
  int64_t dim = 0;
  std::vector<float> wq, bq, wk, bk;
};

struct Projection {
  int64_t in_dim = 0;
  std::vector<LayerProjection> layers;

  /// dim = in_dim, W = I, b = 0: q' . k' equals the exact score.
  static Projection identity(int64_t n_layers, int64_t in_dim);
  /// Gaussian weights with variance 1 / in_dim and small Gaussian biases, reproducible from `seed`.
  static Projection random(int64_t n_layers, int64_t in_dim, int64_t dim, uint64_t seed);

  /// Throws esa::Error when the arrays do not match their dims (names the layer and field).
  void validate() const;
  /// x [rows, in_dim] -> y [rows, dim] for one layer (y is resized).
  void project_queries(int64_t layer, const float* x, int64_t rows, std::vector<float>& y) const;
  /// Appends the compressed keys of x [rows, in_dim] to y (rows * dim floats).
  void append_keys(int64_t layer, const float* x, int64_t rows, std::vector<float>& y) const;
};

}  // namespace esa::attention
