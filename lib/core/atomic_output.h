// Results are never half-written: an output is produced under a temporary name in the same
// folder and renamed onto its final name only when complete (rename is atomic on POSIX), after
// an fsync, so a crash, a kill or a full disk leaves either no file or the previous one.
#pragma once

#include <string>

namespace esa {

class AtomicOutput {
 public:
  /// Checks that `path` can be written: its folder exists and is writable, and it does not
  /// exist unless `overwrite` ("<path>: exists (pass --force to overwrite)").
  AtomicOutput(std::string path, bool overwrite);
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  /// Removes the temporary file unless commit() ran.
  ~AtomicOutput();

  const std::string& path() const { return path_; }
  /// Where to write: "<path>.partial-<pid>" next to the final file.
  const std::string& temp_path() const { return temp_; }
  /// fsync the temporary file, rename it onto path(), fsync the folder. Throws on failure.
  void commit();

  /// Removes "<path>.partial-<pid>" files that killed runs left behind (their process no longer
  /// exists); returns how many. Errors are ignored: this is cleanup, not a result.
  static int remove_stale(const std::string& path);

 private:
  std::string path_, temp_;
  bool committed_ = false;
};

}  // namespace esa
