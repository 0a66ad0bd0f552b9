// Results are never half-written: an output is produced under a temporary name in the same
// folder and renamed onto its final name only when complete (rename is atomic on POSIX), after
// an fsync, so a crash, a kill or a full disk leaves either no file or the previous one.
#pragma once

#include <string>
#include <utility>
#include <vector>

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
  /// Where to write: "<path>.partial-<pid>" next to the final file (".<hash of the name>.partial-<pid>"
  /// when that would pass the folder's name limit).
  const std::string& temp_path() const { return temp_; }
  /// fsync the temporary file, rename it onto path(), fsync the folder. Throws on failure.
  void commit();

  /// Removes "<path>.partial-<pid>" files that killed runs left behind (their process no longer
  /// exists); returns how many. Errors are ignored: this is cleanup, not a result.
  static int remove_stale(const std::string& path);

 private:
  std::string path_, temp_;
  bool committed_ = false;
  int fault_slot_ = -1;  // core/fault_guard.h: removed if the process ends on a mapped-file fault
};

/// An input of a run, named by its flag: (flag, path), e.g. {"--model", "m.gguf"}.
using RunInput = std::pair<std::string, std::string>;

/// Held for a run's lifetime by a command that writes `path`:
///   - refuses an output that is one of the run's inputs (the same file, or a file in an input
///     folder), which --force would otherwise replace: "<path>: is the run's input --model";
///   - takes an advisory lock (flock on "<path>.lock", removed on release), so that a second run
///     writing the same output is refused while the first runs: "<path>: another esa run (pid N)
///     is writing it".
/// A killed run's lock file is taken over by the next run (the kernel drops a dead process's lock).
class OutputLock {
 public:
  OutputLock(const std::string& path, const std::vector<RunInput>& inputs);
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock();

 private:
  std::string lock_path_;
  int fd_ = -1;
  int fault_slot_ = -1;
};

/// The same input check alone (for outputs that are not locked).
void check_output_not_input(const std::string& path, const std::vector<RunInput>& inputs);

}  // namespace esa
