#include "core/file_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/interrupt.h"

namespace esa {

int open_regular_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    ESA_CHECK(e != ENOENT, "{}: no such file", path);
    ESA_FAIL("{}: cannot open: {}", path, std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const mode_t mode = st.st_mode;
    ::close(fd);
    ESA_CHECK(!S_ISDIR(mode), "{}: is a folder, expected a file", path);
    const char* kind = S_ISDIR(mode) ? "a folder" : S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) ? "a character device"
                       : S_ISBLK(mode) ? "a block device" : S_ISSOCK(mode) ? "a socket" : "not a file";
    ESA_FAIL("{}: not a regular file ({}), expected a file", path, kind);
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

namespace {
// Reads up to `limit` bytes (stops at the end of the file); throws on a read error.
std::string read_up_to(int fd, const std::string& path, uint64_t limit) {
  std::string out;
  char buf[1 << 16];
  while (out.size() < limit) {
    const size_t want = size_t(std::min<uint64_t>(sizeof(buf), limit - out.size()));
    const ssize_t n = ::read(fd, buf, want);
    if (n < 0 && errno == EINTR) {
      check_interrupt();
      continue;
    }
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      ESA_FAIL("{}: read error: {}", path, std::strerror(e));
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}
}  // namespace

std::string read_prefix(const std::string& path, size_t n) {
  const int fd = open_regular_file(path);
  std::string out = read_up_to(fd, path, n);
  ::close(fd);
  return out;
}

std::string read_file(const std::string& path, uint64_t max_bytes) {
  const int fd = open_regular_file(path);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && uint64_t(st.st_size) > max_bytes) {
    ::close(fd);
    ESA_FAIL("{}: {} bytes, more than the {} this file may have", path, uint64_t(st.st_size), max_bytes);
  }
  // One byte past the cap tells a file that grew past it since the fstat.
  const uint64_t limit = max_bytes == std::numeric_limits<uint64_t>::max() ? max_bytes : max_bytes + 1;
  std::string out = read_up_to(fd, path, limit);
  ::close(fd);
  ESA_CHECK(out.size() <= max_bytes, "{}: more than the {} bytes this file may have", path, max_bytes);
  return out;
}

std::string read_stdin(uint64_t max_bytes) {
  std::string out;
  char buffer[1 << 16];
  while (true) {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int ready = ::poll(&p, 1, 200);  // the signal handler restarts reads: look at the flag between waits
    check_interrupt();
    if (ready < 0 && errno == EINTR) continue;
    ESA_CHECK(ready >= 0, "standard input: {}", std::strerror(errno));
    if (ready == 0) continue;
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    ESA_CHECK(n >= 0, "standard input: {}", std::strerror(errno));
    if (n == 0) return out;
    ESA_CHECK(out.size() + size_t(n) <= max_bytes, "standard input: more than the {} bytes it may have here", max_bytes);
    out.append(buffer, size_t(n));
  }
}

std::string read_file_or_stdin(const std::string& path, uint64_t max_bytes) {
  return path == "-" ? read_stdin(max_bytes) : read_file(path, max_bytes);
}

namespace {
struct TooDeep {};  // thrown out of the parser's callback: nlohmann stops at the first throw
}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& what, std::vector<std::string>* top_keys) {
  std::set<std::string> seen;
  const nlohmann::json::parser_callback_t limit = [&](int depth, nlohmann::json::parse_event_t event,
                                                      nlohmann::json& parsed) {
    if (depth > kMaxJsonDepth) throw TooDeep{};
    if (top_keys != nullptr && depth == 1 && event == nlohmann::json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (seen.insert(key).second) top_keys->push_back(key);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), limit);
  } catch (const TooDeep&) {
    ESA_FAIL("{}: JSON nested deeper than {} levels (not a file esa reads, or corrupt)", what, kMaxJsonDepth);
  } catch (const nlohmann::json::exception& e) {
    ESA_FAIL("{}: not valid JSON: {}", what, e.what());
  }
}

std::string json_excerpt(const nlohmann::json& v) {
  if (v.is_object() || v.is_array()) {
    // A short flat container ([0, 12]) is shown whole; anything larger or nested by its size.
    bool flat = v.size() <= 8;
    for (const auto& e : v) flat = flat && !e.is_object() && !e.is_array();
    if (!flat) return fmt::format("a JSON {} of {} {}", v.type_name(), v.size(), v.size() == 1 ? "entry" : "entries");
  }
  std::string text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes, std::vector<std::string>* top_keys) {
  return parse_json(read_file(path, max_bytes), path, top_keys);
}

}  // namespace esa
