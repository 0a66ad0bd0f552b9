#include "core/file_io.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace esa {

std::string read_file(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  ESA_CHECK(!std::filesystem::is_directory(path, ec), "{}: is a folder, expected a file", path);
  std::ifstream in(path, std::ios::binary);
  ESA_CHECK(in.good(), "{}: cannot open: {}", path, std::strerror(errno));
  const auto size = std::filesystem::file_size(path, ec);
  ESA_CHECK(ec || size <= max_bytes, "{}: {} bytes, more than the {} this file may have", path, size, max_bytes);
  std::ostringstream ss;
  ss << in.rdbuf();
  ESA_CHECK(!in.bad(), "{}: read error", path);
  return ss.str();
}

nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes) {
  const std::string text = read_file(path, max_bytes);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    ESA_FAIL("{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace esa
