// `esa calibrate`: qk.h5 (qk_dump.h) -> proj.h5 (attention/projection_file.h). Per layer: split
// the sequences into training and held-out ones, fit (fit.h: closed, adam or pca), evaluate on the
// held-out ones (heldout.h). Layers are fitted in parallel (OpenMP, one layer per thread); only
// the layers being fitted are in memory.
//
// proj.h5 additionally holds, per layer group, attributes method, dim, rel_err, recall_at_16,
// recall_at_64, recall_at_256, recall_at_25pct (and adam's train_loss_start / train_loss_end),
// the same as columns under /metrics (layer, dim, rel_err, recall_at_..., train_loss_...), and
// root attributes: method, the fit settings, qk (source file), text, text_sha256 and the
// provenance copied from qk.h5 (model, model_sha256).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "calib/fit.h"
#include "calib/heldout.h"

namespace esa::calib {

enum class Method { closed, adam, pca };
const char* method_name(Method m);
Method parse_method(const std::string& name);

struct CalibrateOptions {
  std::string qk_path;
  std::string output;
  bool force = false;
  Method method = Method::closed;
  int64_t dim = 32;          // d' for every layer; 0: chosen per layer by `energy`
  double energy = 0;         // with dim = 0: smallest d' holding this fraction of the spectrum
  double holdout = 0.2;      // fraction of the sequences held out (at least one)
  int64_t skip = 64;         // sink tokens per sequence that are never candidates (= --init)
  double ridge = 1e-9;       // closed: relative eigenvalue floor of the inverse square roots
  AdamOptions adam;
  HeldoutOptions eval;
  uint64_t seed = 0;
  bool progress = true;
};

struct LayerReport {
  int64_t layer = 0, dim = 0;
  HeldoutMetrics metrics;
  double loss_start = 0, loss_end = 0;  // adam only
  int64_t best_epoch = 0;
};

struct CalibrateReport {
  std::vector<LayerReport> layers;
  std::vector<std::string> recall_names;  // column names: recall_at_16, ..., recall_at_25pct
  int64_t train_tokens = 0, heldout_tokens = 0;
  double seconds = 0, read_seconds = 0;
};

CalibrateReport calibrate(const CalibrateOptions& options);

}  // namespace esa::calib
