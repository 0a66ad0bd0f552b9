// proj.h5, the file `esa calibrate` writes and the esa policy reads (ARCHITECTURE.md, Files):
//   /layer_NN/Wq [d'_l, in_dim], /layer_NN/bq [d'_l], /layer_NN/Wk [d'_l, in_dim], /layer_NN/bk [d'_l]
//   (NN = two or more digits, one group per model layer; float32, or any float type h5py writes)
//   root attributes: format = "esa-proj", format_version, in_dim, n_layers, dims [n_layers],
//   score_space ("rotated" | "plain") and w (the long-branch query position the queries were
//   rotated to), method, plus the provenance attributes (io/provenance.h) and the calibration's
//   settings and held-out metrics (lib/calib/calibrate.h).
// A file written by other tools (h5py) needs only the layer datasets; score_space and w, when
// present, are checked against the run.
#pragma once

#include <string>

#include "attention/policy.h"
#include "attention/projection.h"
#include "io/hdf5.h"
#include "model/config.h"

namespace esa::attention {

/// "/layer_03" for layer 3.
std::string layer_group(int64_t layer);

/// Writes projection.layers[i] as the group of model layer layer_ids[i], and the attributes
/// in_dim, n_layers (the model's), layers, dims, score_space and w.
void write_projection(io::H5File& file, const Projection& projection, const std::vector<int64_t>& layer_ids,
                      int64_t n_layers, ScoreSpace score_space, int64_t w);

/// Reads proj.h5 for a model and the policy options that will use it. One-line errors name the
/// file and the mismatch: another model's geometry (in_dim, layer count), a missing layer or
/// dataset, shapes that disagree, a score space or w other than the run's, NaN or Inf weights.
Projection read_projection(const std::string& path, const ModelConfig& config, const PolicyOptions& options);

}  // namespace esa::attention
