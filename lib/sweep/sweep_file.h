// sweep.h5: one group per grid cell, /cells/<id>, written only when the cell is finished (the
// whole file is rewritten through a temporary and renamed, so a kill never leaves half a cell).
//   root attributes: provenance (format "esa-sweep"), config (the TOML text), name, axes (the
//                    varied keys, comma-separated), grid_cells (cells in the whole grid)
//   /cells/<id>      attributes: index, status ("ok" or "error"), error, seconds, model_sha256,
//                    projection (the proj.h5 it used, "" for none), params (the keys, comma-
//                    separated), and one string attribute per key with its value
//   /cells/<id>/cases  the eval table of the cell (tasks/eval.h write_cases), when status is ok
#pragma once

#include <string>
#include <vector>

#include "io/provenance.h"
#include "sweep/grid.h"
#include "tasks/eval.h"

namespace esa::sweep {

struct CellRecord {
  Cell cell;
  std::string status = "ok";  // ok | error
  std::string error;
  double seconds = 0;
  std::string model_sha256, projection;
  std::vector<tasks::CaseResult> cases;
};

struct SweepHeader {
  io::Provenance provenance;  // format is set to esa-sweep
  std::string config, name;
  std::vector<std::string> axes;
  int64_t grid_cells = 0;
  /// The files the cells read, a line each: "<role> <path> sha256 <hex>" (models, haystacks,
  /// calibration texts), so that a resumed sweep whose inputs changed is refused. Empty in files
  /// of older versions.
  std::string inputs;
};

/// Writes the whole file atomically (temporary + rename); `overwrite` as AtomicOutput's.
void write_sweep(const std::string& path, const SweepHeader& header, const std::vector<CellRecord>& cells,
                 bool overwrite);
/// Throws esa::Error naming the file when it is not a readable esa-sweep file.
std::vector<CellRecord> read_sweep(const std::string& path, SweepHeader* header = nullptr);

/// One cell record as bytes (an esa-sweep HDF5 file image holding only that cell) and back: how an
/// MPI worker sends a finished cell to the rank that writes the file.
std::string cell_to_bytes(const CellRecord& cell);
CellRecord cell_from_bytes(const std::string& bytes);

/// The union of several sweeps' cells by id: an ok record beats an error one; two ok records of
/// one cell must hold the same results (else esa::Error naming both parts by `names`). Sorted by
/// grid index, then id.
std::vector<CellRecord> merge_cells(const std::vector<std::vector<CellRecord>>& parts,
                                    const std::vector<std::string>& names = {});

}  // namespace esa::sweep
