// Progress; see progress.h.
#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace esa {
namespace {

std::string clock_text(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

Progress::Progress(std::string what, int64_t total, std::string unit, bool enabled)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

Progress::~Progress() { finish(); }

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(int64_t n) {
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (since >= (tty_ ? 0.25 : 5.0)) {
    last_ = now;
    print(false);
  }
}

void Progress::note(const std::string& line) {
  if (!enabled_) return;
  fmt::print(stderr, "{}{}\n", tty_ ? "\r\033[K" : "", line);
  if (tty_ && !finished_) print(false);
  std::fflush(stderr);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  print(true);
}

void Progress::print(bool final) {
  if (!enabled_) return;
  const double t = seconds();
  const double rate = t > 0 ? double(done_) / t : 0.0;
  std::string line;
  if (final) {
    line = fmt::format("{}: {} {} in {:.1f} s ({:.{}f} {}/s)", what_, done_, unit_, t, rate, rate < 10 ? 2 : 0, unit_);
  } else {
    const double pct = total_ > 0 ? 100.0 * double(done_) / double(total_) : 0.0;
    const std::string eta = rate > 0 && total_ > done_ ? clock_text(double(total_ - done_) / rate) : "?";
    line = fmt::format("{}: {}/{} {} ({:.0f}%), {:.{}f} {}/s, ETA {}", what_, done_, total_, unit_, pct, rate,
                       rate < 10 ? 2 : 0, unit_, eta);
  }
  if (tty_) {
    fmt::print(stderr, "\r\033[K{}{}", line, final ? "\n" : "");
  } else {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

}  // namespace esa
