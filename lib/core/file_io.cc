#include "core/file_io.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
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
