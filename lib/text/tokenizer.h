// Tokenizers: byte-level BPE (GPT-2 byte mapping, merge ranks, pre-tokenizer split rules of
// GPT-2, SmolLM, Llama-3 and Qwen2 through PCRE2 with Unicode properties) and SentencePiece
// (libsentencepiece). Loaded from GGUF metadata (`tokenizer.ggml.*`), a Hugging Face
// tokenizer.json or a tokenizer.model. Reference: Hugging Face `tokenizers`, through the fixture
// made by scripts/reference/tokenizer_fixture.py.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace esa {
namespace io { class GgufFile; }
}

namespace esa::text {

enum class TokenizerModel { byte_level_bpe, sentencepiece };
const char* tokenizer_model_name(TokenizerModel model);

/// GGUF token types (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

/// Everything needed to build a tokenizer, whatever file it came from.
struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::byte_level_bpe;
  std::string pre = "gpt2";              // pre-tokenizer rule set: gpt2, smollm, llama3, qwen2, ...
  std::vector<std::string> tokens;       // id -> piece (byte-level BPE: GPT-2 byte-mapped text)
  std::vector<TokenType> types;          // id -> type (empty: all normal)
  std::vector<float> scores;             // id -> score (SentencePiece)
  std::vector<std::string> merges;       // "left right", rank = index
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  std::vector<int32_t> eot_ids;          // extra end-of-turn / stop ids (e.g. <|im_end|>, <|eot_id|>)
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = false;         // SentencePiece dummy prefix
  /// A pre-token that is itself a vocabulary entry is emitted whole, without merging
  /// (tokenizers' BPE `ignore_merges`; Llama-3's tokenizer.json and llama.cpp's llama3 rules).
  bool ignore_merges = false;
  std::string chat_template;             // Jinja source as shipped, informational
  std::string sentencepiece_proto;       // serialized ModelProto (tokenizer.model) when known
  std::string source;                    // file it was read from, for messages
};

/// encode and decode are thread-safe (per-thread scratch, a locked word cache).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Text -> ids. `add_special`: BOS/EOS as the model's flags ask. `parse_special`: text that
  /// spells a special/added token (e.g. "<|im_start|>") becomes that token.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = false,
                                      bool parse_special = true) const = 0;
  /// Ids -> text; bytes are joined before UTF-8 decoding, so split characters come out whole.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = false) const = 0;
  /// The raw vocabulary entry of one id (GPT-2 byte-mapped for byte-level BPE).
  virtual const std::string& piece(int32_t id) const = 0;
  virtual std::optional<int32_t> token_id(std::string_view piece) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual const TokenizerSpec& spec() const = 0;
  /// Ids that end generation: EOS and the end-of-turn tokens.
  std::vector<int32_t> stop_ids() const;
};

/// Builds a tokenizer; throws esa::Error naming spec.source when the spec is inconsistent
/// (unknown pre-tokenizer, merge naming an unknown piece, ids out of range, ...).
std::unique_ptr<Tokenizer> make_tokenizer(TokenizerSpec spec);

TokenizerSpec tokenizer_spec_from_gguf(const io::GgufFile& gguf);
/// From a Hugging Face folder: tokenizer.json (+ tokenizer_config.json) or tokenizer.model.
TokenizerSpec tokenizer_spec_from_hf_dir(const std::string& dir);

/// Opens the tokenizer of a model path: a .gguf file or a Hugging Face folder.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_path);

}  // namespace esa::text
