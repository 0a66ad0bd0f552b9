// SentencePiece tokenizer and a hand-written ModelProto encoder/decoder (see the header).
//
// sentencepiece_model.proto fields used (proto2):
//   ModelProto      1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec
//   SentencePiece   1: string piece, 2: float score, 3: Type (NORMAL 1, UNKNOWN 2, CONTROL 3,
//                   USER_DEFINED 4, UNUSED 5, BYTE 6; default NORMAL) -- same numbers as GGUF
//   TrainerSpec     3: model_type (UNIGRAM 1, BPE 2), 4: vocab_size, 35: byte_fallback,
//                   40: unk_id, 41: bos_id, 42: eos_id, 43: pad_id
//   NormalizerSpec  1: name, 3: add_dummy_prefix (default true), 4: remove_extra_whitespaces,
//                   5: escape_whitespaces
#include "text/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "text/added_tokens.h"

namespace esa::text {
namespace {

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_tag(std::string& out, uint32_t field, Wire wire) { put_varint(out, (field << 3) | wire); }
void put_int(std::string& out, uint32_t field, int64_t v) {
  put_tag(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));  // negative int32: ten bytes, as protobuf writes it
}
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_tag(out, field, kLen);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_float(std::string& out, uint32_t field, float v) {
  put_tag(out, field, kFixed32);
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xFF);
}

// Minimal wire-format reader: visits the fields of one message.
class WireReader {
 public:
  WireReader(std::string_view data, const std::string& source) : data_(data), source_(source) {}
  struct Field {
    uint32_t number = 0;
    Wire wire = kVarint;
    uint64_t value = 0;      // varint, fixed32, fixed64
    std::string_view bytes;  // length-delimited
  };
  bool next(Field& f) {
    if (pos_ >= data_.size()) return false;
    const uint64_t tag = varint();
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire = static_cast<Wire>(tag & 7);
    switch (f.wire) {
      case kVarint: f.value = varint(); break;
      case kFixed64: f.value = fixed(8); break;
      case kFixed32: f.value = fixed(4); break;
      case kLen: {
        const uint64_t n = varint();
        ESA_CHECK(n <= data_.size() - pos_, "{}: corrupt SentencePiece model (field {} length {} "
                  "runs past the end)", source_, f.number, n);
        f.bytes = data_.substr(pos_, n);
        pos_ += n;
        break;
      }
      default: ESA_FAIL("{}: corrupt SentencePiece model (wire type {})", source_, tag & 7);
    }
    return true;
  }

 private:
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      ESA_CHECK(pos_ < data_.size(), "{}: corrupt SentencePiece model (truncated varint)", source_);
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    ESA_FAIL("{}: corrupt SentencePiece model (varint too long)", source_);
  }
  uint64_t fixed(size_t n) {
    ESA_CHECK(n <= data_.size() - pos_, "{}: corrupt SentencePiece model (truncated)", source_);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }
  std::string_view data_;
  const std::string& source_;
  size_t pos_ = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(TokenizerSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override;
  const std::string& piece(int32_t id) const override;
  std::optional<int32_t> token_id(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(spec_.tokens.size()); }
  const TokenizerSpec& spec() const override { return spec_; }

 private:
  TokenType type(int32_t id) const { return spec_.types.empty() ? TokenType::normal : spec_.types[id]; }

  TokenizerSpec spec_;
  sentencepiece::SentencePieceProcessor sp_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> piece_to_id_;
  AddedTokens added_;
};

SentencePieceTokenizer::SentencePieceTokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  if (spec_.sentencepiece_proto.empty()) spec_.sentencepiece_proto = sentencepiece_proto_from_spec(spec_);
  const auto status = sp_.LoadFromSerializedProto(spec_.sentencepiece_proto);
  ESA_CHECK(status.ok(), "{}: SentencePiece rejects the model: {}", spec_.source, status.ToString());
  ESA_CHECK(sp_.GetPieceSize() == vocab_size(), "{}: SentencePiece model has {} pieces, vocabulary {}",
            spec_.source, sp_.GetPieceSize(), vocab_size());
  std::vector<AddedTokens::Token> added;
  for (int32_t id = 0; id < vocab_size(); ++id) {
    piece_to_id_.emplace(spec_.tokens[id], id);
    const TokenType t = type(id);
    if (t == TokenType::control || t == TokenType::unknown || t == TokenType::user_defined) {
      added.push_back({spec_.tokens[id], id, t != TokenType::user_defined});
    }
  }
  added_ = AddedTokens(std::move(added));
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text, bool add_special,
                                                    bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_special && spec_.add_bos && spec_.bos_id >= 0) ids.push_back(spec_.bos_id);
  std::vector<AddedTokens::Fragment> fragments;
  added_.split(text, parse_special, fragments);
  std::vector<int> piece_ids;
  for (const auto& fragment : fragments) {
    if (fragment.id >= 0) {
      ids.push_back(fragment.id);
      continue;
    }
    const auto status = sp_.Encode(fragment.text, &piece_ids);
    ESA_CHECK(status.ok(), "{}: SentencePiece encode failed: {}", spec_.source, status.ToString());
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  }
  if (add_special && spec_.add_eos && spec_.eos_id >= 0) ids.push_back(spec_.eos_id);
  return ids;
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out, text;
  std::vector<int> run;
  auto flush = [&] {
    if (run.empty()) return;
    const auto status = sp_.Decode(run, &text);
    ESA_CHECK(status.ok(), "{}: SentencePiece decode failed: {}", spec_.source, status.ToString());
    out += text;
    run.clear();
  };
  for (int32_t id : ids) {
    ESA_CHECK(id >= 0 && id < vocab_size(), "{}: token id {} out of range [0, {})", spec_.source,
              id, vocab_size());
    if (type(id) == TokenType::control) {
      if (skip_special) continue;
      flush();
      out += spec_.tokens[id];
      continue;
    }
    run.push_back(id);
  }
  flush();
  return out;
}

const std::string& SentencePieceTokenizer::piece(int32_t id) const {
  ESA_CHECK(id >= 0 && id < vocab_size(), "{}: token id {} out of range [0, {})", spec_.source, id,
            vocab_size());
  return spec_.tokens[id];
}

std::optional<int32_t> SentencePieceTokenizer::token_id(std::string_view piece) const {
  auto it = piece_to_id_.find(piece);
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

}  // namespace

std::string sentencepiece_proto_from_spec(const TokenizerSpec& spec) {
  const size_t n = spec.tokens.size();
  std::string model, message;
  bool has_unknown = false, has_bytes = false;
  for (size_t id = 0; id < n; ++id) {
    const TokenType t = spec.types.empty() ? TokenType::normal : spec.types[id];
    has_unknown |= t == TokenType::unknown;
    has_bytes |= t == TokenType::byte;
  }
  for (size_t id = 0; id < n; ++id) {
    TokenType t = spec.types.empty() ? TokenType::normal : spec.types[id];
    if (t == TokenType::undefined) t = TokenType::normal;
    // SentencePiece needs exactly one unknown piece; take unk_id's when no type says so.
    if (!has_unknown && static_cast<int32_t>(id) == spec.unk_id) t = TokenType::unknown;
    message.clear();
    put_bytes(message, 1, spec.tokens[id]);
    put_float(message, 2, spec.scores.empty() ? 0.0f : spec.scores[id]);
    put_int(message, 3, static_cast<int32_t>(t));
    put_bytes(model, 1, message);
  }
  message.clear();
  put_int(message, 3, 2);  // model_type = BPE
  put_int(message, 4, static_cast<int64_t>(n));
  put_int(message, 35, has_bytes ? 1 : 0);  // byte_fallback
  put_int(message, 40, spec.unk_id);
  put_int(message, 41, spec.bos_id);
  put_int(message, 42, spec.eos_id);
  put_int(message, 43, spec.pad_id);
  put_bytes(model, 2, message);
  message.clear();
  put_bytes(message, 1, "identity");
  put_int(message, 3, spec.add_space_prefix ? 1 : 0);
  put_int(message, 4, 0);  // remove_extra_whitespaces
  put_int(message, 5, 1);  // escape_whitespaces
  put_bytes(model, 3, message);
  return model;
}

void read_sentencepiece_proto(const std::string& proto, const std::string& source,
                              TokenizerSpec& spec) {
  spec.model = TokenizerModel::sentencepiece;
  spec.sentencepiece_proto = proto;
  spec.tokens.clear();
  spec.types.clear();
  spec.scores.clear();
  spec.add_space_prefix = true;
  WireReader model(proto, source);
  WireReader::Field field, sub;
  while (model.next(field)) {
    if (field.number == 1 && field.wire == kLen) {
      std::string piece;
      float score = 0.0f;
      int32_t type = 1;
      WireReader p(field.bytes, source);
      while (p.next(sub)) {
        if (sub.number == 1 && sub.wire == kLen) piece = std::string(sub.bytes);
        if (sub.number == 2 && sub.wire == kFixed32) {
          const auto bits = static_cast<uint32_t>(sub.value);
          std::memcpy(&score, &bits, 4);
        }
        if (sub.number == 3 && sub.wire == kVarint) type = static_cast<int32_t>(sub.value);
      }
      ESA_CHECK(type >= 1 && type <= 6, "{}: piece {} '{}' has unknown type {}", source,
                spec.tokens.size(), piece, type);
      spec.tokens.push_back(std::move(piece));
      spec.scores.push_back(score);
      spec.types.push_back(static_cast<TokenType>(type));
    } else if (field.number == 3 && field.wire == kLen) {
      WireReader p(field.bytes, source);
      while (p.next(sub)) {
        if (sub.number == 3 && sub.wire == kVarint) spec.add_space_prefix = sub.value != 0;
      }
    }
  }
  ESA_CHECK(!spec.tokens.empty(), "{}: SentencePiece model has no pieces", source);
  sentencepiece::SentencePieceProcessor sp;
  const auto status = sp.LoadFromSerializedProto(proto);
  ESA_CHECK(status.ok(), "{}: SentencePiece rejects the model: {}", source, status.ToString());
  spec.unk_id = sp.unk_id();
  spec.bos_id = sp.bos_id();
  spec.eos_id = sp.eos_id();
  spec.pad_id = sp.pad_id();
}

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(TokenizerSpec spec) {
  return std::make_unique<SentencePieceTokenizer>(std::move(spec));
}

}  // namespace esa::text
