// See interrupt.h.
#include "core/interrupt.h"

#include <atomic>
#include <csignal>
#include <cstring>

namespace esa {
namespace {

std::atomic<int> pending_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler may only touch a lock-free atomic");

extern "C" void on_stop_signal(int sig) {
  if (pending_signal.exchange(sig) != 0) {
    // Asked twice: the user wants out now. Default action, re-raised (async-signal-safe calls only).
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

Interrupted::Interrupted(int signal)
    : signal_(signal), message_(std::string("interrupted by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM")) {}

void install_interrupt_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // reads and writes in progress finish; the loops notice the flag
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void check_interrupt() {
  if (const int sig = pending_signal.load(std::memory_order_relaxed); sig != 0) throw Interrupted(sig);
}

}  // namespace esa
