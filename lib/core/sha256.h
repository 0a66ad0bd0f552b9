// SHA-256 (FIPS 180-4), used to record the exact model and text behind every result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace esa {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  /// Lower-case hex digest; the object must not be updated afterwards.
  std::string hex_digest();

 private:
  void compress(const uint8_t* block);
  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

/// Hex SHA-256 of a byte string.
std::string sha256_hex(std::string_view bytes);
/// Hex SHA-256 of a file's content (streamed; throws esa::Error naming the file on failure).
std::string sha256_file(const std::string& path);

}  // namespace esa
