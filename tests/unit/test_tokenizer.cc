// Tokenizer tests. With the model: token-for-token comparison against Hugging Face `tokenizers`
// for every pre-tokenizer rule set (tests/fixtures/tokenizer/smollm2.json, made by
// scripts/reference/tokenizer_fixture.py), decode round trips, ChatML against transformers'
// apply_chat_template. Without it: tiny tokenizer.json vocabularies, a hand-made SentencePiece
// vocabulary and the error paths.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/sha256.h"
#include "io/gguf.h"
#include "support/gguf_writer.h"
#include "support/test_support.h"
#include "text/byte_mapping.h"
#include "text/chat_template.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/tokenizer.h"

namespace esa::text {
namespace {

using nlohmann::json;

// Printable form of a string for failure messages.
std::string escaped(const std::string& s, size_t max = 120) {
  std::string out = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  if (out.size() > max) out = out.substr(0, max) + "...\"";
  return out;
}

std::string ids_str(const std::vector<int32_t>& ids, size_t max = 40) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < max; ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  if (ids.size() > max) out += ",...";
  return out + "]";
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no esa::Error thrown)";
}

// ---- the fixture ------------------------------------------------------------------------------

const json& fixture() {
  static const json j = json::parse(test::read_file(test::fixture("tokenizer/smollm2.json")));
  return j;
}

// The model's spec, read once.
const TokenizerSpec& model_spec() {
  static const TokenizerSpec spec = [] {
    const io::GgufFile gguf(test::default_model_path());
    return tokenizer_spec_from_gguf(gguf);
  }();
  return spec;
}

const Tokenizer& tokenizer_for(const std::string& pre) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[pre];
  if (!t) {
    if (pre == "smollm") {
      t = load_tokenizer(test::default_model_path());
    } else {
      TokenizerSpec spec = model_spec();
      spec.pre = pre;
      t = make_tokenizer(std::move(spec));
    }
  }
  return *t;
}

TEST(TokenizerModel, FixtureMatchesModel) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const std::string sha = sha256_file(test::default_model_path());
  ASSERT_EQ(sha, fixture()["model_sha256"].get<std::string>())
      << "the fixture was made from another model file; rerun " << fixture()["command"];
  const Tokenizer& tok = tokenizer_for("smollm");
  EXPECT_EQ(tok.spec().model, TokenizerModel::byte_level_bpe);
  EXPECT_EQ(tok.spec().pre, "smollm");
  EXPECT_EQ(tok.vocab_size(), fixture()["vocab_size"].get<int32_t>());
  EXPECT_EQ(tok.spec().bos_id, fixture()["bos_id"].get<int32_t>());
  EXPECT_EQ(tok.spec().eos_id, fixture()["eos_id"].get<int32_t>());
  EXPECT_EQ(tok.piece(1), "<|im_start|>");
  EXPECT_EQ(tok.token_id("<|im_end|>"), 2);
  EXPECT_FALSE(tok.token_id("no such piece").has_value());
  const auto stop = tok.stop_ids();
  EXPECT_NE(std::find(stop.begin(), stop.end(), 2), stop.end());  // <|im_end|>
  EXPECT_NE(std::find(stop.begin(), stop.end(), 0), stop.end());  // <|endoftext|>
  EXPECT_FALSE(tok.spec().add_bos);
  EXPECT_EQ(tok.encode("Hello", /*add_special=*/true), tok.encode("Hello", false));
}

class TokenizerRuleSet : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerRuleSet, MatchesHuggingFaceTokenizers) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const std::string pre = GetParam();
  const Tokenizer& tok = tokenizer_for(pre);
  size_t n = 0, mismatches = 0;
  std::string report;
  for (const json& c : fixture()["cases"]) {
    if (!c["ids"].contains(pre)) continue;
    ++n;
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids"][pre].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, false, true);
    if (got != expected) {
      ++mismatches;
      report += "  " + escaped(text) + "\n    expected " + ids_str(expected) + "\n    got      " +
                ids_str(got) + "\n";
    }
  }
  std::printf("[ %-8s ] %zu strings, %zu mismatches\n", pre.c_str(), n, mismatches);
  EXPECT_GE(n, 300u);
  EXPECT_EQ(mismatches, 0u) << "rule set " << pre << ": " << mismatches << " of " << n
                            << " strings differ from tokenizers:\n" << report;
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerRuleSet,
                         ::testing::Values("smollm", "gpt2", "llama3", "qwen2"),
                         [](const auto& info) { return info.param; });

TEST(TokenizerModel, DecodeMatchesTokenizers) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const Tokenizer& tok = tokenizer_for("smollm");
  size_t n = 0, mismatches = 0;
  std::string report;
  for (const json& c : fixture()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = c["ids"]["smollm"].get<std::vector<int32_t>>();
    const std::string decoded = tok.decode(ids);
    const std::string skipped = tok.decode(ids, /*skip_special=*/true);
    const std::string round_trip = tok.decode(tok.encode(text));
    ++n;
    if (decoded != c["decoded"].get<std::string>() ||
        skipped != c["decoded_skip_special"].get<std::string>() || round_trip != text) {
      ++mismatches;
      report += "  " + escaped(text) + " -> " + escaped(decoded) + " / skip_special " +
                escaped(skipped) + " / round trip " + escaped(round_trip) + "\n";
    }
  }
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << n << " decodes differ:\n" << report;
}

TEST(TokenizerModel, SpecialTokensAsText) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const Tokenizer& tok = tokenizer_for("smollm");
  size_t n = 0, mismatches = 0;
  std::string report;
  for (const json& c : fixture()["cases"]) {
    if (!c.contains("ids_special_as_text")) continue;
    ++n;
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids_special_as_text"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text, false, /*parse_special=*/false);
    if (got != expected) {
      ++mismatches;
      report += "  " + escaped(text) + "\n    expected " + ids_str(expected) + "\n    got      " +
                ids_str(got) + "\n";
    }
  }
  EXPECT_GE(n, 10u);
  EXPECT_EQ(mismatches, 0u) << report;
  // parse_special on: one id each; off: spelled out, and decoding gives the text back.
  EXPECT_EQ(tok.encode("<|im_start|><|im_end|>", false, true), (std::vector<int32_t>{1, 2}));
  const auto spelled = tok.encode("<|im_start|>", false, false);
  EXPECT_GT(spelled.size(), 1u);
  EXPECT_EQ(tok.decode(spelled), "<|im_start|>");
}

TEST(TokenizerModel, ChatMlMatchesTransformers) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const Tokenizer& tok = tokenizer_for("smollm");
  ASSERT_EQ(detect_chat_template(tok.spec()), ChatTemplate::chatml);
  ChatOptions options = chat_options_for(tok.spec());
  EXPECT_EQ(options.default_system, kSmolLmDefaultSystem);
  size_t n = 0;
  for (const json& c : fixture()["chat"]) {
    std::vector<ChatMessage> messages;
    for (const json& m : c["messages"]) {
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    options.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    const std::string text = apply_chat_template(ChatTemplate::chatml, messages, options);
    EXPECT_EQ(text, c["text"].get<std::string>()) << "chat case " << n;
    EXPECT_EQ(tok.encode(text), c["ids"].get<std::vector<int32_t>>()) << "chat case " << n;
    // The header's default (empty default_system) is SmolLM2's prompt too.
    ChatOptions plain;
    plain.add_generation_prompt = options.add_generation_prompt;
    EXPECT_EQ(apply_chat_template(ChatTemplate::chatml, messages, plain), text);
    ++n;
  }
  EXPECT_GE(n, 8u);
}

TEST(TokenizerModel, RoundTripBytesAndInvalidUtf8) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const Tokenizer& tok = tokenizer_for("smollm");
  // Invalid UTF-8 is tokenized byte by byte and decoded back to the same bytes.
  for (const std::string& s : {std::string("caf\xc3"), std::string("\xed\xa0\x80 surrogate"),
                               std::string("\x80\x80 x \xe2\x82"), std::string("a\0b", 3)}) {
    EXPECT_EQ(tok.decode(tok.encode(s)), s) << escaped(s);
  }
  // Bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5..0xFF) have no entry in this vocabulary:
  // they become the unknown token, as in tokenizers when the model names one.
  ASSERT_FALSE(tok.token_id(byte_mapping().encode_byte(0xFF)).has_value());
  EXPECT_EQ(tok.encode("\xff"), std::vector<int32_t>{tok.spec().unk_id});
  // A character split over tokens comes out whole once the bytes are joined.
  const auto ids = tok.encode("\xf0\x9f\x98\x80");  // U+1F600
  ASSERT_GT(ids.size(), 1u);
  EXPECT_EQ(tok.decode(ids), "\xf0\x9f\x98\x80");
  EXPECT_THROW(tok.decode(std::vector<int32_t>{tok.vocab_size()}), Error);
  EXPECT_THROW(tok.piece(-1), Error);
  // Random strings of the bytes the vocabulary has survive the round trip.
  std::vector<char> bytes;
  for (int b = 0; b < 256; ++b) {
    if (tok.token_id(byte_mapping().encode_byte(static_cast<uint8_t>(b)))) bytes.push_back(static_cast<char>(b));
  }
  uint64_t state = test::test_seed(1234);
  for (int round = 0; round < 500; ++round) {
    std::string s;
    for (int i = 0; i < 24; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      s += bytes[(state >> 33) % bytes.size()];
    }
    ASSERT_EQ(tok.decode(tok.encode(s, false, false)), s) << escaped(s);
  }
}

TEST(TokenizerModel, LongRuns) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  // `\s+(?!\S)` backtracks over the whole run; a long word goes through the merge heap.
  for (const char* pre : {"smollm", "llama3"}) {
    const Tokenizer& tok = tokenizer_for(pre);
    for (const std::string& s : {std::string(1 << 18, ' ') + "x", std::string(1 << 16, '\n') + " y",
                                 std::string(200000, 'a'), std::string(100000, '7')}) {
      const auto ids = tok.encode(s);
      EXPECT_EQ(tok.decode(ids), s) << pre << ": " << s.size() << " bytes";
    }
  }
}

TEST(TokenizerModel, BadPreNameNamesTheFile) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  TokenizerSpec spec = model_spec();
  spec.pre = "no-such-rules";
  const std::string message = error_of([&] { make_tokenizer(spec); });
  EXPECT_NE(message.find("no-such-rules"), std::string::npos) << message;
  EXPECT_NE(message.find(test::default_model_path()), std::string::npos) << message;
}

// ---- tiny vocabularies, no model needed ------------------------------------------------------

// A byte-level tokenizer.json: the 256 byte characters, a few merges, two added tokens.
json tiny_tokenizer_json(const json& pre_tokenizer, bool list_merges) {
  json vocab = json::object();
  const ByteMapping& bm = byte_mapping();
  for (int b = 0; b < 256; ++b) vocab[bm.encode_byte(static_cast<uint8_t>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"o", "r"},
      {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"}, {"1", "2"}};
  json merge_list = json::array();
  int id = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    merge_list.push_back(list_merges ? json::array({a, b}) : json(a + " " + b));
  }
  json tj = {
      {"version", "1.0"},
      {"added_tokens", json::array({
           {{"id", id}, {"content", "<|end|>"}, {"special", true}},
           {{"id", id + 1}, {"content", "<tool>"}, {"special", false}},
       })},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
  };
  return tj;
}

const json kByteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};

std::string write_hf_dir(const json& tj, const json& config = nullptr) {
  const std::string dir = test::temp_dir();
  write_file(dir + "/tokenizer.json", tj.dump());
  if (!config.is_null()) write_file(dir + "/tokenizer_config.json", config.dump());
  return dir;
}

TEST(TokenizerTiny, TokenizerJsonBothMergeForms) {
  for (bool list_merges : {false, true}) {
    const std::string dir = write_hf_dir(
        tiny_tokenizer_json(kByteLevel, list_merges),
        {{"bos_token", "<|end|>"}, {"eos_token", {{"content", "<|end|>"}}}, {"add_bos_token", true},
         {"chat_template", "{% for m in messages %}<|im_start|>{% endfor %}"}});
    const auto tok = load_tokenizer(dir);
    const int32_t hello = *tok->token_id("hello"), world = *tok->token_id("Ġworld");
    const int32_t end = *tok->token_id("<|end|>"), tool = *tok->token_id("<tool>");
    EXPECT_EQ(tok->spec().pre, "gpt2");
    EXPECT_EQ(tok->spec().bos_id, end);
    EXPECT_TRUE(tok->spec().add_bos);
    EXPECT_EQ(detect_chat_template(tok->spec()), ChatTemplate::chatml);
    EXPECT_EQ(tok->encode("hello world"), (std::vector<int32_t>{hello, world}));
    EXPECT_EQ(tok->encode("hello world", /*add_special=*/true), (std::vector<int32_t>{end, hello, world}));
    EXPECT_EQ(tok->encode("hello<|end|> world<tool>"), (std::vector<int32_t>{hello, end, world, tool}));
    // Control tokens are text when parse_special is off; user-defined ones still match.
    const auto off = tok->encode("<|end|><tool>", false, false);
    EXPECT_EQ(off.back(), tool);
    EXPECT_EQ(off.size(), 8u);  // "<|", "end", "|>" spelled byte by byte: < | e n d | > and <tool>
    EXPECT_EQ(tok->decode(tok->encode("hello<|end|> world", false, true)), "hello<|end|> world");
    EXPECT_EQ(tok->decode(tok->encode("hello<|end|> world", false, true), true), "hello world");
    // "12" is one token under gpt2 rules.
    EXPECT_EQ(tok->encode("12").size(), 1u);
  }
}

TEST(TokenizerTiny, IgnoreMergesEmitsVocabularyWordsWhole) {
  // "abc" is in the vocabulary but no merge reaches it: merging gives [ab, c], ignore_merges
  // (Llama-3) gives [abc]. Words not in the vocabulary are merged either way.
  for (bool ignore : {false, true}) {
    TokenizerSpec spec;
    spec.tokens = {"a", "b", "c", "ab", "abc"};
    spec.merges = {"a b"};
    spec.pre = "gpt2";
    spec.ignore_merges = ignore;
    spec.source = "tiny";
    const auto tok = make_tokenizer(spec);
    const std::vector<int32_t> expected = ignore ? std::vector<int32_t>{4} : std::vector<int32_t>{3, 2};
    EXPECT_EQ(tok->encode("abc"), expected) << ignore;
    EXPECT_EQ(tok->encode("cab"), (std::vector<int32_t>{2, 3})) << ignore;
  }
}

TEST(TokenizerTiny, PreTokenizerFromStructure) {
  const json smollm = {{"type", "Sequence"},
                       {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                      kByteLevel})}};
  auto tok = load_tokenizer(write_hf_dir(tiny_tokenizer_json(smollm, false)));
  EXPECT_EQ(tok->spec().pre, "smollm");
  EXPECT_EQ(tok->encode("12").size(), 2u);  // digits split singly

  const std::string llama3_regex =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const json split_pre = {
      {"type", "Sequence"},
      {"pretokenizers",
       json::array({{{"type", "Split"}, {"pattern", {{"Regex", llama3_regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}, {"trim_offsets", true}}})}};
  tok = load_tokenizer(write_hf_dir(tiny_tokenizer_json(split_pre, false)) + "/tokenizer.json");
  EXPECT_EQ(tok->spec().pre, "llama3");

  json unknown = split_pre;
  unknown["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  const std::string dir = write_hf_dir(tiny_tokenizer_json(unknown, false));
  const std::string message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find("unsupported pre_tokenizer"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/tokenizer.json"), std::string::npos) << message;
}

// A token id with no embedding row is refused at load, not when a text first produces it.
TEST(TokenizerTiny, VocabularyMustFitTheEmbedding) {
  const json tj = tiny_tokenizer_json(kByteLevel, false);
  const std::string dir = write_hf_dir(tj);
  const int32_t n = load_tokenizer(dir)->vocab_size();
  // A Hugging Face embedding padded past the tokenizer (Qwen2, Phi-3) is legal.
  write_file(dir + "/config.json", json{{"vocab_size", n + 64}}.dump());
  EXPECT_EQ(load_tokenizer(dir)->vocab_size(), n);
  write_file(dir + "/config.json", json{{"vocab_size", n - 2}}.dump());
  std::string message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find("config.json vocab_size: the tokenizer has " + std::to_string(n) + " tokens but the embedding only " +
                         std::to_string(n - 2) + " rows"),
            std::string::npos)
      << message;
  // One GGUF file holds both: they must agree.
  const std::string gguf = test::temp_dir() + "/extra.gguf";
  write_file(gguf, test::tiny_llama_gguf("", "", 3));
  message = error_of([&] { load_tokenizer(gguf); });
  EXPECT_NE(message.find(gguf + ": the tokenizer has"), std::string::npos) << message;
  write_file(gguf, test::tiny_llama_gguf());
  EXPECT_GT(load_tokenizer(gguf)->vocab_size(), 256);
}

TEST(TokenizerTiny, Errors) {
  // Corrupt JSON.
  std::string dir = test::temp_dir();
  write_file(dir + "/tokenizer.json", "{ \"model\": [1, 2");
  std::string message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find(dir + "/tokenizer.json"), std::string::npos) << message;
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;

  // Fields of unexpected JSON types (found by tests/fuzz/fuzz_tokenizer_json): one line, no crash.
  json tj = tiny_tokenizer_json(kByteLevel, false);
  tj["model"]["type"] = nullptr;
  dir = write_hf_dir(tj);
  message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find(dir), std::string::npos) << message;
  tj = tiny_tokenizer_json(kByteLevel, false);
  tj["pre_tokenizer"]["type"] = json::array({1, 2});
  dir = write_hf_dir(tj);
  message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find(dir), std::string::npos) << message;

  // A merge naming an unknown piece.
  tj = tiny_tokenizer_json(kByteLevel, false);
  tj["model"]["merges"].push_back("he zz");
  dir = write_hf_dir(tj);
  message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find("unknown piece 'zz'"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/tokenizer.json"), std::string::npos) << message;

  // A merge whose result is not in the vocabulary.
  tj = tiny_tokenizer_json(kByteLevel, false);
  tj["model"]["merges"].push_back("w d");
  message = error_of([&] { load_tokenizer(write_hf_dir(tj)); });
  EXPECT_NE(message.find("unknown piece 'wd'"), std::string::npos) << message;

  // Holes in the ids (refused before anything is allocated for the largest id; a 2e9 id made the
  // fuzzer allocate 24 GB); an id given to two pieces.
  tj = tiny_tokenizer_json(kByteLevel, false);
  tj["model"]["vocab"]["zzz"] = 100000;
  message = error_of([&] { load_tokenizer(write_hf_dir(tj)); });
  EXPECT_NE(message.find("token ids go up to 100000"), std::string::npos) << message;
  tj = tiny_tokenizer_json(kByteLevel, false);
  tj["added_tokens"][0]["id"] = 5;
  message = error_of([&] { load_tokenizer(write_hf_dir(tj)); });
  EXPECT_NE(message.find("id 5 is both"), std::string::npos) << message;

  // tokenizer_config.json naming a token not in the vocabulary.
  message = error_of([&] {
    load_tokenizer(write_hf_dir(tiny_tokenizer_json(kByteLevel, false), {{"bos_token", "<s>"}}));
  });
  EXPECT_NE(message.find("bos_token '<s>' is not in the vocabulary"), std::string::npos) << message;

  // Inconsistent specs.
  TokenizerSpec spec;
  spec.source = "spec.gguf";
  spec.tokens = {"a", "b"};
  spec.types = {TokenType::normal};
  message = error_of([&] { make_tokenizer(spec); });
  EXPECT_NE(message.find("spec.gguf: 2 tokens but 1 token types"), std::string::npos) << message;
  spec.types.clear();
  spec.bos_id = 7;
  message = error_of([&] { make_tokenizer(spec); });
  EXPECT_NE(message.find("bos id 7 out of range"), std::string::npos) << message;
  spec.bos_id = -1;
  spec.pre = "bogus";
  message = error_of([&] { make_tokenizer(spec); });
  EXPECT_NE(message.find("spec.gguf: unknown pre-tokenizer 'bogus'"), std::string::npos) << message;

  // Paths that are not tokenizers.
  message = error_of([&] { load_tokenizer("/no/such/model.gguf"); });
  EXPECT_NE(message.find("/no/such/model.gguf: no such file"), std::string::npos) << message;
  dir = test::temp_dir();
  write_file(dir + "/weights.bin", "not a model");
  message = error_of([&] { load_tokenizer(dir + "/weights.bin"); });
  EXPECT_NE(message.find(dir + "/weights.bin: not a tokenizer"), std::string::npos) << message;
  message = error_of([&] { load_tokenizer(test::temp_dir()); });
  EXPECT_NE(message.find("no tokenizer.json or tokenizer.model"), std::string::npos) << message;
}

// ---- SentencePiece, hand-made vocabulary -----------------------------------------------------

// ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below. Scores rank merges
// (higher first).
TokenizerSpec tiny_sentencepiece_spec() {
  TokenizerSpec spec;
  spec.model = TokenizerModel::sentencepiece;
  spec.source = "tiny-spm";
  auto add = [&](std::string piece, TokenType type, float score) {
    spec.tokens.push_back(std::move(piece));
    spec.types.push_back(type);
    spec.scores.push_back(score);
  };
  add("<unk>", TokenType::unknown, 0);
  add("<s>", TokenType::control, 0);
  add("</s>", TokenType::control, 0);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), TokenType::byte, 0);
  const char* chars[] = {"\xe2\x96\x81", "h", "e", "l", "o", "w", "r", "d"};  // "▁" first
  for (const char* c : chars) add(c, TokenType::normal, -100);
  const std::pair<const char*, float> merged[] = {
      {"he", -1}, {"ll", -2}, {"hell", -3}, {"hello", -4}, {"\xe2\x96\x81hello", -5},
      {"\xe2\x96\x81w", -6}, {"or", -7}, {"\xe2\x96\x81wor", -8}, {"ld", -9},
      {"\xe2\x96\x81world", -10}};
  for (const auto& [piece, score] : merged) add(piece, TokenType::normal, score);
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.unk_id = 0;
  spec.add_bos = true;
  spec.add_space_prefix = true;
  return spec;
}

TEST(TokenizerSentencePiece, TinyVocabulary) {
  const auto tok = make_tokenizer(tiny_sentencepiece_spec());
  auto id = [&](const char* piece) { return *tok->token_id(piece); };
  ASSERT_EQ(tok->vocab_size(), 3 + 256 + 8 + 10);
  EXPECT_EQ(id("\xe2\x96\x81hello"), 271);
  EXPECT_EQ(id("\xe2\x96\x81world"), 276);
  // Hand-checked: "▁hello▁world" merges he, ll, hell, hello, ▁hello and ▁w, or, ▁wor, ld, ▁world.
  EXPECT_EQ(tok->encode("hello world"), (std::vector<int32_t>{271, 276}));
  EXPECT_EQ(tok->encode("hello world", /*add_special=*/true), (std::vector<int32_t>{1, 271, 276}));
  // "▁held": he (score -1) then ld (-9); "▁he" and "held" are not pieces.
  EXPECT_EQ(tok->encode("held"), (std::vector<int32_t>{259, id("he"), id("ld")}));
  // 'é' is not a piece: byte fallback to <0xC3> <0xA9> (ids 3 + byte).
  EXPECT_EQ(tok->encode("héllo"),
            (std::vector<int32_t>{259, id("h"), 3 + 0xC3, 3 + 0xA9, id("ll"), id("o")}));
  // Control tokens in the text; the stretch after one gets its own dummy prefix.
  EXPECT_EQ(tok->encode("<s>hello</s>world", false, true), (std::vector<int32_t>{1, 271, 2, 276}));
  // Round trips.
  for (const std::string s : {"hello world", "held", "héllo wörld 😀", "  two  spaces", "x"}) {
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
  }
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 271, 276, 2}), "<s>hello world</s>");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{1, 271, 276, 2}, /*skip_special=*/true), "hello world");
}

TEST(TokenizerSentencePiece, ProtoRoundTrip) {
  const TokenizerSpec spec = tiny_sentencepiece_spec();
  TokenizerSpec read;
  read_sentencepiece_proto(sentencepiece_proto_from_spec(spec), "tiny.model", read);
  EXPECT_EQ(read.tokens, spec.tokens);
  EXPECT_EQ(read.types, spec.types);
  EXPECT_EQ(read.scores, spec.scores);
  EXPECT_EQ(read.add_space_prefix, true);
  EXPECT_EQ(read.unk_id, 0);
  EXPECT_EQ(read.bos_id, 1);
  EXPECT_EQ(read.eos_id, 2);

  // The same through a Hugging Face folder with a tokenizer.model.
  const std::string dir = test::temp_dir();
  write_file(dir + "/tokenizer.model", sentencepiece_proto_from_spec(spec));
  const auto tok = load_tokenizer(dir);
  EXPECT_EQ(tok->spec().model, TokenizerModel::sentencepiece);
  EXPECT_EQ(tok->encode("hello world", true), (std::vector<int32_t>{1, 271, 276}));

  // Without the dummy prefix "hello" has no leading "▁".
  TokenizerSpec no_prefix = spec;
  no_prefix.add_space_prefix = false;
  EXPECT_EQ(make_tokenizer(no_prefix)->encode("hello"), (std::vector<int32_t>{*tok->token_id("hello")}));

  write_file(dir + "/tokenizer.model", "\x0a\xff\xff\xff\x0f");
  const std::string message = error_of([&] { load_tokenizer(dir); });
  EXPECT_NE(message.find(dir + "/tokenizer.model"), std::string::npos) << message;
}

// ---- GGUF metadata, written by hand (no model needed) ---------------------------------------

// A GGUF v3 file with no tensors and the given metadata (values pre-encoded).
class GgufWriter {
 public:
  void string(const std::string& key, const std::string& v) { kv(key, 8); str(v); }
  void u32(const std::string& key, uint32_t v) { kv(key, 4); pod(v); }
  void boolean(const std::string& key, bool v) { kv(key, 7); pod(static_cast<uint8_t>(v)); }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    kv(key, 9);
    pod(uint32_t{8});
    pod(static_cast<uint64_t>(v.size()));
    for (const auto& s : v) str(s);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& v) {
    kv(key, 9);
    pod(uint32_t{5});
    pod(static_cast<uint64_t>(v.size()));
    for (int32_t x : v) pod(x);
  }
  void f32s(const std::string& key, const std::vector<float>& v) {
    kv(key, 9);
    pod(uint32_t{6});
    pod(static_cast<uint64_t>(v.size()));
    for (float x : v) pod(x);
  }
  std::string write(const std::string& path) const {
    std::string file = "GGUF";
    auto put = [&](auto v) { file.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(uint32_t{3});
    put(uint64_t{0});
    put(n_kv_);
    file += body_;
    while (file.size() % 32 != 0) file += '\0';
    write_file(path, file);
    return path;
  }

 private:
  template <class T>
  void pod(T v) { body_.append(reinterpret_cast<const char*>(&v), sizeof(v)); }
  void str(const std::string& s) {
    pod(static_cast<uint64_t>(s.size()));
    body_ += s;
  }
  void kv(const std::string& key, uint32_t type) {
    str(key);
    pod(type);
    ++n_kv_;
  }
  std::string body_;
  uint64_t n_kv_ = 0;
};

std::vector<int32_t> types_of(const TokenizerSpec& spec) {
  std::vector<int32_t> out;
  for (TokenType t : spec.types) out.push_back(static_cast<int32_t>(t));
  return out;
}

TEST(TokenizerGguf, LlamaVocabularyBecomesSentencePiece) {
  const TokenizerSpec tiny = tiny_sentencepiece_spec();
  GgufWriter w;
  w.string("general.architecture", "llama");
  w.string("tokenizer.ggml.model", "llama");
  w.strings("tokenizer.ggml.tokens", tiny.tokens);
  w.f32s("tokenizer.ggml.scores", tiny.scores);
  w.i32s("tokenizer.ggml.token_type", types_of(tiny));
  w.u32("tokenizer.ggml.bos_token_id", 1);
  w.u32("tokenizer.ggml.eos_token_id", 2);
  w.u32("tokenizer.ggml.unknown_token_id", 0);
  w.u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);  // "none"
  w.string("tokenizer.chat_template", "{{ bos_token }}[INST] ...");
  const std::string path = w.write(test::temp_dir() + "/tiny-llama.gguf");
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->spec().model, TokenizerModel::sentencepiece);
  EXPECT_TRUE(tok->spec().add_bos);            // llama.cpp's default for SentencePiece
  EXPECT_TRUE(tok->spec().add_space_prefix);   // likewise
  EXPECT_EQ(tok->spec().pad_id, -1);
  EXPECT_EQ(detect_chat_template(tok->spec()), ChatTemplate::mistral);
  EXPECT_EQ(tok->encode("hello world", true), (std::vector<int32_t>{1, 271, 276}));
  EXPECT_EQ(tok->decode(tok->encode("héllo wörld")), "héllo wörld");
}

TEST(TokenizerGguf, Errors) {
  const std::string dir = test::temp_dir();
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2");
    w.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
    w.i32s("tokenizer.ggml.token_type", {1, 1});
    const std::string path = w.write(dir + "/count.gguf");
    const std::string message = error_of([&] { load_tokenizer(path); });
    EXPECT_NE(message.find(path + ": tokenizer.ggml.tokens has 3 entries but tokenizer.ggml.token_type 2"),
              std::string::npos) << message;
  }
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2");
    w.string("tokenizer.ggml.pre", "mystery");
    w.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
    const std::string path = w.write(dir + "/pre.gguf");
    const std::string message = error_of([&] { load_tokenizer(path); });
    EXPECT_NE(message.find(path + ": unknown pre-tokenizer 'mystery'"), std::string::npos) << message;
  }
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2");
    w.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
    w.strings("tokenizer.ggml.merges", {"a b", "a c"});
    w.u32("tokenizer.ggml.eos_token_id", 3);
    std::string path = w.write(dir + "/eos.gguf");
    std::string message = error_of([&] { load_tokenizer(path); });
    EXPECT_NE(message.find(path + ": eos id 3 out of range [0, 3)"), std::string::npos) << message;
  }
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "gpt2");
    w.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
    w.strings("tokenizer.ggml.merges", {"a b", "a c"});
    const std::string path = w.write(dir + "/merge.gguf");
    const std::string message = error_of([&] { load_tokenizer(path); });
    EXPECT_NE(message.find(path + ": merge 1 'a c' names unknown piece 'c'"), std::string::npos) << message;
  }
  {
    GgufWriter w;
    w.string("tokenizer.ggml.model", "bert");
    w.strings("tokenizer.ggml.tokens", {"a"});
    const std::string path = w.write(dir + "/bert.gguf");
    const std::string message = error_of([&] { load_tokenizer(path); });
    EXPECT_NE(message.find(path + ": tokenizer.ggml.model 'bert' is not supported"), std::string::npos) << message;
  }
  {
    GgufWriter w;
    w.string("general.architecture", "llama");
    const std::string path = w.write(dir + "/none.gguf");
    const std::string message = error_of([&] { load_tokenizer(path); });
    EXPECT_NE(message.find(path + ": no tokenizer"), std::string::npos) << message;
  }
}

// ---- chat templates ---------------------------------------------------------------------------

TEST(ChatTemplates, ByName) {
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", " Hi "},
                                         {"assistant", "Hello."}, {"user", "Bye"}};
  EXPECT_EQ(apply_chat_template(ChatTemplate::chatml, chat),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(ChatTemplate::llama3, chat),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template(ChatTemplate::mistral, chat),
            "<s>[INST] Be brief.\n\n Hi  [/INST]Hello.</s>[INST] Bye [/INST]");
  const std::vector<ChatMessage> bad = {{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(apply_chat_template(ChatTemplate::mistral, bad), Error);
  EXPECT_THROW(apply_chat_template(ChatTemplate::none, chat), Error);
  EXPECT_EQ(parse_chat_template("llama3"), ChatTemplate::llama3);
  EXPECT_THROW(parse_chat_template("jinja"), Error);

  TokenizerSpec spec;
  spec.chat_template = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
                       "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>"
                       "system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}";
  EXPECT_EQ(detect_chat_template(spec), ChatTemplate::chatml);
  EXPECT_EQ(chat_options_for(spec).default_system, "You are Qwen.");
  spec.chat_template = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}";
  EXPECT_FALSE(chat_options_for(spec).insert_default_system);
  spec.chat_template = "{{ bos_token }}<|start_header_id|>";
  EXPECT_EQ(detect_chat_template(spec), ChatTemplate::llama3);
  spec.chat_template = "[INST]";
  EXPECT_EQ(detect_chat_template(spec), ChatTemplate::mistral);
  spec.chat_template.clear();
  spec.tokens = {"<|im_start|>"};
  EXPECT_EQ(detect_chat_template(spec), ChatTemplate::chatml);
}

}  // namespace
}  // namespace esa::text
