// AtomicOutput; see atomic_output.h.
#include "core/atomic_output.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/fault_guard.h"
#include "core/sha256.h"

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

// A sibling of `path` named "<name><suffix>", or ".<16 hex of the name's sha256><suffix>" when
// that would pass the longest name the folder takes (a legal 250-byte output name stays legal).
std::string sibling(const std::string& path, const std::string& suffix) {
  const std::filesystem::path p(path);
  const std::string name = p.filename().string();
  long limit = ::pathconf(folder_of(path).c_str(), _PC_NAME_MAX);
  if (limit <= 0) limit = 255;
  const std::string short_name =
      name.size() + suffix.size() <= size_t(limit) ? name : "." + sha256_hex(name).substr(0, 16);
  return (p.parent_path() / (short_name + suffix)).string();
}

// The output's folder exists and is writable, and the output is not a folder.
void check_output_folder(const std::string& path) {
  ESA_CHECK(!path.empty(), "empty output path");
  const std::string folder = folder_of(path);
  ESA_CHECK(std::filesystem::is_directory(folder), "{}: the folder {} does not exist", path, folder);
  ESA_CHECK(::access(folder.c_str(), W_OK) == 0, "{}: the folder {} is not writable", path, folder);
  ESA_CHECK(!std::filesystem::is_directory(path), "{}: is a folder, expected a file name", path);
}

}  // namespace

AtomicOutput::AtomicOutput(std::string path, bool overwrite) : path_(std::move(path)) {
  check_output_folder(path_);
  ESA_CHECK(overwrite || !std::filesystem::exists(path_), "{}: exists (pass --force to overwrite)", path_);
  // The result is renamed over the output: a device (/dev/full) or a pipe would be replaced by
  // a plain file, so only regular files (or new names) are outputs.
  ESA_CHECK(!std::filesystem::exists(path_) || std::filesystem::is_regular_file(path_),
            "{}: not a regular file (esa writes a temporary file and renames it onto the output)", path_);
  temp_ = sibling(path_, ".partial-" + std::to_string(::getpid()));
  fault_slot_ = remove_on_fault(temp_);
}

int AtomicOutput::remove_stale(const std::string& path) {
  const std::string prefix = std::filesystem::path(sibling(path, ".partial-")).filename().string();
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
  keep_on_fault(fault_slot_);
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
  keep_on_fault(fault_slot_);
  fault_slot_ = -1;
  fsync_path(folder_of(path_), true);  // best effort: the rename itself is durable on most filesystems
}

void check_output_not_input(const std::string& path, const std::vector<RunInput>& inputs) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return;  // a new file cannot be an input
  for (const auto& [flag, input] : inputs) {
    if (input.empty() || !std::filesystem::exists(input, ec)) continue;
    bool same = std::filesystem::equivalent(path, input, ec);
    if (!same && std::filesystem::is_directory(input, ec)) {
      // A file that a model folder's loader reads (shards, index, config, tokenizer); other files
      // of the folder (an earlier projection written there) are not inputs.
      const std::string ext = std::filesystem::path(path).extension().string();
      const bool read_by_loader = ext == ".safetensors" || ext == ".json" || ext == ".gguf" || ext == ".model";
      const std::filesystem::path parent = std::filesystem::path(path).parent_path();
      same = read_by_loader && std::filesystem::equivalent(parent.empty() ? "." : parent, input, ec);
    }
    ESA_CHECK(!same, "{}: is the run's input {} ({}); choose another output", path, flag, input);
  }
}

OutputLock::OutputLock(const std::string& path, const std::vector<RunInput>& inputs) {
  check_output_folder(path);
  check_output_not_input(path, inputs);
  lock_path_ = sibling(path, ".lock");
  // Lock, then check that the locked file is still the one at lock_path_: a run that finished
  // between our open and our flock has unlinked it, and a third run may hold a new one.
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    ESA_CHECK(fd >= 0, "{}: cannot create the lock file {} ({})", path, lock_path_, std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      char owner[32] = {};
      const ssize_t n = ::pread(fd, owner, sizeof(owner) - 1, 0);
      ::close(fd);
      ESA_CHECK(e != EWOULDBLOCK, "{}: another esa run{} is writing it (wait for it, or choose another output)", path,
                n > 0 ? fmt::format(" (pid {})", std::string(owner, size_t(n))) : std::string());
      ESA_FAIL("{}: cannot lock {} ({})", path, lock_path_, std::strerror(e));
    }
    struct stat held {}, named {};
    if (::fstat(fd, &held) == 0 && ::stat(lock_path_.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev) {
      fd_ = fd;
      fault_slot_ = remove_on_fault(lock_path_);
      const std::string pid = std::to_string(::getpid());
      if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
      return;
    }
    ::close(fd);
  }
  ESA_FAIL("{}: cannot lock {} (it keeps being replaced)", path, lock_path_);
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  keep_on_fault(fault_slot_);
  ::unlink(lock_path_.c_str());  // while still held: a waiting run then finds no file, or a new one
  ::close(fd_);
}

}  // namespace esa
