// The attributes every esa result file carries at its root, so that any number in it can be
// traced to the code, model, inputs and command that produced it (ARCHITECTURE.md, Files).
#pragma once

#include <cstdint>
#include <string>

#include "io/hdf5.h"

namespace esa::io {

struct Provenance {
  std::string format;        // "esa-qk", "esa-proj", ...
  int64_t format_version = 1;
  std::string model;         // path as given
  std::string model_sha256;
  uint64_t seed = 0;
  std::string device = "cpu";  // where the model ran: device_description() (core/device.h)
};

/// Writes format, format_version, esa_version, git_revision, command_line, created (UTC),
/// model, model_sha256, seed and device as attributes of "/".
void write_provenance(H5File& file, const Provenance& p);

/// Checks that `file` is an esa file of `format` with a version this build reads; throws
/// "<path>: not an esa <format> file (format attribute is '...')" otherwise.
void check_format(const H5File& file, const std::string& format, int64_t max_version = 1);

}  // namespace esa::io
