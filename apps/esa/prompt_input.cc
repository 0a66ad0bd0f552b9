// Prompt input for generate and tokenize; see prompt_input.h.
#include "prompt_input.h"

#include <charconv>

#include "core/error.h"
#include "core/file_io.h"
#include "text/byte_mapping.h"

namespace esa::cli {

void add_prompt_flags(CLI::App* cmd, PromptSource& source) {
  cmd->add_option("--prompt,-p", source.text, "Prompt text (at most ~128 KiB as one argument: longer, --prompt-file)");
  cmd->add_option("--prompt-file", source.file, "Read the prompt text from this file ('-': standard input)");
  cmd->add_option("--prompt-ids", source.ids_file,
                  "Feed these token ids as the prompt, as they are (a file of integers separated by white space or "
                  "commas; '-': standard input)");
}

void check_one_prompt_source(const PromptSource& s, const char* command) {
  const int given = int(!s.text.empty()) + int(!s.file.empty()) + int(!s.ids_file.empty());
  ESA_CHECK(given == 1, "esa {}: give exactly one of --prompt, --prompt-file or --prompt-ids{}", command,
            given == 0 ? " (a non-empty one)" : fmt::format(", not {}", given));
}

std::string prompt_text(const PromptSource& s) {
  const std::string where = s.file.empty() ? "--prompt" : s.file == "-" ? "standard input" : s.file;
  std::string text = s.file.empty() ? s.text : read_file_or_stdin(s.file, kMaxPromptBytes);
  ESA_CHECK(!text.empty(), "{}: the prompt is empty", where);
  text::check_utf8(text, where);
  return text;
}

std::vector<int32_t> prompt_ids(const PromptSource& s, int64_t vocab) {
  const std::string where = s.ids_file == "-" ? "standard input" : s.ids_file;
  return parse_token_ids(read_file_or_stdin(s.ids_file, kMaxPromptBytes), vocab, where);
}

std::vector<int32_t> parse_token_ids(const std::string& text, int64_t vocab, const std::string& what) {
  std::vector<int32_t> ids;
  auto separator = [](char c) { return c == ',' || c == '[' || c == ']' || std::isspace(static_cast<unsigned char>(c)); };
  size_t at = 0;
  while (true) {
    while (at < text.size() && separator(text[at])) ++at;
    if (at == text.size()) break;
    size_t end = at;
    while (end < text.size() && !separator(text[end])) ++end;
    const std::string_view item(text.data() + at, end - at);
    int64_t v = 0;
    const auto [stop, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    ESA_CHECK(ec == std::errc() && stop == item.data() + item.size(), "{}: item {} '{}' is not an integer token id",
              what, ids.size() + 1, std::string(item));
    ESA_CHECK(v >= 0 && v < vocab, "{}: token id {} (item {}) is outside the vocabulary [0, {})", what, v,
              ids.size() + 1, vocab);
    ids.push_back(int32_t(v));
    at = end;
  }
  ESA_CHECK(!ids.empty(), "{}: no token ids", what);
  return ids;
}

}  // namespace esa::cli
