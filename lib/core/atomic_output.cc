// AtomicOutput; see atomic_output.h.
#include "core/atomic_output.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace esa {
namespace {

std::string folder_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// fsync a file or folder by path; errors are returned, not thrown.
int fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

}  // namespace

AtomicOutput::AtomicOutput(std::string path, bool overwrite) : path_(std::move(path)) {
  ESA_CHECK(!path_.empty(), "empty output path");
  const std::string folder = folder_of(path_);
  ESA_CHECK(std::filesystem::is_directory(folder), "{}: the folder {} does not exist", path_, folder);
  ESA_CHECK(::access(folder.c_str(), W_OK) == 0, "{}: the folder {} is not writable", path_, folder);
  ESA_CHECK(!std::filesystem::is_directory(path_), "{}: is a folder, expected a file name", path_);
  ESA_CHECK(overwrite || !std::filesystem::exists(path_), "{}: exists (pass --force to overwrite)", path_);
  // The result is renamed over the output: a device (/dev/full) or a pipe would be replaced by
  // a plain file, so only regular files (or new names) are outputs.
  ESA_CHECK(!std::filesystem::exists(path_) || std::filesystem::is_regular_file(path_),
            "{}: not a regular file (esa writes a temporary file and renames it onto the output)", path_);
  temp_ = path_ + ".partial-" + std::to_string(::getpid());
}

int AtomicOutput::remove_stale(const std::string& path) {
  const std::string prefix = std::filesystem::path(path).filename().string() + ".partial-";
  std::error_code ec;
  int removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder_of(path), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
    if (pid <= 0 || (::kill(pid_t(pid), 0) == -1 && errno == ESRCH)) {
      removed += std::filesystem::remove(entry.path(), ec) ? 1 : 0;
    }
  }
  return removed;
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
}

void AtomicOutput::commit() {
  ESA_CHECK(!committed_, "{}: committed twice", path_);
  if (const int e = fsync_path(temp_, false); e != 0) {
    ESA_FAIL("{}: cannot sync the finished output ({})", path_, std::strerror(e));
  }
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    ESA_FAIL("{}: cannot rename {} onto it ({})", path_, temp_, std::strerror(errno));
  }
  committed_ = true;
  fsync_path(folder_of(path_), true);  // best effort: the rename itself is durable on most filesystems
}

}  // namespace esa
