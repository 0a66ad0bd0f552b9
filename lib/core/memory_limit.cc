// See memory_limit.h.
#include "core/memory_limit.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>

#include "core/error.h"

namespace esa {
namespace {

// What this process may use at most: physical memory, or the cgroup (v2) limit when lower
// (containers and batch schedulers set it; going over it is an OOM kill too).
uint64_t usable_memory() {
  uint64_t bytes = uint64_t(::sysconf(_SC_PHYS_PAGES)) * uint64_t(::sysconf(_SC_PAGESIZE));
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  std::string text;
  if (cgroup >> text && text != "max") {
    uint64_t limit = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec == std::errc() && end == text.data() + text.size() && limit > 0) bytes = std::min(bytes, limit);
  }
  return bytes;
}

std::atomic<uint64_t> limit_bytes{0};  // 0: not set, the default applies

// "1.5 GiB", "200 MiB": a size for messages.
std::string format_bytes(uint64_t bytes) {
  const double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.1f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.0f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.0f} KiB", std::ceil(b / 1024.0));
}

}  // namespace

uint64_t max_memory() {
  const uint64_t set = limit_bytes.load();
  return set != 0 ? set : uint64_t(0.9 * double(usable_memory()));
}

void set_max_memory(uint64_t bytes) { limit_bytes.store(bytes); }

uint64_t parse_memory_size(const std::string& text) {
  const char* p = text.data();
  const char* end = p + text.size();
  double value = 0;
  const auto [num_end, ec] = std::from_chars(p, end, value);
  ESA_CHECK(ec == std::errc() && std::isfinite(value) && value > 0,
            "bad --max-memory '{}': expected a size like 8G, 512M or 75%", text);
  std::string unit(num_end, end);
  for (char& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  double bytes = 0;
  if (unit == "%") {
    ESA_CHECK(value <= 100, "bad --max-memory '{}': more than 100% of memory", text);
    bytes = value / 100.0 * double(usable_memory());
  } else {
    double scale = 0;
    if (unit.empty() || unit == "B") scale = 1;
    if (unit == "K" || unit == "KB" || unit == "KIB") scale = 1024.0;
    if (unit == "M" || unit == "MB" || unit == "MIB") scale = 1024.0 * 1024;
    if (unit == "G" || unit == "GB" || unit == "GIB") scale = 1024.0 * 1024 * 1024;
    if (unit == "T" || unit == "TB" || unit == "TIB") scale = 1024.0 * 1024 * 1024 * 1024;
    ESA_CHECK(scale > 0, "bad --max-memory '{}': unknown unit '{}' (use K, M, G, T or %)", text, std::string(num_end, end));
    bytes = value * scale;
  }
  ESA_CHECK(bytes >= 1 && bytes < 1.8e19, "bad --max-memory '{}': out of range", text);
  return uint64_t(bytes);
}

uint64_t resident_memory() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * uint64_t(::sysconf(_SC_PAGESIZE));
}


void check_memory(const std::string& what, uint64_t units, uint64_t bytes_per_unit, const std::string& unit) {
  const uint64_t limit = max_memory(), resident = resident_memory();
  const uint64_t free = limit > resident ? limit - resident : 0;
  const bool overflow = bytes_per_unit != 0 && units > std::numeric_limits<uint64_t>::max() / bytes_per_unit;
  const uint64_t need = overflow ? std::numeric_limits<uint64_t>::max() : units * bytes_per_unit;
  if (need <= free) return;
  const std::string needs = overflow ? std::string("more than 16 EiB") : format_bytes(need);
  const std::string state =
      fmt::format("{} is in use and --max-memory is {}", format_bytes(resident), format_bytes(limit));
  if (unit.empty()) ESA_FAIL("{} need {}, {}: raise --max-memory or use less", what, needs, state);
  const uint64_t fit = bytes_per_unit == 0 ? units : free / bytes_per_unit;
  ESA_FAIL("{}: {} {} need {}, {}{}", what, units, unit, needs, state,
           fit >= 1 ? fmt::format(": at most {} {} fit", fit, unit) : std::string(": raise --max-memory"));
}

}  // namespace esa
