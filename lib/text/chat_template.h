// Chat templates, by name, written out in C++ (no Jinja engine): ChatML (SmolLM2, Qwen2) with
// the model's default system prompt, Llama-3 and Mistral [INST]. Reference: the Jinja template
// shipped with each model, rendered by transformers in the tokenizer fixture.
#pragma once

#include <span>
#include <string>
#include <vector>

namespace esa::text {

struct TokenizerSpec;

enum class ChatTemplate { none, chatml, llama3, mistral };
const char* chat_template_name(ChatTemplate t);
/// Parses "none", "chatml", "llama3", "mistral"; throws esa::Error otherwise.
ChatTemplate parse_chat_template(const std::string& name);
/// Recognises the template a tokenizer ships (from its Jinja source and special tokens).
ChatTemplate detect_chat_template(const TokenizerSpec& spec);

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

struct ChatOptions {
  /// ChatML: system prompt inserted when the first message is not a system message; empty to
  /// take the model's own default (SmolLM2's "You are a helpful AI assistant named SmolLM,
  /// trained by Hugging Face").
  std::string default_system;
  /// ChatML: false to insert no system message (templates without a default one).
  bool insert_default_system = true;
  bool add_generation_prompt = true;
};

/// SmolLM2's default system prompt.
extern const char* const kSmolLmDefaultSystem;

/// Options that follow a tokenizer's own ChatML template: the default system prompt is read
/// from its Jinja source (the literal between "<|im_start|>system\n" and "<|im_end|>"), and
/// none is inserted when the template holds no such literal. Other templates: the defaults.
ChatOptions chat_options_for(const TokenizerSpec& spec);

/// One user message in the tokenizer's own chat template, with its default system prompt and
/// the generation prompt: what `--chat` means on every command. Throws esa::Error naming
/// spec.source when the tokenizer ships no template esa knows.
std::string chat_prompt(const TokenizerSpec& spec, const std::string& user_text);

/// Renders messages to the exact text the model was trained on. The text spells the special
/// tokens (and Llama-3's/Mistral's BOS), so encode it with parse_special and without add_special.
/// ChatML: [system]{"<|im_start|>" role "\n" content "<|im_end|>\n"}["<|im_start|>assistant\n"].
/// Llama-3: "<|begin_of_text|>"{"<|start_header_id|>" role "<|end_header_id|>\n\n"
///   trim(content) "<|eot_id|>"}["<|start_header_id|>assistant<|end_header_id|>\n\n"].
/// Mistral: "<s>"{"[INST] " user " [/INST]" | assistant "</s>"}, a system message prepended to
///   the first user message with "\n\n"; roles must alternate user/assistant (esa::Error).
std::string apply_chat_template(ChatTemplate t, std::span<const ChatMessage> messages,
                                const ChatOptions& options = {});

}  // namespace esa::text
