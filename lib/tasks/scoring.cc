// Scoring rules; see scoring.h.
#include "tasks/scoring.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace esa::tasks {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

double score_passkey(const std::string& generated, const std::string& key) {
  size_t i = 0;
  while (i < generated.size() && !std::isdigit(static_cast<unsigned char>(generated[i]))) ++i;
  size_t j = i;
  while (j < generated.size() && std::isdigit(static_cast<unsigned char>(generated[j]))) ++j;
  return i < generated.size() && generated.substr(i, j - i) == key ? 1.0 : 0.0;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w += char(std::tolower(static_cast<unsigned char>(c)));
    } else if (!w.empty()) {
      out.push_back(std::move(w));
      w.clear();
    }
  }
  if (!w.empty()) out.push_back(std::move(w));
  return out;
}

NiahScore score_niah(const std::string& generated, const std::string& reference) {
  static const std::set<std::string> stop = {"a", "an", "the", "and", "or", "in", "on", "of", "to", "is", "at", "for",
                                              "with", "it", "by", "be"};
  const std::vector<std::string> got = words_of(generated), want = words_of(reference);
  const std::set<std::string> got_set(got.begin(), got.end());
  int64_t keys = 0, found = 0;
  for (const std::string& w : want) {
    if (stop.count(w) != 0) continue;
    ++keys;
    found += got_set.count(w) != 0 ? 1 : 0;
  }
  NiahScore s;
  s.key_words = keys > 0 ? double(found) / double(keys) : 0.0;
  s.exact = !want.empty() && std::search(got.begin(), got.end(), want.begin(), want.end()) != got.end();
  return s;
}

double string_match_all(const std::string& generated, const std::vector<std::string>& references) {
  if (references.empty()) return 0.0;
  const std::string g = lower(generated);
  int64_t found = 0;
  for (const std::string& r : references) found += g.find(lower(r)) != std::string::npos ? 1 : 0;
  return double(found) / double(references.size());
}

double score_kv(const std::string& generated, const std::string& value) {
  std::string g = generated;
  for (char& c : g) {
    if (std::string_view("\n:\"'.,?!{}").find(c) != std::string_view::npos) c = ' ';
  }
  size_t i = 0;
  while (i < g.size()) {
    while (i < g.size() && std::isspace(static_cast<unsigned char>(g[i]))) ++i;
    size_t j = i;
    while (j < g.size() && !std::isspace(static_cast<unsigned char>(g[j]))) ++j;
    if (j > i && g.compare(i, j - i, value) == 0 && j - i == value.size()) return 1.0;
    i = j;
  }
  return 0.0;
}

}  // namespace esa::tasks
