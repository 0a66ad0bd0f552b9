// Ctrl-C and `kill` end a run cleanly instead of mid-write. The first SIGINT or SIGTERM only sets
// a flag; the long loops (every model chunk, every calibration step) call check_interrupt(),
// which throws Interrupted, so the stack unwinds: HDF5 files are closed, temporary outputs
// removed, and what eval and sweep already saved stays saved. A second signal kills at once.
#pragma once

#include <exception>
#include <string>

namespace esa {

/// Thrown by check_interrupt(). Deliberately not an esa::Error: code that records a failed
/// case or cell and goes on (esa sweep) must not swallow a request to stop.
class Interrupted : public std::exception {
 public:
  explicit Interrupted(int signal);
  const char* what() const noexcept override { return message_.c_str(); }
  int signal() const { return signal_; }

 private:
  int signal_;
  std::string message_;
};

/// Installs the SIGINT / SIGTERM handlers (main calls it once).
void install_interrupt_handlers();
/// Throws Interrupted when a SIGINT or SIGTERM arrived since the handlers were installed.
void check_interrupt();

}  // namespace esa
