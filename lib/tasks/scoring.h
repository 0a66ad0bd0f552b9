// Scoring of generated answers, one rule per suite, each as in the benchmark it comes from.
#pragma once

#include <string>
#include <vector>

namespace esa::tasks {

/// passkey (InfiniteBench): 1 when the first integer (a maximal run of digits) in `generated`
/// equals `key`, else 0.
double score_passkey(const std::string& generated, const std::string& key);

struct NiahScore {
  double key_words = 0;  // fraction of the reference's key words (not stop words) found as words
  bool exact = false;    // the reference's words appear in order, contiguous (case, punctuation ignored)
};
/// niah: `reference` is the needle's answer ("eat a sandwich and sit in Dolores Park on a sunny day").
NiahScore score_niah(const std::string& generated, const std::string& reference);

/// multi-niah (RULER string_match_all): the fraction of `references` that occur in `generated`,
/// case-insensitive substring match.
double string_match_all(const std::string& generated, const std::vector<std::string>& references);

/// kv (InfiniteBench Retrieve.KV): 1 when `value` is one of the words of `generated` once quotes,
/// colons, braces and sentence punctuation are read as spaces, else 0.
double score_kv(const std::string& generated, const std::string& value);

/// Lower-case words of letters and digits (everything else separates words).
std::vector<std::string> words_of(const std::string& text);

}  // namespace esa::tasks
