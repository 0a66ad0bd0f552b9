// TokenizerSpec readers: GGUF `tokenizer.ggml.*` metadata and Hugging Face folders
// (tokenizer.json + tokenizer_config.json, or tokenizer.model). References: llama.cpp's
// llama-vocab.cpp (GGUF keys and defaults) and tokenizers' serialization of tokenizer.json.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "io/gguf.h"
#include "text/pretokenizer.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/tokenizer.h"

namespace esa::text {
namespace {

using nlohmann::json;

// End-of-turn tokens a chat model may emit besides EOS (llama.cpp's end-of-generation set).
void add_known_eot_ids(TokenizerSpec& spec) {
  static const char* const kNames[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
                                       "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>"};
  for (const char* name : kNames) {
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      if (spec.tokens[id] != name) continue;
      const TokenType t = spec.types.empty() ? TokenType::normal : spec.types[id];
      if (t != TokenType::control && t != TokenType::user_defined) continue;
      const auto i = static_cast<int32_t>(id);
      if (i != spec.eos_id && std::find(spec.eot_ids.begin(), spec.eot_ids.end(), i) == spec.eot_ids.end()) {
        spec.eot_ids.push_back(i);
      }
    }
  }
}

// GGUF stores missing ids as -1 or as UINT32_MAX.
int32_t gguf_id(const io::GgufFile& gguf, const char* key) {
  const auto v = gguf.find_int(key);
  if (!v || *v < 0 || *v >= 0xFFFFFFFFll) return -1;
  ESA_CHECK(*v < INT32_MAX, "{}: {} = {} is not a token id", gguf.path(), key, *v);
  return static_cast<int32_t>(*v);
}

json read_json(const std::string& path) {
  json j = read_json_file(path);
  ESA_CHECK(j.is_object(), "{}: expected a JSON object at the top level", path);
  return j;
}

std::string short_dump(const json& j) { return json_excerpt(j); }

std::string json_type(const json& j) { return j.is_object() ? j.value("type", "") : ""; }

bool byte_level_use_regex(const json& j) {
  return j.value("use_regex", true) && !j.value("add_prefix_space", false);
}

// The rule set of a tokenizer.json pre_tokenizer, from its structure.
std::string pre_from_tokenizer_json(const json& pt, const std::string& path) {
  const std::string type = json_type(pt);
  if (type == "ByteLevel" && byte_level_use_regex(pt)) return "gpt2";
  if (type == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array() &&
      pt["pretokenizers"].size() == 2) {
    const json& a = pt["pretokenizers"][0];
    const json& b = pt["pretokenizers"][1];
    if (json_type(a) == "Digits" && a.value("individual_digits", false) &&
        json_type(b) == "ByteLevel" && byte_level_use_regex(b)) {
      return "smollm";
    }
    if (json_type(a) == "Split" && json_type(b) == "ByteLevel" && !b.value("use_regex", true) &&
        !b.value("add_prefix_space", false) && a.value("behavior", "") == "Isolated" &&
        !a.value("invert", false) && a.contains("pattern") && a["pattern"].is_object() &&
        a["pattern"].contains("Regex") && a["pattern"]["Regex"].is_string()) {
      if (auto kind = pre_tokenizer_from_split_regex(a["pattern"]["Regex"].get<std::string>())) {
        return pre_tokenizer_name(*kind);
      }
    }
  }
  ESA_FAIL("{}: unsupported pre_tokenizer {}", path, short_dump(pt));
}

bool is_byte_level_bpe(const json& tj) {
  if (!tj.contains("model") || !tj["model"].is_object()) return false;
  const json& model = tj["model"];
  if (model.contains("type") && model["type"] != "BPE") return false;
  const auto has_byte_level = [](const json& j) {
    if (json_type(j) == "ByteLevel") return true;
    if (json_type(j) == "Sequence") {
      for (const char* key : {"pretokenizers", "decoders"}) {
        if (!j.contains(key) || !j[key].is_array()) continue;
        for (const json& x : j[key]) {
          if (json_type(x) == "ByteLevel") return true;
        }
      }
    }
    return false;
  };
  return (tj.contains("pre_tokenizer") && has_byte_level(tj["pre_tokenizer"])) ||
         (tj.contains("decoder") && has_byte_level(tj["decoder"]));
}

void read_tokenizer_json(const json& tj, const std::string& path, TokenizerSpec& spec) {
  spec.model = TokenizerModel::byte_level_bpe;
  spec.source = path;
  const json& model = tj["model"];
  ESA_CHECK(model.contains("vocab") && model["vocab"].is_object(), "{}: model.vocab is not an object", path);
  const json empty_array = json::array();
  const json& added = tj.contains("added_tokens") && !tj["added_tokens"].is_null()
                          ? tj["added_tokens"] : empty_array;
  ESA_CHECK(added.is_array(), "{}: added_tokens is not an array", path);

  int64_t n = 0;
  for (const auto& [piece, id] : model["vocab"].items()) {
    ESA_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < INT32_MAX,
              "{}: model.vocab['{}'] = {} is not a token id", path, piece, json_excerpt(id));
    n = std::max(n, id.get<int64_t>() + 1);
  }
  for (const json& a : added) {
    ESA_CHECK(a.is_object() && a.contains("id") && a["id"].is_number_integer() &&
                  a.contains("content") && a["content"].is_string(),
              "{}: added_tokens entry {} has no integer id and string content", path, short_dump(a));
    const int64_t id = a["id"].get<int64_t>();
    ESA_CHECK(id >= 0 && id < INT32_MAX, "{}: added token id {} out of range", path, id);
    n = std::max(n, id + 1);
  }
  // Ids must be dense (checked below); before allocating, a single huge id is already a contradiction.
  const int64_t listed = int64_t(model["vocab"].size() + added.size());
  ESA_CHECK(n <= listed, "{}: token ids go up to {} but only {} tokens are listed (ids must be 0..n-1)", path,
            n - 1, listed);
  spec.tokens.assign(n, std::string());
  spec.types.assign(n, TokenType::undefined);
  auto set = [&](int64_t id, const std::string& piece, TokenType type) {
    if (spec.types[id] != TokenType::undefined) {
      ESA_CHECK(spec.tokens[id] == piece, "{}: id {} is both '{}' and '{}'", path, id,
                spec.tokens[id], piece);
    }
    spec.tokens[id] = piece;
    spec.types[id] = type;
  };
  for (const auto& [piece, id] : model["vocab"].items()) set(id.get<int64_t>(), piece, TokenType::normal);
  for (const json& a : added) {
    set(a["id"].get<int64_t>(), a["content"].get<std::string>(),
        a.value("special", false) ? TokenType::control : TokenType::user_defined);
  }
  for (int64_t id = 0; id < n; ++id) {
    ESA_CHECK(spec.types[id] != TokenType::undefined,
              "{}: no token has id {} (ids must be contiguous up to {})", path, id, n - 1);
  }

  if (model.contains("merges") && !model["merges"].is_null()) {
    ESA_CHECK(model["merges"].is_array(), "{}: model.merges is not an array", path);
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        spec.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        ESA_FAIL("{}: model.merges entry {} is neither \"a b\" nor [\"a\", \"b\"]", path, short_dump(m));
      }
    }
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const std::string unk = model["unk_token"].get<std::string>();
    for (int64_t id = 0; id < n; ++id) {
      if (spec.tokens[id] == unk) spec.unk_id = static_cast<int32_t>(id);
    }
  }
  if (model.contains("ignore_merges") && model["ignore_merges"].is_boolean()) {
    spec.ignore_merges = model["ignore_merges"].get<bool>();
  }
  ESA_CHECK(tj.contains("pre_tokenizer"), "{}: no pre_tokenizer", path);
  spec.pre = pre_from_tokenizer_json(tj["pre_tokenizer"], path);
  // NFC (Qwen2) is accepted and not applied: text is expected in NFC already.
  if (tj.contains("normalizer") && !tj["normalizer"].is_null()) {
    ESA_CHECK(json_type(tj["normalizer"]) == "NFC", "{}: unsupported normalizer {}", path,
              short_dump(tj["normalizer"]));
  }
}

// bos_token etc.: a string, or an AddedToken object {"content": ...}, or null.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

void read_tokenizer_config(const std::string& path, TokenizerSpec& spec) {
  const json config = read_json(path);
  const auto read_bool = [&](const char* key, bool& out) {
    if (!config.contains(key) || config[key].is_null()) return;
    ESA_CHECK(config[key].is_boolean(), "{}: {} is not a boolean", path, key);
    out = config[key].get<bool>();
  };
  read_bool("add_bos_token", spec.add_bos);
  read_bool("add_eos_token", spec.add_eos);
  const auto find_id = [&](const char* key, int32_t& out) {
    const auto content = config_token(config, key);
    if (!content) return;
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      if (spec.tokens[id] == *content) {
        out = static_cast<int32_t>(id);
        return;
      }
    }
    ESA_FAIL("{}: {} '{}' is not in the vocabulary", path, key, *content);
  };
  find_id("bos_token", spec.bos_id);
  find_id("eos_token", spec.eos_id);
  find_id("unk_token", spec.unk_id);
  find_id("pad_token", spec.pad_id);
  if (config.contains("chat_template")) {
    const json& t = config["chat_template"];
    if (t.is_string()) {
      spec.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (const json& named : t) {
        if (!named.is_object() || !named.contains("template") || !named["template"].is_string()) continue;
        if (spec.chat_template.empty() || named.value("name", "") == "default") {
          spec.chat_template = named["template"].get<std::string>();
        }
      }
    }
  }
}

}  // namespace

TokenizerSpec tokenizer_spec_from_gguf(const io::GgufFile& gguf) {
  TokenizerSpec spec;
  spec.source = gguf.path();
  const auto model = gguf.find_string("tokenizer.ggml.model");
  ESA_CHECK(model.has_value(), "{}: no tokenizer (tokenizer.ggml.model is missing)", gguf.path());
  if (*model == "gpt2") {
    spec.model = TokenizerModel::byte_level_bpe;
  } else if (*model == "llama") {
    spec.model = TokenizerModel::sentencepiece;
  } else {
    ESA_FAIL("{}: tokenizer.ggml.model '{}' is not supported (gpt2, llama)", gguf.path(), *model);
  }
  for (std::string_view t : gguf.get_string_array("tokenizer.ggml.tokens")) spec.tokens.emplace_back(t);
  if (gguf.find("tokenizer.ggml.token_type") != nullptr) {
    for (int64_t t : gguf.get_int_array("tokenizer.ggml.token_type")) {
      ESA_CHECK(t >= 0 && t <= 6, "{}: tokenizer.ggml.token_type holds unknown type {}", gguf.path(), t);
      spec.types.push_back(static_cast<TokenType>(t));
    }
    ESA_CHECK(spec.types.size() == spec.tokens.size(),
              "{}: tokenizer.ggml.tokens has {} entries but tokenizer.ggml.token_type {}",
              gguf.path(), spec.tokens.size(), spec.types.size());
  }
  if (gguf.find("tokenizer.ggml.scores") != nullptr) {
    spec.scores = gguf.get_float_array("tokenizer.ggml.scores");
    ESA_CHECK(spec.scores.size() == spec.tokens.size(),
              "{}: tokenizer.ggml.tokens has {} entries but tokenizer.ggml.scores {}", gguf.path(),
              spec.tokens.size(), spec.scores.size());
  }
  if (gguf.find("tokenizer.ggml.merges") != nullptr) {
    for (std::string_view m : gguf.get_string_array("tokenizer.ggml.merges")) spec.merges.emplace_back(m);
  }
  if (spec.model == TokenizerModel::byte_level_bpe) {
    spec.pre = gguf.find_string("tokenizer.ggml.pre").value_or("gpt2");
    // GGUF has no flag for it: llama.cpp turns ignore_merges on for the Llama-3 rule set, as
    // Llama-3's tokenizer.json does.
    spec.ignore_merges = spec.pre == "llama3" || spec.pre == "llama-bpe" || spec.pre == "llama-v3";
  }
  spec.bos_id = gguf_id(gguf, "tokenizer.ggml.bos_token_id");
  spec.eos_id = gguf_id(gguf, "tokenizer.ggml.eos_token_id");
  spec.unk_id = gguf_id(gguf, "tokenizer.ggml.unknown_token_id");
  spec.pad_id = gguf_id(gguf, "tokenizer.ggml.padding_token_id");
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = gguf_id(gguf, key);
    if (id >= 0 && id != spec.eos_id) spec.eot_ids.push_back(id);
  }
  // llama.cpp's defaults: SentencePiece vocabularies add BOS and a dummy prefix space.
  const bool spm = spec.model == TokenizerModel::sentencepiece;
  spec.add_bos = gguf.find_bool("tokenizer.ggml.add_bos_token").value_or(spm);
  spec.add_eos = gguf.find_bool("tokenizer.ggml.add_eos_token").value_or(false);
  spec.add_space_prefix = gguf.find_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
  spec.chat_template = gguf.find_string("tokenizer.chat_template").value_or("");
  add_known_eot_ids(spec);
  return spec;
}

namespace {

TokenizerSpec read_hf_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  ESA_CHECK(fs::is_directory(dir), "{}: not a directory", dir);
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string model_path = (fs::path(dir) / "tokenizer.model").string();
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  const bool have_json = fs::exists(json_path);
  const bool have_model = fs::exists(model_path);
  ESA_CHECK(have_json || have_model, "{}: no tokenizer.json or tokenizer.model", dir);

  TokenizerSpec spec;
  json tj;
  if (have_json) tj = read_json(json_path);
  if (have_json && is_byte_level_bpe(tj)) {
    read_tokenizer_json(tj, json_path, spec);
  } else if (have_model) {
    spec.source = model_path;
    read_sentencepiece_proto(read_file(model_path), model_path, spec);
    spec.add_bos = true;  // the Llama/Mistral default when tokenizer_config.json does not say
  } else {
    const std::string type = tj.contains("model") ? json_type(tj["model"]) : "";
    ESA_FAIL("{}: not a byte-level BPE tokenizer (model type '{}') and no tokenizer.model beside it",
             json_path, type);
  }
  if (fs::exists(config_path)) read_tokenizer_config(config_path, spec);
  const std::string jinja_path = (fs::path(dir) / "chat_template.jinja").string();
  if (spec.chat_template.empty() && fs::exists(jinja_path)) spec.chat_template = read_file(jinja_path);
  add_known_eot_ids(spec);
  return spec;
}

}  // namespace

TokenizerSpec tokenizer_spec_from_hf_dir(const std::string& dir) {
  // The readers check the fields they rely on; a value of an unexpected JSON type anywhere else
  // (found by tests/fuzz/fuzz_tokenizer_json) still becomes one line naming the files, not a crash.
  try {
    return read_hf_dir(dir);
  } catch (const nlohmann::json::exception& e) {
    ESA_FAIL("{}: tokenizer.json or tokenizer_config.json has an unexpected structure: {}", dir, e.what());
  }
}

}  // namespace esa::text
