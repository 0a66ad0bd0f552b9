// Whole-file reads for the small files esa parses (JSON configs, indexes, tokenizers, text):
// one place that turns every failure into an esa::Error naming the file.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>

namespace esa {

/// The file's bytes. Throws esa::Error naming `path` when it cannot be opened or read, or when
/// it is larger than `max_bytes` (a guard against reading a wrong, huge path whole).
std::string read_file(const std::string& path, uint64_t max_bytes = std::numeric_limits<uint64_t>::max());

/// The file parsed as JSON; "<path>: not valid JSON: <where>" when it is not.
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = uint64_t(256) << 20);

}  // namespace esa
