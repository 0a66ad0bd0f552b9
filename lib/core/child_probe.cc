// See child_probe.h.
#include "core/child_probe.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

// Sanitizer runtimes (the test and fuzz builds) call this callback after printing a report; the
// child must then only exit with kSanitizerReport: no libFuzzer crash artifact, no abort, for a
// crash that the parent handles.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace esa {
namespace {

constexpr int kSanitizerReport = 86;

[[noreturn]] void run_child(const std::function<void()>& probe) {
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback([] { _exit(kSanitizerReport); });
  const int devnull = ::open("/dev/null", O_WRONLY);
  if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);
  try {
    probe();
  } catch (...) {  // an error the in-process run will meet and report
  }
  _exit(0);
}

}  // namespace

std::string ChildProbe::describe(double timeout_seconds) const {
  switch (end) {
    case End::crashed:
      if (exit_status != 0) return fmt::format("exit status {}", exit_status);
      if (signal == 0) return "a sanitizer report";
      if (const char* abbrev = sigabbrev_np(signal)) return fmt::format("SIG{}", abbrev);
      return fmt::format("signal {}", signal);
    case End::timed_out:
      return fmt::format("no end after {:g} s", timeout_seconds);
    case End::survived:
      return "survived";
    case End::not_run:
      return fmt::format("fork failed: {}", std::strerror(fork_errno));
  }
  return "?";
}

ChildProbe probe_in_child(const std::function<void()>& probe, double timeout_seconds) {
  std::fflush(nullptr);  // buffered output would be copied into the child
  ChildProbe result;
  const pid_t pid = ::fork();
  if (pid < 0) {
    result.fork_errno = errno;
    return result;
  }
  if (pid == 0) run_child(probe);
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  long pause_ns = 20000;  // the usual probe ends within milliseconds: poll fast, then back off
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return result;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_seconds) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      result.end = ChildProbe::End::timed_out;
      return result;
    }
    const timespec pause{0, pause_ns};
    ::nanosleep(&pause, nullptr);
    pause_ns = std::min(pause_ns * 2, 10000000L);
  }
  if (WIFSIGNALED(status)) {
    result.end = ChildProbe::End::crashed;
    result.signal = WTERMSIG(status);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    // The probe returns (exit 0) unless something ended the child: a sanitizer report
    // (kSanitizerReport), or a crash handler that exits instead of dying (libFuzzer's, say).
    result.end = ChildProbe::End::crashed;
    result.exit_status = WEXITSTATUS(status) == kSanitizerReport ? 0 : WEXITSTATUS(status);
  } else {
    result.end = ChildProbe::End::survived;
  }
  return result;
}

}  // namespace esa
