// Chat templates written out in C++ (see chat_template.h). References: SmolLM2's GGUF
// tokenizer.chat_template (ChatML), Meta-Llama-3-8B-Instruct's and Mistral-7B-Instruct's
// tokenizer_config.json chat_template; ChatML is checked against transformers'
// apply_chat_template in tests/fixtures/tokenizer/smollm2.json.
#include "text/chat_template.h"

#include "core/error.h"
#include "text/tokenizer.h"

namespace esa::text {

const char* const kSmolLmDefaultSystem =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string render_chatml(std::span<const ChatMessage> messages, const ChatOptions& options) {
  std::string out;
  if (options.insert_default_system && !messages.empty() && messages[0].role != "system") {
    out += "<|im_start|>system\n";
    out += options.default_system.empty() ? kSmolLmDefaultSystem : options.default_system;
    out += "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (options.add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(std::span<const ChatMessage> messages, const ChatOptions& options) {
  std::string out = "<|begin_of_text|>";
  for (const ChatMessage& m : messages) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
  }
  if (options.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_mistral(std::span<const ChatMessage> messages) {
  std::string out = "<s>";
  std::string system;
  size_t turn = 0;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      ESA_CHECK(turn == 0, "chat template mistral: a system message must come first");
      system = m.content;
      continue;
    }
    const bool user_turn = turn % 2 == 0;
    ESA_CHECK(m.role == (user_turn ? "user" : "assistant"),
              "chat template mistral: roles must alternate user/assistant, message {} is '{}'",
              turn, m.role);
    if (user_turn) {
      const std::string content = turn == 0 && !system.empty() ? system + "\n\n" + m.content : m.content;
      out += "[INST] " + content + " [/INST]";
    } else {
      out += m.content + "</s>";
    }
    ++turn;
  }
  return out;
}

}  // namespace

const char* chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::none: return "none";
    case ChatTemplate::chatml: return "chatml";
    case ChatTemplate::llama3: return "llama3";
    case ChatTemplate::mistral: return "mistral";
  }
  return "?";
}

ChatTemplate parse_chat_template(const std::string& name) {
  for (ChatTemplate t : {ChatTemplate::none, ChatTemplate::chatml, ChatTemplate::llama3, ChatTemplate::mistral}) {
    if (name == chat_template_name(t)) return t;
  }
  ESA_FAIL("unknown chat template '{}' (none, chatml, llama3, mistral)", name);
}

ChatTemplate detect_chat_template(const TokenizerSpec& spec) {
  const std::string& jinja = spec.chat_template;
  if (!jinja.empty()) {
    if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplate::chatml;
    if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::llama3;
    if (jinja.find("[INST]") != std::string::npos) return ChatTemplate::mistral;
    return ChatTemplate::none;
  }
  // No template shipped: guess from the special tokens.
  for (const std::string& t : spec.tokens) {
    if (t == "<|im_start|>") return ChatTemplate::chatml;
    if (t == "<|start_header_id|>") return ChatTemplate::llama3;
    if (t == "[INST]") return ChatTemplate::mistral;
  }
  return ChatTemplate::none;
}

ChatOptions chat_options_for(const TokenizerSpec& spec) {
  ChatOptions options;
  const std::string& jinja = spec.chat_template;
  if (jinja.empty() || detect_chat_template(spec) != ChatTemplate::chatml) return options;
  options.insert_default_system = false;
  // The newline after "system" is a real newline or a "\n" escape inside a Jinja string.
  for (const std::string head : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
    for (size_t at = jinja.find(head); at != std::string::npos; at = jinja.find(head, at + 1)) {
      const size_t begin = at + head.size();
      const size_t end = jinja.find("<|im_end|>", begin);
      if (end == std::string::npos) break;
      const std::string literal = jinja.substr(begin, end - begin);
      if (literal.empty() || literal.find_first_of("{}'\"+\\") != std::string::npos) continue;
      options.default_system = literal;
      options.insert_default_system = true;
      return options;
    }
  }
  return options;
}

std::string apply_chat_template(ChatTemplate t, std::span<const ChatMessage> messages,
                                const ChatOptions& options) {
  switch (t) {
    case ChatTemplate::chatml: return render_chatml(messages, options);
    case ChatTemplate::llama3: return render_llama3(messages, options);
    case ChatTemplate::mistral: return render_mistral(messages);
    case ChatTemplate::none: break;
  }
  ESA_FAIL("chat template 'none' cannot render messages");
}

std::string chat_prompt(const TokenizerSpec& spec, const std::string& user_text) {
  const ChatTemplate t = detect_chat_template(spec);
  ESA_CHECK(t != ChatTemplate::none, "{}: --chat: the model ships no chat template esa knows", spec.source);
  const ChatMessage message{"user", user_text};
  return apply_chat_template(t, {&message, 1}, chat_options_for(spec));
}

}  // namespace esa::text
