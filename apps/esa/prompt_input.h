// Where generate's and tokenize's input comes from: text on the command line, a file ("-":
// standard input), or a file of token ids. A single command-line argument is capped by the kernel
// at 128 KiB (about 30K tokens), so a long-context prompt needs a file or a pipe.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace esa::cli {

/// The most bytes a prompt file or standard input may have (a 1M-token prompt is ~5 MB):
/// reading /dev/urandom by mistake stops here, with one line, not when memory runs out.
constexpr uint64_t kMaxPromptBytes = uint64_t(256) << 20;

struct PromptSource {
  std::string text;      // --prompt
  std::string file;      // --prompt-file ("-": standard input)
  std::string ids_file;  // --prompt-ids: token ids, separated by white space or commas ("[1, 2]" too)
  bool has_ids() const { return !ids_file.empty(); }
};

/// --prompt/-p, --prompt-file and --prompt-ids on `cmd`.
void add_prompt_flags(CLI::App* cmd, PromptSource& source);

/// Throws unless exactly one of the three is given (`command` names the command in the message).
void check_one_prompt_source(const PromptSource& source, const char* command);

/// The prompt's text (--prompt or the file's content), checked to be UTF-8 and not empty.
std::string prompt_text(const PromptSource& source);

/// The ids of --prompt-ids, each in [0, vocab).
std::vector<int32_t> prompt_ids(const PromptSource& source, int64_t vocab);

/// Token ids from text: integers separated by white space, commas or the brackets of a JSON
/// array. Throws "<what>: ..." naming the item that is not an id in [0, vocab), or an empty list.
std::vector<int32_t> parse_token_ids(const std::string& text, int64_t vocab, const std::string& what);

}  // namespace esa::cli
