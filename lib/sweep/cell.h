// What one sweep cell runs: its settings (grid.h) turned into an eval (suite, grid, policy) and,
// for the esa policy with a calibration key, the recipe of the projection it needs. Unset keys
// take esa eval's / esa calibrate's defaults.
#pragma once

#include <string>

#include "attention/policy.h"
#include "sweep/grid.h"
#include "tasks/eval.h"
#include "tasks/suite.h"

namespace esa::sweep {

/// How a cell's projection is made: dump `calib_tokens` of `calib_text` in sequences of
/// `calib_seq_len` in the cell's score space and w, then fit d' = `dim` with `method`.
struct ProjectionRecipe {
  std::string calib_text;
  int64_t calib_tokens = 8192, calib_seq_len = 2048;
  attention::ScoreSpace score_space = attention::ScoreSpace::rotated;
  int64_t w = 2048;
  int64_t dim = 16;
  std::string method = "closed", loss = "mse";
  int64_t epochs = 3;
  /// Content keys for the caches: the dump depends on the model and the first five fields, the
  /// projection on all of them. `model_sha256` makes a key model-specific.
  std::string dump_key(const std::string& model_sha256) const;
  std::string projection_key(const std::string& model_sha256) const;
};

struct Defaults {
  std::string model, haystack, calib_text;
};

struct CellPlan {
  std::string model;
  tasks::SuiteOptions suite;
  tasks::EvalGrid grid;
  tasks::EvalPolicy policy;
  int64_t max_new = 0;
  bool needs_projection = false;  // esa with a calibration key: calibrate, then pass the file as --proj
  ProjectionRecipe recipe;
};

/// Throws esa::Error naming the cell on values its own checks reject (a budget PolicyOptions
/// refuses, a depth grid, ...).
CellPlan plan_cell(const Cell& cell, const Defaults& defaults);

}  // namespace esa::sweep
