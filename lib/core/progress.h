// Progress of long work on stderr: done/total, rate and ETA. On a terminal one line is
// redrawn; otherwise (CI logs, files) a line is printed at most every few seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace esa {

class Progress {
 public:
  /// `what` prefixes the line ("dump"), `unit` names the counted things ("tokens").
  Progress(std::string what, int64_t total, std::string unit, bool enabled = true);
  /// Adds n done; redraws when due.
  void advance(int64_t n);
  /// Replaces the prefix (to show "eval 3/40 cases").
  void set_what(std::string what) { what_ = std::move(what); }
  /// Prints a line of its own (a finished case), keeping the progress line intact on a terminal.
  void note(const std::string& line);
  /// The final line (total time, mean rate); called by the destructor if not before.
  void finish();
  ~Progress();
  double seconds() const;

 private:
  void print(bool final);
  std::string what_, unit_;
  int64_t total_ = 0, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace esa
