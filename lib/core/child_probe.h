// Runs code that may crash (a third-party parser on untrusted bytes) in a forked child first, so
// that a crash costs the child, not the run: the caller turns the outcome into a one-line error.
// The child is a copy of this process that runs `probe`, then leaves with _exit (no atexit
// handlers, no output flushed twice); whatever the probe learned is not passed back — the caller
// repeats the real work in-process once the probe survived.
#pragma once

#include <functional>
#include <string>

namespace esa {

struct ChildProbe {
  enum class End {
    survived,   // the probe returned (or threw: the in-process run reports that error itself)
    crashed,    // killed by a signal (`signal`), a sanitizer report, or any other non-zero exit (`exit_status`)
    timed_out,  // still running after the timeout: killed
    not_run,    // fork failed (no process to spare): the caller decides whether to go on unchecked
  };
  End end = End::not_run;
  int signal = 0;
  int exit_status = 0;  // crashed by exiting: the status (0 for a sanitizer report)
  int fork_errno = 0;   // not_run: why fork failed

  /// "SIGSEGV", "a sanitizer report", "no end after 60 s", "fork failed: ..." for error messages.
  std::string describe(double timeout_seconds) const;
};

/// Forks, runs `probe` in the child with its stderr sent to /dev/null, and waits at most
/// `timeout_seconds`. Use only for probes that touch no threads, locks or devices of the parent
/// (the child has one thread); fork copies no memory up front, so a large parent is cheap.
ChildProbe probe_in_child(const std::function<void()>& probe, double timeout_seconds);

}  // namespace esa
