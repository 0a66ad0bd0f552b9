// Tokenizer front door: spec validation, the factory and load_tokenizer (see tokenizer.h).
#include "text/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/file_io.h"
#include "io/gguf.h"
#include "text/bpe_tokenizer.h"
#include "text/sentencepiece_tokenizer.h"

namespace esa::text {
namespace {

std::string name_of(const TokenizerSpec& spec) { return spec.source.empty() ? "tokenizer" : spec.source; }

void check_id(const TokenizerSpec& spec, int32_t id, const char* what) {
  const auto n = static_cast<int64_t>(spec.tokens.size());
  ESA_CHECK(id >= -1 && id < n, "{}: {} {} out of range [0, {})", name_of(spec), what, id, n);
}

// Checks what every tokenizer relies on; model-specific checks (merges, pre-tokenizer) happen
// in the model's constructor.
void validate(const TokenizerSpec& spec) {
  const std::string name = name_of(spec);
  const size_t n = spec.tokens.size();
  ESA_CHECK(n > 0 || !spec.sentencepiece_proto.empty(), "{}: empty vocabulary", name);
  ESA_CHECK(n < static_cast<size_t>(INT32_MAX), "{}: vocabulary of {} tokens is too large", name, n);
  ESA_CHECK(spec.types.empty() || spec.types.size() == n, "{}: {} tokens but {} token types", name,
            n, spec.types.size());
  ESA_CHECK(spec.scores.empty() || spec.scores.size() == n, "{}: {} tokens but {} scores", name, n,
            spec.scores.size());
  for (size_t id = 0; id < spec.types.size(); ++id) {
    const auto t = static_cast<int32_t>(spec.types[id]);
    ESA_CHECK(t >= 0 && t <= 6, "{}: token {} has unknown token type {}", name, id, t);
  }
  check_id(spec, spec.bos_id, "bos id");
  check_id(spec, spec.eos_id, "eos id");
  check_id(spec, spec.unk_id, "unk id");
  check_id(spec, spec.pad_id, "padding id");
  for (int32_t id : spec.eot_ids) check_id(spec, id, "end-of-turn id");
}

}  // namespace

const char* tokenizer_model_name(TokenizerModel model) {
  switch (model) {
    case TokenizerModel::byte_level_bpe: return "byte_level_bpe";
    case TokenizerModel::sentencepiece: return "sentencepiece";
  }
  return "?";
}

std::vector<int32_t> Tokenizer::stop_ids() const {
  std::vector<int32_t> ids;
  if (spec().eos_id >= 0) ids.push_back(spec().eos_id);
  for (int32_t id : spec().eot_ids) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

std::unique_ptr<Tokenizer> make_tokenizer(TokenizerSpec spec) {
  validate(spec);
  switch (spec.model) {
    case TokenizerModel::byte_level_bpe: return make_bpe_tokenizer(std::move(spec));
    case TokenizerModel::sentencepiece: return make_sentencepiece_tokenizer(std::move(spec));
  }
  ESA_FAIL("{}: unknown tokenizer model", name_of(spec));
}

namespace {

// A token id the embedding has no row for fails only when a text produces it, deep into a run:
// refused at load instead. A GGUF file holds both halves, so they must agree exactly (llama.cpp
// sizes the embedding by the token list); a Hugging Face embedding may be padded past the
// tokenizer (Qwen2, Phi-3), never shorter.
void check_fits_embedding(const Tokenizer& tok, int64_t rows, bool exact, const std::string& where) {
  const int64_t n = tok.vocab_size();
  ESA_CHECK(n <= rows, "{}: the tokenizer has {} tokens but the embedding only {} rows (ids {}..{} have no embedding)",
            where, n, rows, rows, n - 1);
  ESA_CHECK(!exact || n == rows, "{}: the tokenizer has {} tokens but token_embd.weight {} rows (one file: they must agree)",
            where, n, rows);
}

std::unique_ptr<Tokenizer> tokenizer_of_hf_dir(const std::string& dir) {
  std::unique_ptr<Tokenizer> tok = make_tokenizer(tokenizer_spec_from_hf_dir(dir));
  const std::string config = (std::filesystem::path(dir) / "config.json").string();
  std::error_code ec;
  if (std::filesystem::is_regular_file(config, ec)) {
    const nlohmann::json j = read_json_file(config);
    if (j.is_object() && j.contains("vocab_size") && j["vocab_size"].is_number_integer()) {
      check_fits_embedding(*tok, j["vocab_size"].get<int64_t>(), /*exact=*/false, config + " vocab_size");
    }
  }
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(model_path, ec);
  ESA_CHECK(!ec && fs::exists(status), "{}: no such file or directory", model_path);
  if (fs::is_directory(status)) return tokenizer_of_hf_dir(model_path);
  const fs::path path(model_path);
  const std::string filename = path.filename().string();
  if (filename == "tokenizer.json" || filename == "tokenizer.model" ||
      filename == "tokenizer_config.json") {
    return tokenizer_of_hf_dir(path.parent_path().string());
  }
  if (path.extension() == ".gguf" || read_prefix(model_path, 4) == "GGUF") {
    const io::GgufFile gguf(model_path);
    std::unique_ptr<Tokenizer> tok = make_tokenizer(tokenizer_spec_from_gguf(gguf));
    const io::GgufTensorInfo* embd = gguf.find_tensor("token_embd.weight");
    if (embd != nullptr && embd->shape.size() == 2) check_fits_embedding(*tok, embd->shape[1], /*exact=*/true, model_path);
    return tok;
  }
  ESA_FAIL("{}: not a tokenizer (expected a .gguf file, or a Hugging Face folder with "
           "tokenizer.json or tokenizer.model)", model_path);
}

}  // namespace esa::text
