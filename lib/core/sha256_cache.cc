// The file-hash cache of sha256_cache.h: a text store read whole, rewritten through a temporary
// file and rename. Every failure of the store falls back to hashing.
#include "core/sha256_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

#include "core/sha256.h"

namespace esa {
namespace {
namespace fs = std::filesystem;

constexpr int64_t kSettleNs = 2'000'000'000;  // files modified more recently are not recorded
constexpr size_t kMaxEntries = 1000;          // the oldest entries are dropped beyond this
constexpr std::uintmax_t kMaxStoreBytes = 4 << 20;  // a larger store is not ours: ignored

struct Stamp {
  int64_t size = -1, mtime_ns = 0;
  bool operator==(const Stamp&) const = default;
};

// Size and mtime of a regular file; size -1 when it cannot be stat'ed or is not regular.
Stamp stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  return {int64_t(st.st_size), int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + int64_t(st.st_mtim.tv_nsec)};
}

struct Entry {
  Stamp stamp;
  std::string sha, path;
};

bool parse_int(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// One line "<size> <mtime_ns> <sha256> <path>" (without its '\n'); false when it does not parse.
bool parse_line(std::string_view line, Entry& e) {
  const size_t a = line.find(' ');
  if (a == std::string_view::npos) return false;
  const size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  const size_t c = line.find(' ', b + 1);
  if (c == std::string_view::npos) return false;
  if (!parse_int(line.substr(0, a), e.stamp.size) || e.stamp.size < 0) return false;
  if (!parse_int(line.substr(a + 1, b - a - 1), e.stamp.mtime_ns)) return false;
  const std::string_view sha = line.substr(b + 1, c - b - 1);
  const std::string_view path = line.substr(c + 1);
  if (!is_sha256_hex(sha) || path.empty() || path.front() != '/' || path.find('\0') != std::string_view::npos) {
    return false;
  }
  e.sha = std::string(sha);
  e.path = std::string(path);
  return true;
}

// Every well-formed, complete ('\n'-ended) line of the store; nothing when it cannot be read.
std::vector<Entry> read_store(const std::string& store) {
  std::vector<Entry> entries;
  std::error_code ec;
  const std::uintmax_t bytes = fs::file_size(store, ec);
  if (ec || bytes > kMaxStoreBytes) return entries;
  std::ifstream in(store, std::ios::binary);
  if (!in) return entries;
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) break;  // a cut-off last line is not trusted
    Entry e;
    if (parse_line(std::string_view(text).substr(pos, nl - pos), e)) entries.push_back(std::move(e));
    pos = nl + 1;
  }
  return entries;
}

// Writes the store through "<store>.tmp-XXXXXX" + rename; any failure leaves the old store.
void write_store(const std::string& store, const std::vector<Entry>& entries) {
  std::error_code ec;
  const fs::path parent = fs::path(store).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  std::string text;
  for (const Entry& e : entries) {
    text += std::to_string(e.stamp.size) + " " + std::to_string(e.stamp.mtime_ns) + " " + e.sha + " " + e.path + "\n";
  }
  std::string temp = store + ".tmp-XXXXXX";
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) return;
  size_t done = 0;
  bool ok = true;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ok = false;
      break;
    }
    done += size_t(n);
  }
  ::fchmod(fd, 0644);
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(temp.c_str(), store.c_str()) != 0) ::unlink(temp.c_str());
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string sha256_cache_path() {
  if (const char* env = std::getenv("ESA_HASH_CACHE"); env != nullptr && *env != '\0') {
    const std::string v = env;
    if (v == "0" || v == "off") return "";
    return v;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/esa/sha256";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return std::string(home) + "/.cache/esa/sha256";
  }
  return "";
}

std::string sha256_file_cached(const std::string& path, const std::string& cache_path) {
  if (cache_path.empty()) return sha256_file(path);
  std::error_code ec;
  fs::path key = fs::canonical(path, ec);
  if (ec) return sha256_file(path);  // missing or unreadable: sha256_file's own error
  const std::string key_str = key.string();
  const Stamp before = stamp_of(key_str);
  if (before.size < 0 || key_str.find('\n') != std::string::npos) return sha256_file(path);

  std::vector<Entry> entries = read_store(cache_path);
  for (const Entry& e : entries) {
    if (e.path == key_str && e.stamp == before) return e.sha;
  }
  const std::string sha = sha256_file(path);
  // Recorded only when the file did not change while it was read and has settled.
  const int64_t age = now_ns() - before.mtime_ns;
  if (stamp_of(key_str) == before && age >= kSettleNs) {
    std::erase_if(entries, [&](const Entry& e) { return e.path == key_str; });
    entries.push_back({before, sha, key_str});
    if (entries.size() > kMaxEntries) entries.erase(entries.begin(), entries.end() - kMaxEntries);
    write_store(cache_path, entries);
  }
  return sha;
}

std::string sha256_file_cached(const std::string& path) { return sha256_file_cached(path, sha256_cache_path()); }

}  // namespace esa
