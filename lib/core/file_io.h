// Whole-file reads for the small files esa parses (JSON configs, indexes, tokenizers, text):
// one place that turns every failure into an esa::Error naming the file.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace esa {

/// Opens `path` for reading without blocking on what is not a file: a FIFO, a device (/dev/zero,
/// a terminal) or a socket is refused ("<path>: not a regular file (a FIFO)") before any read;
/// a folder too. Returns the descriptor (blocking reads from here on); the caller closes it.
int open_regular_file(const std::string& path);

/// The first `n` bytes of a regular file (fewer if it is shorter), for a format's magic.
std::string read_prefix(const std::string& path, size_t n);

/// The file's bytes. Throws esa::Error naming `path` when it cannot be opened or read, or when
/// it is larger than `max_bytes` (a guard against reading a wrong, huge path whole).
std::string read_file(const std::string& path, uint64_t max_bytes = std::numeric_limits<uint64_t>::max());

/// Standard input to its end, at most `max_bytes` ("standard input: more than N bytes" past it),
/// waiting in slices so that SIGINT/SIGTERM stop a read that no writer ever ends.
std::string read_stdin(uint64_t max_bytes);

/// read_file, or read_stdin for the path "-" (the command-line convention).
std::string read_file_or_stdin(const std::string& path, uint64_t max_bytes);

/// JSON nested deeper than this is refused: every reader of the value (and its messages) may
/// then recurse without a stack overflow, and no file esa reads needs more than a handful.
constexpr int kMaxJsonDepth = 64;

/// The one JSON parser of esa: "<what>: not valid JSON: <where>" when the text is not JSON,
/// "<what>: JSON nested deeper than 64 levels" past kMaxJsonDepth. `top_keys` (optional): the
/// keys of the top-level object in the order the text gives them, each once (objects are parsed
/// into sorted maps: linear-logarithmic in their size, where an insertion-ordered one is quadratic).
nlohmann::json parse_json(std::string_view text, const std::string& what, std::vector<std::string>* top_keys = nullptr);

/// A JSON value for a one-line message: a scalar's text (at most 40 characters, invalid UTF-8
/// replaced, newlines escaped as JSON escapes them) or "a JSON object of N entries" (never the
/// whole of a large or nested value).
std::string json_excerpt(const nlohmann::json& v);

/// The file parsed by parse_json, named by its path.
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = uint64_t(256) << 20,
                              std::vector<std::string>* top_keys = nullptr);

}  // namespace esa
