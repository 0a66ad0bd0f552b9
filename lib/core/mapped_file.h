// Read-only memory map of a whole file (RAII). Model files are mapped, never read into memory,
// so that opening a 100 GB checkpoint costs nothing until tensors are touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace esa {

class MappedFile {
 public:
  /// Maps `path` read-only; throws esa::Error naming the file when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  std::string_view bytes() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int guard_ = -1;  // core/fault_guard.h: a SIGBUS in the mapping is a one-line error
};

}  // namespace esa
