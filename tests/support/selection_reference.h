// Float64 brute forces and set comparisons shared by the selection and policy tests
// (tests/unit/test_selection.cc, test_<p>.cc): the max-pool, the top-k, and "the same top-k as
// the reference except where the reference ties the boundary".
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace esa::test {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

inline std::vector<double> ref_max_pool(const std::vector<double>& s, int64_t eps) {
  const int64_t n = int64_t(s.size());
  std::vector<double> out(s.size());
  for (int64_t j = 0; j < n; ++j) {
    double m = kNegInf;
    for (int64_t i = std::max<int64_t>(0, j - eps); i <= std::min(n - 1, j + eps); ++i) m = std::max(m, s[size_t(i)]);
    out[size_t(j)] = m;
  }
  return out;
}

// Full sort by (score desc, index asc), first k, sorted by index.
inline std::vector<int64_t> ref_top_k(const std::vector<double>& s, int64_t k) {
  std::vector<int64_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), int64_t(0));
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return s[size_t(a)] > s[size_t(b)]; });
  idx.resize(size_t(std::min<int64_t>(k, int64_t(s.size()))));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// The chosen middle tokens of a list: checks the initial tokens lead it and strips them.
inline std::vector<int64_t> middle_of(const std::vector<int64_t>& list, int64_t init_end) {
  EXPECT_GE(int64_t(list.size()), init_end);
  for (int64_t i = 0; i < init_end && i < int64_t(list.size()); ++i) EXPECT_EQ(list[size_t(i)], i);
  return std::vector<int64_t>(list.begin() + std::min<int64_t>(init_end, int64_t(list.size())), list.end());
}

// Same set as the reference, except where the reference scores tie the boundary within `tol`.
inline void expect_same_top_k(const std::vector<int64_t>& got, const std::vector<int64_t>& ref,
                       const std::vector<double>& ref_scores, int64_t offset, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  std::vector<double> sorted;
  for (int64_t r : ref) sorted.push_back(ref_scores[size_t(r - offset)]);
  const double kth = sorted.empty() ? 0.0 : *std::min_element(sorted.begin(), sorted.end());
  std::set<int64_t> g(got.begin(), got.end()), r(ref.begin(), ref.end());
  int64_t differ = 0;
  for (int64_t x : g) {
    if (r.count(x) != 0) continue;
    ++differ;
    EXPECT_LE(std::abs(ref_scores[size_t(x - offset)] - kth), tol)
        << what << ": token " << x << " chosen, not in the float64 top-k (score " << ref_scores[size_t(x - offset)]
        << ", k-th " << kth << ")";
  }
  if (differ > 0) std::printf("[ info     ] %s: %lld boundary ties resolved differently\n", what.c_str(), (long long)differ);
}

}  // namespace esa::test
