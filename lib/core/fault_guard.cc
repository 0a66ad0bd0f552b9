// See fault_guard.h.
#include "core/fault_guard.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace esa {
namespace {

constexpr int kMappings = 256, kCleanups = 32;
constexpr size_t kPathBytes = 1024;

struct Mapping {
  std::atomic<uintptr_t> begin{0}, end{0};  // end == 0: free
  char path[kPathBytes] = {};
};
struct Cleanup {
  std::atomic<bool> used{false};
  char path[kPathBytes] = {};
};
Mapping mappings[kMappings];
Cleanup cleanups[kCleanups];
std::mutex registry_mutex;  // registration only; the handler reads the atomics
std::once_flag installed;

void write_all(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= size_t(w);
  }
}

extern "C" void on_bus_error(int sig, siginfo_t* info, void*) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (const Mapping& m : mappings) {
    const uintptr_t end = m.end.load(std::memory_order_acquire);
    if (end == 0 || at < m.begin.load(std::memory_order_relaxed) || at >= end) continue;
    for (const Cleanup& c : cleanups) {
      if (c.used.load(std::memory_order_acquire)) ::unlink(c.path);
    }
    write_all("esa: error: ");
    write_all(m.path);
    write_all(": the file shrank while mapped (truncated or replaced by another program while esa read it)\n");
    ::_exit(1);
  }
  // Not one of ours: the default action.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = on_bus_error;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, nullptr);
}

void copy_path(char (&dst)[kPathBytes], const std::string& path) {
  const size_t n = std::min(path.size(), kPathBytes - 1);
  std::memcpy(dst, path.data(), n);
  dst[n] = '\0';
}

}  // namespace

int guard_mapping(const void* base, size_t size, const std::string& path) {
  if (base == nullptr || size == 0) return -1;
  std::call_once(installed, install);
  const std::lock_guard<std::mutex> lock(registry_mutex);
  for (int i = 0; i < kMappings; ++i) {
    Mapping& m = mappings[i];
    if (m.end.load(std::memory_order_relaxed) != 0) continue;
    copy_path(m.path, path);
    m.begin.store(reinterpret_cast<uintptr_t>(base), std::memory_order_relaxed);
    m.end.store(reinterpret_cast<uintptr_t>(base) + size, std::memory_order_release);
    return i;
  }
  return -1;
}

void unguard_mapping(int slot) {
  if (slot < 0 || slot >= kMappings) return;
  const std::lock_guard<std::mutex> lock(registry_mutex);
  mappings[slot].end.store(0, std::memory_order_release);
}

int remove_on_fault(const std::string& path) {
  const std::lock_guard<std::mutex> lock(registry_mutex);
  for (int i = 0; i < kCleanups; ++i) {
    Cleanup& c = cleanups[i];
    if (c.used.load(std::memory_order_relaxed)) continue;
    copy_path(c.path, path);
    c.used.store(true, std::memory_order_release);
    return i;
  }
  return -1;
}

void keep_on_fault(int slot) {
  if (slot < 0 || slot >= kCleanups) return;
  const std::lock_guard<std::mutex> lock(registry_mutex);
  cleanups[slot].used.store(false, std::memory_order_release);
}

}  // namespace esa
