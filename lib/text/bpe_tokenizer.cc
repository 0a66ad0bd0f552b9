// Byte-level BPE tokenizer (see bpe_tokenizer.h).
#include "text/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "text/added_tokens.h"
#include "text/byte_mapping.h"
#include "text/pretokenizer.h"

namespace esa::text {
namespace {

// Merge ranks keyed by the pair of ids: open addressing, linear probing.
class MergeTable {
 public:
  struct Merge {
    int32_t rank = -1;
    int32_t id = -1;  // the merged token
  };

  explicit MergeTable(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  // A later duplicate overwrites an earlier one, as tokenizers' HashMap collect does.
  void insert(int32_t left, int32_t right, Merge merge) {
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty || slots_[i].key == key) {
        slots_[i].key = key;
        slots_[i].merge = merge;
        return;
      }
    }
  }
  const Merge* find(int32_t left, int32_t right) const {
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge;
  };
  static uint64_t make_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(TokenizerSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override;
  const std::string& piece(int32_t id) const override;
  std::optional<int32_t> token_id(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(spec_.tokens.size()); }
  const TokenizerSpec& spec() const override { return spec_; }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  TokenizerSpec spec_;
  PreTokenizer pre_;
  PieceMap piece_to_id_;
  std::array<int32_t, 256> byte_id_{};  // raw byte -> id of its mapped character, -1 if absent
  MergeTable merges_;
  AddedTokens added_;
  std::vector<std::string> id_bytes_;   // id -> decoded bytes
  std::vector<uint8_t> is_control_;     // id -> skipped by decode(skip_special)

  // Word cache: raw word bytes -> ids. Bounded; cleared when full.
  static constexpr size_t kCacheLimit = 1 << 18;
  static constexpr size_t kCacheMaxWord = 256;  // longer words are rare and costly to keep
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

BpeTokenizer::BpeTokenizer(TokenizerSpec spec)
    : spec_(std::move(spec)),
      pre_(parse_pre_tokenizer(spec_.pre, spec_.source)),
      merges_(spec_.merges.size()) {
  const auto n = static_cast<int32_t>(spec_.tokens.size());
  piece_to_id_.reserve(spec_.tokens.size());
  for (int32_t id = 0; id < n; ++id) piece_to_id_.emplace(spec_.tokens[id], id);

  const ByteMapping& mapping = byte_mapping();
  for (int b = 0; b < 256; ++b) {
    auto it = piece_to_id_.find(mapping.encode_byte(static_cast<uint8_t>(b)));
    byte_id_[b] = it == piece_to_id_.end() ? -1 : it->second;
  }

  auto lookup = [&](std::string_view p, size_t rank, std::string_view merge) {
    auto it = piece_to_id_.find(p);
    ESA_CHECK(it != piece_to_id_.end(), "{}: merge {} '{}' names unknown piece '{}'", spec_.source,
              rank, merge, p);
    return it->second;
  };
  std::string joined;
  for (size_t rank = 0; rank < spec_.merges.size(); ++rank) {
    const std::string& m = spec_.merges[rank];
    const size_t space = m.find(' ', 1);
    ESA_CHECK(space != std::string::npos && space + 1 < m.size() &&
                  m.find(' ', space + 1) == std::string::npos,
              "{}: merge {} '{}' is not two pieces separated by one space", spec_.source, rank, m);
    const std::string_view left = std::string_view(m).substr(0, space);
    const std::string_view right = std::string_view(m).substr(space + 1);
    joined.assign(left);
    joined += right;
    const int32_t left_id = lookup(left, rank, m);
    const int32_t right_id = lookup(right, rank, m);
    const int32_t merged_id = lookup(joined, rank, m);
    merges_.insert(left_id, right_id, {static_cast<int32_t>(rank), merged_id});
  }

  std::vector<AddedTokens::Token> added;
  id_bytes_.resize(n);
  is_control_.assign(n, 0);
  for (int32_t id = 0; id < n; ++id) {
    const TokenType type = spec_.types.empty() ? TokenType::normal : spec_.types[id];
    if (type == TokenType::control || type == TokenType::unknown) is_control_[id] = 1;
    if (type == TokenType::control || type == TokenType::unknown || type == TokenType::user_defined) {
      added.push_back({spec_.tokens[id], id, type != TokenType::user_defined});
    }
    if (!mapping.decode(spec_.tokens[id], id_bytes_[id])) id_bytes_[id] = spec_.tokens[id];
  }
  added_ = AddedTokens(std::move(added));
  cache_.reserve(1 << 14);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special,
                                          bool parse_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special && spec_.add_bos && spec_.bos_id >= 0) ids.push_back(spec_.bos_id);
  thread_local std::vector<AddedTokens::Fragment> fragments;
  thread_local std::vector<std::string_view> words;
  fragments.clear();
  added_.split(text, parse_special, fragments);
  for (const auto& fragment : fragments) {
    if (fragment.id >= 0) {
      ids.push_back(fragment.id);
      continue;
    }
    words.clear();
    pre_.split(fragment.text, words);
    for (std::string_view word : words) encode_word(word, ids);
  }
  if (add_special && spec_.add_eos && spec_.eos_id >= 0) ids.push_back(spec_.eos_id);
  return ids;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    const int32_t id = byte_id_[static_cast<unsigned char>(word[0])];
    if (id >= 0) out.push_back(id);
    else if (spec_.unk_id >= 0) out.push_back(spec_.unk_id);
    return;
  }
  if (spec_.ignore_merges) {
    std::string mapped;
    for (unsigned char c : word) mapped += byte_mapping().encode_byte(c);
    if (auto it = piece_to_id_.find(mapped); it != piece_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > kCacheMaxWord) {
    merge_word(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  std::vector<int32_t> result(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(std::string(word), std::move(result));
}

// tokenizers' Word::merge_all: a heap of (rank, position) over the adjacent pairs; stale
// entries (a side already merged away) are skipped when popped.
void BpeTokenizer::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  struct Candidate {
    int32_t rank, pos, id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (unsigned char c : word) {
    int32_t id = byte_id_[c];
    if (id < 0) id = spec_.unk_id;
    if (id < 0) continue;  // no such byte and no unk: dropped, as tokenizers does
    const auto pos = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, pos - 1, -1});
    if (pos > 0) symbols[pos - 1].next = pos;
  }
  const auto greater = std::greater<Candidate>();
  auto push_pair = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const auto* m = merges_.find(symbols[pos].id, symbols[next].id)) {
      heap.push_back({m->rank, pos, m->id});
      std::push_heap(heap.begin(), heap.end(), greater);
    }
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push_pair(pos);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    const int32_t right_pos = left.next;
    const auto* m = merges_.find(left.id, symbols[right_pos].id);
    if (m == nullptr || m->id != top.id) continue;  // stale
    left.id = top.id;
    left.next = symbols[right_pos].next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    symbols[right_pos].id = -1;
    push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t pos = symbols.empty() ? -1 : 0; pos >= 0; pos = symbols[pos].next) {
    out.push_back(symbols[pos].id);
  }
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    ESA_CHECK(id >= 0 && id < vocab_size(), "{}: token id {} out of range [0, {})", spec_.source,
              id, vocab_size());
    if (skip_special && is_control_[id]) continue;
    out += id_bytes_[id];
  }
  return out;
}

const std::string& BpeTokenizer::piece(int32_t id) const {
  ESA_CHECK(id >= 0 && id < vocab_size(), "{}: token id {} out of range [0, {})", spec_.source, id,
            vocab_size());
  return spec_.tokens[id];
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view piece) const {
  auto it = piece_to_id_.find(piece);
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerSpec spec) {
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

}  // namespace esa::text
