// make_suite, the per-case random stream and the essay haystack; see suite.h.
#include "tasks/suite.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "core/error.h"
#include "core/file_io.h"
#include "text/byte_mapping.h"

namespace esa::tasks {

std::vector<std::string> suite_names() { return {"passkey", "niah", "multi-niah", "kv"}; }

std::unique_ptr<Suite> make_suite(const text::Tokenizer& tok, const SuiteOptions& o) {
  if (o.name == "passkey") return make_passkey_suite(tok, o);
  if (o.name == "niah") return make_niah_suite(tok, o);
  if (o.name == "multi-niah") return make_multi_niah_suite(tok, o);
  if (o.name == "kv") return make_kv_suite(tok, o);
  ESA_FAIL("unknown suite '{}' (expected passkey, niah, multi-niah or kv)", o.name);
}

std::mt19937_64 case_rng(uint64_t seed, const std::string& suite, int64_t length, double depth, int64_t sample) {
  uint32_t name_hash = 2166136261u;  // FNV-1a: stable across platforms, unlike std::hash
  for (unsigned char c : suite) name_hash = (name_hash ^ c) * 16777619u;
  std::seed_seq seq{uint32_t(seed),   uint32_t(seed >> 32), name_hash, uint32_t(length), uint32_t(length >> 32),
                    uint32_t(std::llround(depth * 1e6)), uint32_t(sample)};
  return std::mt19937_64(seq);
}

EssayHaystack::EssayHaystack(const text::Tokenizer& tok, const std::string& path) {
  const std::string text = read_file(path);
  ESA_CHECK(!text.empty(), "{}: the haystack text is empty", path);
  text::check_utf8(text, path);
  ids_ = tok.encode(text, false, false);
  // Sentence ends: after a token whose text, trailing white space aside, ends in . ! or ?
  for (size_t i = 0; i < ids_.size(); ++i) {
    std::string piece = tok.decode(std::vector<int32_t>{ids_[i]});
    while (!piece.empty() && std::isspace(static_cast<unsigned char>(piece.back()))) piece.pop_back();
    if (!piece.empty() && (piece.back() == '.' || piece.back() == '!' || piece.back() == '?')) {
      ends_.push_back(int64_t(i) + 1);
    }
  }
  ESA_CHECK(!ends_.empty(), "{}: the haystack text has no sentence end", path);
}

Filler EssayHaystack::take(int64_t n, int64_t sentence) const {
  // Sentence k starts after end k-1 (sentence 0 at the file's start); the stream is the file
  // rotated to begin there, repeated.
  const int64_t k = sentence % sentences();
  const int64_t start = k == 0 ? 0 : ends_[size_t(k - 1)];
  const int64_t size = int64_t(ids_.size());
  std::vector<int64_t> rotated_ends;  // sentence ends within one rotated copy, in (0, size]
  for (int64_t e : ends_) rotated_ends.push_back(e > start ? e - start : e - start + size);
  std::sort(rotated_ends.begin(), rotated_ends.end());
  Filler f;
  f.boundaries.push_back(0);
  while (int64_t(f.ids.size()) < n) {
    const int64_t base = int64_t(f.ids.size());
    for (int64_t e : rotated_ends) f.boundaries.push_back(base + e);
    f.ids.insert(f.ids.end(), ids_.begin() + start, ids_.end());
    f.ids.insert(f.ids.end(), ids_.begin(), ids_.begin() + start);
  }
  f.boundaries.erase(std::unique(f.boundaries.begin(), f.boundaries.end()), f.boundaries.end());
  return f;
}

}  // namespace esa::tasks
