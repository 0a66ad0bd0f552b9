// esa tokenize: text to token ids and pieces (or ids back to text with --decode).
#include <fmt/format.h>


#include "commands.h"
#include "prompt_input.h"
#include "core/error.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace esa::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  std::string file;
  std::string decode;
  std::string decode_file;
  bool ids_only = false;
  bool chat = false;
  bool parse_special = true;
  bool add_special = false;
};

// Makes a decoded piece visible on one line: newlines, tabs and other controls escaped.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (ch == '\n') out += "\\n";
    else if (ch == '\t') out += "\\t";
    else if (ch == '\r') out += "\\r";
    else if (ch < 0x20 || ch == 0x7f) out += fmt::format("\\x{:02x}", ch);
    else out += char(ch);
  }
  return out;
}

void run_tokenize(const TokenizeOptions& opt) {
  const int sources =
      int(!opt.text.empty()) + int(!opt.file.empty()) + int(!opt.decode.empty()) + int(!opt.decode_file.empty());
  ESA_CHECK(sources == 1, "esa tokenize: give exactly one of --text, --file, --decode or --prompt-ids");
  const auto tok = text::load_tokenizer(opt.model);

  if (!opt.decode.empty() || !opt.decode_file.empty()) {
    PromptSource ids_source;
    ids_source.ids_file = opt.decode_file;
    const std::vector<int32_t> ids = opt.decode.empty() ? prompt_ids(ids_source, tok->vocab_size())
                                                        : parse_token_ids(opt.decode, tok->vocab_size(), "--decode");
    fmt::print("{}\n", tok->decode(ids));
    return;
  }

  PromptSource text_source;
  text_source.text = opt.text;
  text_source.file = opt.file;
  std::string input = prompt_text(text_source);
  if (opt.chat) {
    input = text::chat_prompt(tok->spec(), input);
  }
  const std::vector<int32_t> ids = tok->encode(input, opt.add_special, opt.parse_special);
  if (opt.ids_only) {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += fmt::format("{}{}", i ? " " : "", ids[i]);
    fmt::print("{}\n", line);
  } else {
    for (int32_t id : ids) {
      const std::string piece = tok->decode(std::span<const int32_t>(&id, 1));
      fmt::print("{}\t{}\n", id, printable(piece));
    }
  }
  fmt::print(stderr, "{} tokens, {} bytes\n", ids.size(), input.size());
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  opt->model = default_model_path();
  CLI::App* cmd = app.add_subcommand("tokenize", "Text to token ids and pieces with a model's tokenizer (or back, --decode)");
  cmd->add_option("--model,-m", opt->model, "Model whose tokenizer to use: a .gguf file or a Hugging Face folder")
      ->capture_default_str();
  cmd->add_option("--text,-t", opt->text, "Text to tokenize")->capture_default_str();
  cmd->add_option("--file,-f,--prompt-file", opt->file, "Tokenize the content of this file instead of --text ('-': "
                  "standard input)")->capture_default_str();
  cmd->add_option("--decode", opt->decode, "Decode these token ids (space or comma separated) to text")
      ->capture_default_str();
  cmd->add_option("--prompt-ids", opt->decode_file, "Decode the token ids of this file to text ('-': standard input)");
  cmd->add_flag("--ids", opt->ids_only, "Print only the ids, space-separated on one line");
  cmd->add_flag("--chat", opt->chat, "Wrap the text as a user message in the model's chat template");
  cmd->add_flag("!--no-special", opt->parse_special,
                "Treat text like <|im_start|> as plain text, not as the special token");
  cmd->add_flag("--add-special", opt->add_special, "Add BOS/EOS as the model's tokenizer config asks");
  cmd->callback([opt] { run_tokenize(*opt); });
}

}  // namespace esa::cli
