// The CPU ops (linear, rms_norm, swiglu, rope, attention) against independent float64
// references written here, on fresh random inputs at boundary shapes; RoPE tables and the
// rotate_half path against transformers (fixture: scripts/reference/rope_fixture.py).
//
// Every comparison is norm-wise (||got - ref|| / ||ref||) AND element-wise
// (|got - ref| <= atol + rtol * |ref|, atol scaled to the magnitude of the data); NaN always
// fails; infinities must match exactly. Outputs are pre-filled with NaN so an element the op
// forgets to write fails. Measured maxima are printed per test. Seeds print; ESA_TEST_SEED
// overrides them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "model/config.h"
#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "support/test_support.h"

namespace esa {
namespace {

using Json = nlohmann::json;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

// ---- comparison ----------------------------------------------------------------------------

struct Tol {
  double atol;      // absolute floor, already scaled to the data's magnitude by the caller
  double rtol;      // relative to |ref| per element
  double norm_tol;  // bound on ||got - ref||_2 / ||ref||_2
};

struct Compared {
  bool ok = true;
  std::string why;
  double norm_rel = 0.0;   // ||got - ref|| / ||ref||
  double max_abs = 0.0;    // max |got - ref|
  double max_ratio = 0.0;  // max |got - ref| / (atol + rtol |ref|): <= 1 passes
};

Compared compare(const float* got, const std::vector<double>& ref, const Tol& tol) {
  Compared c;
  double d2 = 0.0, r2 = 0.0;
  int64_t worst = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (std::isnan(g) || std::isnan(r)) {
      c.ok = false;
      c.why = "NaN at element " + std::to_string(i) + " (got " + std::to_string(g) + ", ref " + std::to_string(r) + ")";
      c.max_ratio = kInf;
      return c;
    }
    if (std::isinf(r) || std::isinf(g)) {
      if (g != r) {
        c.ok = false;
        c.why = "infinity mismatch at element " + std::to_string(i) + " (got " + std::to_string(g) + ", ref " +
                std::to_string(r) + ")";
        c.max_ratio = kInf;
        return c;
      }
      continue;
    }
    const double d = std::abs(g - r);
    d2 += d * d;
    r2 += r * r;
    c.max_abs = std::max(c.max_abs, d);
    const double ratio = d / (tol.atol + tol.rtol * std::abs(r));
    if (worst < 0 || ratio > c.max_ratio) {
      c.max_ratio = ratio;
      worst = int64_t(i);
    }
  }
  // An all-zero reference has no scale: the difference is then judged against atol.
  c.norm_rel = r2 > 0.0 ? std::sqrt(d2 / r2) : std::sqrt(d2) / tol.atol * tol.norm_tol;
  char buf[256];
  if (c.max_ratio > 1.0) {
    c.ok = false;
    std::snprintf(buf, sizeof buf, "element %lld: got %.9g, ref %.9g, |d| %.3g > atol %.3g + rtol %.3g * |ref|",
                  static_cast<long long>(worst), double(got[worst]), ref[size_t(worst)],
                  std::abs(double(got[worst]) - ref[size_t(worst)]), tol.atol, tol.rtol);
    c.why = buf;
  } else if (c.norm_rel > tol.norm_tol) {
    c.ok = false;
    std::snprintf(buf, sizeof buf, "norm-wise relative error %.3g > %.3g", c.norm_rel, tol.norm_tol);
    c.why = buf;
  }
  return c;
}

/// Keeps the worst errors of one test and prints them when the test ends.
class ErrorLog {
 public:
  explicit ErrorLog(std::string name) : name_(std::move(name)) {}
  ~ErrorLog() {
    if (count_ > 0) {
      std::printf("[ errors   ] %s: %d comparisons, max norm-wise rel %.3g, max |d| %.3g, max |d|/(atol+rtol|ref|) %.3g\n",
                  name_.c_str(), count_, norm_rel_, max_abs_, max_ratio_);
    }
  }
  void add(const Compared& c) {
    ++count_;
    if (std::isfinite(c.norm_rel)) norm_rel_ = std::max(norm_rel_, c.norm_rel);
    max_abs_ = std::max(max_abs_, c.max_abs);
    if (std::isfinite(c.max_ratio)) max_ratio_ = std::max(max_ratio_, c.max_ratio);
  }

 private:
  std::string name_;
  int count_ = 0;
  double norm_rel_ = 0.0, max_abs_ = 0.0, max_ratio_ = 0.0;
};

#define EXPECT_CLOSE(log, got_ptr, ref_vec, tol)                                         \
  do {                                                                                    \
    ASSERT_NE((got_ptr), nullptr);                                                        \
    const Compared cmp_ = compare((got_ptr), (ref_vec), (tol));                           \
    (log).add(cmp_);                                                                      \
    EXPECT_TRUE(cmp_.ok) << cmp_.why << " (norm-wise rel " << cmp_.norm_rel << ")";     \
  } while (0)

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}
double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, double(std::abs(x)));
  return m;
}

// ---- random data ---------------------------------------------------------------------------

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  std::vector<float> normal(size_t n, double stddev = 1.0) {
    std::normal_distribution<double> d(0.0, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = float(d(gen_));
    return v;
  }
  std::vector<float> uniform(size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = float(d(gen_));
    return v;
  }
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen_); }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
};

Tensor make(std::vector<int64_t> shape, std::vector<float> values) { return Tensor(std::move(shape), std::move(values)); }
Tensor nan_filled(std::vector<int64_t> shape) {
  Tensor t(shape);
  std::fill(t.data(), t.data() + t.numel(), kNaNf);
  return t;
}

// ---- the comparator itself must be able to fail ------------------------------------------

TEST(OpsCompare, CatchesWhatItShould) {
  std::vector<double> ref = {1.0, -2.0, 3.0, 0.0, 1e-3};
  std::vector<float> got(ref.begin(), ref.end());
  const Tol tol{1e-6, 1e-5, 1e-5};
  EXPECT_TRUE(compare(got.data(), ref, tol).ok);
  auto bad = got;
  bad[1] = -2.0f * (1.0f + 1e-4f);  // one element off by 1e-4 relative: element-wise fails
  EXPECT_FALSE(compare(bad.data(), ref, tol).ok);
  bad = got;
  bad[3] = 2e-6f;  // a zero reference is judged by atol
  EXPECT_FALSE(compare(bad.data(), ref, tol).ok);
  bad = got;
  bad[4] = kNaNf;  // NaN always fails
  EXPECT_FALSE(compare(bad.data(), ref, tol).ok);
  bad = got;
  bad[0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(compare(bad.data(), ref, tol).ok);
  // Every element within rtol but all biased the same way: the norm-wise bound catches it.
  for (auto& x : bad = got) x *= 1.0f + 9e-6f;
  EXPECT_FALSE(compare(bad.data(), ref, Tol{1e-6, 1e-5, 5e-6}).ok);
  // NaN in the reference fails too (a broken reference must not pass silently).
  std::vector<double> nan_ref = ref;
  nan_ref[2] = std::nan("");
  EXPECT_FALSE(compare(got.data(), nan_ref, tol).ok);
  // -inf must match -inf.
  std::vector<double> inf_ref = {-kInf};
  float minus_inf = -std::numeric_limits<float>::infinity(), zero = 0.0f;
  EXPECT_TRUE(compare(&minus_inf, inf_ref, tol).ok);
  EXPECT_FALSE(compare(&zero, inf_ref, tol).ok);
}

// ---- linear --------------------------------------------------------------------------------

std::vector<double> linear_ref(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* b,
                               int64_t T, int64_t in, int64_t out) {
  std::vector<double> y(size_t(T * out));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b != nullptr ? double((*b)[size_t(o)]) : 0.0;
      for (int64_t k = 0; k < in; ++k) s += double(x[size_t(t * in + k)]) * double(w[size_t(o * in + k)]);
      y[size_t(t * out + o)] = s;
    }
  }
  return y;
}

TEST(OpsLinear, MatchesFloat64Reference) {
  Rng rng(test::test_seed(101));
  ErrorLog log("linear");
  for (int64_t T : {1, 2, 31, 32, 33, 100}) {
    for (int64_t in : {1, 7, 64, 65, 576}) {
      for (int64_t out : {1, 7, 64, 65, 576}) {
        for (bool with_bias : {false, true}) {
          SCOPED_TRACE(testing::Message() << "T=" << T << " in=" << in << " out=" << out << " bias=" << with_bias);
          std::vector<float> x = rng.normal(size_t(T * in));
          std::vector<float> w = rng.normal(size_t(out * in), 1.0 / std::sqrt(double(in)));
          std::vector<float> b = rng.normal(size_t(out), 0.5);
          const Tensor X = make({T, in}, x), W = make({out, in}, w), B = make({out}, b);
          Tensor Y = nan_filled({T, out});  // right shape: the op must overwrite every element
          ops::linear(X.view(), W.view(), with_bias ? B.view() : TensorView{}, Y);
          ASSERT_EQ(Y.shape(), (std::vector<int64_t>{T, out}));
          const auto ref = linear_ref(x, w, with_bias ? &b : nullptr, T, in, out);
          // float32 dot products of length `in`: rounding grows like sqrt(in) * eps * sum|x w|;
          // the floor is scaled to the output's magnitude.
          const double scale = std::max(max_abs(ref), 1e-30);
          EXPECT_CLOSE(log, Y.data(), ref, (Tol{2e-6 * scale, 1e-5, 1e-5}));
        }
      }
    }
  }
}

TEST(OpsLinear, ResizesOutput) {
  Rng rng(test::test_seed(102));
  const Tensor X = make({3, 5}, rng.normal(15)), W = make({4, 5}, rng.normal(20));
  Tensor Y({7, 7});  // wrong shape: replaced
  ops::linear(X.view(), W.view(), TensorView{}, Y);
  EXPECT_EQ(Y.shape(), (std::vector<int64_t>{3, 4}));
}

TEST(OpsLinear, RejectsBadShapes) {
  const Tensor X({3, 5}), W({4, 5}), W_bad({4, 6}), B_bad({5}), B_2d({1, 4}), X1({5}), W3({1, 4, 5});
  Tensor Y;
  EXPECT_THROW(ops::linear(X.view(), W_bad.view(), TensorView{}, Y), Error);  // inner dimension
  EXPECT_THROW(ops::linear(X.view(), W.view(), B_bad.view(), Y), Error);      // bias length
  EXPECT_THROW(ops::linear(X.view(), W.view(), B_2d.view(), Y), Error);       // bias rank
  EXPECT_THROW(ops::linear(X1.view(), W.view(), TensorView{}, Y), Error);     // x rank
  EXPECT_THROW(ops::linear(X.view(), W3.view(), TensorView{}, Y), Error);     // w rank
}

// ---- rms_norm ------------------------------------------------------------------------------

std::vector<double> rms_norm_ref(const std::vector<float>& x, const std::vector<float>& w, double eps, int64_t T,
                                 int64_t H) {
  std::vector<double> y(size_t(T * H));
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0.0;
    for (int64_t c = 0; c < H; ++c) ss += double(x[size_t(t * H + c)]) * double(x[size_t(t * H + c)]);
    const double inv = 1.0 / std::sqrt(ss / double(H) + eps);
    for (int64_t c = 0; c < H; ++c) y[size_t(t * H + c)] = double(x[size_t(t * H + c)]) * inv * double(w[size_t(c)]);
  }
  return y;
}

TEST(OpsRmsNorm, MatchesFloat64Reference) {
  Rng rng(test::test_seed(201));
  ErrorLog log("rms_norm");
  // Row magnitudes: ordinary, tiny (eps dominates), large enough that float32 x^2 would
  // overflow (1e20, 1e30), and an all-zero row.
  const std::vector<double> magnitudes = {1.0, 3e-3, 1e-20, 1e4, 1e20, 1e30, 0.0};
  for (int64_t H : {1, 7, 64, 65, 576, 2048}) {
    for (double eps : {1e-5, 1e-6, 1e-2}) {
      for (int64_t T : {1, 7, 33}) {
        SCOPED_TRACE(testing::Message() << "T=" << T << " H=" << H << " eps=" << eps);
        std::vector<float> x(size_t(T * H));
        for (int64_t t = 0; t < T; ++t) {
          const double mag = magnitudes[size_t(t) % magnitudes.size()];
          const auto row = rng.normal(size_t(H), mag);
          std::copy(row.begin(), row.end(), x.begin() + t * H);
        }
        const std::vector<float> w = rng.uniform(size_t(H), -2.0, 2.0);
        const Tensor X = make({T, H}, x), W = make({H}, w);
        Tensor Y = nan_filled({T, H});
        ops::rms_norm(X.view(), W.view(), float(eps), Y);
        const auto ref = rms_norm_ref(x, w, eps, T, H);
        // Each output is a few float32 roundings of ref; rows differ wildly in magnitude (a
        // 1e-20 row with eps is ~1e-17), so the tolerance is judged per row.
        for (int64_t t = 0; t < T; ++t) {
          std::vector<double> ref_row(ref.begin() + t * H, ref.begin() + (t + 1) * H);
          const double scale = std::max(max_abs(ref_row), 1e-300);
          EXPECT_CLOSE(log, Y.data() + t * H, ref_row, (Tol{1e-6 * scale, 2e-6, 1e-5}));
        }
      }
    }
  }
}

TEST(OpsRmsNorm, RejectsBadInputs) {
  const Tensor X({2, 4}), W({4}), W_bad({5}), X1({4});
  Tensor Y;
  EXPECT_THROW(ops::rms_norm(X.view(), W_bad.view(), 1e-5f, Y), Error);
  EXPECT_THROW(ops::rms_norm(X1.view(), W.view(), 1e-5f, Y), Error);
  EXPECT_THROW(ops::rms_norm(X.view(), W.view(), 0.0f, Y), Error);
  EXPECT_THROW(ops::rms_norm(X.view(), W.view(), -1e-5f, Y), Error);
  Tensor same({2, 4});
  EXPECT_THROW(ops::rms_norm(same.view(), W.view(), 1e-5f, same), Error);  // output aliases input
}

// ---- swiglu --------------------------------------------------------------------------------

double silu_ref(double g) {
  // Written so that neither tail overflows in double: for g < 0, g * e^g / (1 + e^g).
  return g >= 0 ? g / (1.0 + std::exp(-g)) : g * std::exp(g) / (1.0 + std::exp(g));
}

TEST(OpsSwiglu, MatchesFloat64Reference) {
  Rng rng(test::test_seed(301));
  ErrorLog log("swiglu");
  for (int64_t T : {1, 2, 33}) {
    for (int64_t F : {1, 7, 64, 65, 1536}) {
      SCOPED_TRACE(testing::Message() << "T=" << T << " F=" << F);
      const size_t n = size_t(T * F);
      std::vector<float> gate = rng.normal(n, 4.0), up = rng.normal(n);
      const std::vector<double> ref = [&] {
        std::vector<double> r(n);
        for (size_t i = 0; i < n; ++i) r[i] = silu_ref(gate[i]) * double(up[i]);
        return r;
      }();
      Tensor G = make({T, F}, gate);
      const Tensor U = make({T, F}, up);
      ops::swiglu(G, U.view());
      EXPECT_CLOSE(log, G.data(), ref, (Tol{1e-6 * std::max(max_abs(ref), 1e-30), 2e-6, 1e-5}));
    }
  }
}

TEST(OpsSwiglu, LargeGatesDoNotOverflow) {
  ErrorLog log("swiglu large |gate|");
  const float fmax = std::numeric_limits<float>::max();
  // exp(-g) overflows float32 for g < -88.7: the op must still give ~0, never NaN or inf.
  std::vector<float> gate = {-100.0f, 100.0f, -88.0f, -89.0f, -200.0f, 1000.0f, -1e30f, 1e30f,
                             -fmax,   fmax,   0.0f,   -0.0f,  20.0f,   -20.0f, 88.0f,  89.0f};
  std::vector<float> up(gate.size(), 1.0f);
  up[8] = -0.75f;
  up[9] = 0.5f;
  std::vector<double> ref(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) ref[i] = silu_ref(gate[i]) * double(up[i]);
  Tensor G = make({1, int64_t(gate.size())}, gate);
  const Tensor U = make({1, int64_t(gate.size())}, up);
  ops::swiglu(G, U.view());
  for (int64_t i = 0; i < G.numel(); ++i) {
    EXPECT_TRUE(std::isfinite(G.data()[i])) << "silu(" << gate[size_t(i)] << ") * " << up[size_t(i)] << " = " << G.data()[i];
  }
  EXPECT_EQ(G.data()[1], 100.0f);                // silu(100) = 100 to float precision
  EXPECT_LE(std::abs(G.data()[0]), 1e-30f);      // silu(-100) ~ -3.7e-42
  // Element-wise against the reference; the floor is one float32 ulp at 1 (outputs near the
  // underflow end are ~1e-37 in the reference and 0 in float32 when exp overflows).
  EXPECT_CLOSE(log, G.data(), ref, (Tol{1e-30, 2e-6, 1e-5}));
}

TEST(OpsSwiglu, RejectsShapeMismatch) {
  Tensor G({2, 4});
  const Tensor U({2, 5}), U2({8});
  EXPECT_THROW(ops::swiglu(G, U.view()), Error);
  EXPECT_THROW(ops::swiglu(G, U2.view()), Error);
}

// ---- rope ----------------------------------------------------------------------------------

// The angle is position * inv_freq rounded to float32, as transformers computes it
// (position_ids.float() * inv_freq) and as rope.h documents; everything after it is float64.
double rope_angle(int64_t pos, double inv_freq) { return double(float(pos) * float(inv_freq)); }

/// Meta / llama.cpp form: consecutive pairs as complex numbers times e^{i angle}.
std::vector<double> rope_ref_adjacent(const std::vector<float>& x, const std::vector<int64_t>& pos, int64_t H,
                                      int64_t D, const ops::RopeTable& t) {
  std::vector<double> y(x.begin(), x.end());
  for (size_t tok = 0; tok < pos.size(); ++tok) {
    for (int64_t h = 0; h < H; ++h) {
      double* v = y.data() + (int64_t(tok) * H + h) * D;
      for (int64_t i = 0; i < t.dim / 2; ++i) {
        const std::complex<double> z(v[2 * i], v[2 * i + 1]);
        const std::complex<double> r = z * std::polar(t.attention_factor, rope_angle(pos[tok], t.inv_freq[size_t(i)]));
        v[2 * i] = r.real();
        v[2 * i + 1] = r.imag();
      }
    }
  }
  return y;
}

/// transformers form: x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) =
/// cat(-x2, x1), on the first table.dim dimensions (partial rotary passes the rest).
std::vector<double> rope_ref_rotate_half(const std::vector<float>& x, const std::vector<int64_t>& pos, int64_t H,
                                         int64_t D, const ops::RopeTable& t) {
  std::vector<double> y(x.begin(), x.end());
  const int64_t R = t.dim, half = R / 2;
  for (size_t tok = 0; tok < pos.size(); ++tok) {
    std::vector<double> cos_full(static_cast<size_t>(R)), sin_full(static_cast<size_t>(R));
    for (int64_t i = 0; i < R; ++i) {
      const double a = rope_angle(pos[tok], t.inv_freq[size_t(i % half)]);
      cos_full[size_t(i)] = std::cos(a) * t.attention_factor;
      sin_full[size_t(i)] = std::sin(a) * t.attention_factor;
    }
    for (int64_t h = 0; h < H; ++h) {
      const size_t off = size_t((int64_t(tok) * H + h) * D);
      std::vector<double> rot(static_cast<size_t>(R));
      for (int64_t i = 0; i < R; ++i) rot[size_t(i)] = i < half ? -double(x[off + size_t(i + half)]) : double(x[off + size_t(i - half)]);
      for (int64_t i = 0; i < R; ++i) y[off + size_t(i)] = double(x[off + size_t(i)]) * cos_full[size_t(i)] + rot[size_t(i)] * sin_full[size_t(i)];
    }
  }
  return y;
}

ops::RopeTable random_table(Rng& rng, RopeStyle style, int64_t dim, double attention_factor) {
  ops::RopeTable t;
  t.style = style;
  t.dim = dim;
  t.attention_factor = attention_factor;
  // Log-uniform frequencies from 1 down to 1e-6 (the span of real RoPE bases), plus 1 exactly.
  std::uniform_real_distribution<double> lg(-6.0, 0.0);
  for (int64_t i = 0; i < dim / 2; ++i) t.inv_freq.push_back(i == 0 ? 1.0 : double(float(std::pow(10.0, lg(rng.gen())))));
  return t;
}

const std::vector<int64_t> kRopePositions = {0, 1, 2, 100000, 5, 3, 65535, 4096, 1, 0, 131071, 17, 8191, 32768, 9};

TEST(OpsRope, BothStylesMatchRotationFormulas) {
  Rng rng(test::test_seed(401));
  ErrorLog log("rope");
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::rotate_half}) {
    for (int64_t D : {2, 8, 64, 128}) {
      for (int64_t H : {1, 3}) {
        for (int64_t T : {int64_t(1), int64_t(kRopePositions.size())}) {
          for (double af : {1.0, 1.138629436111989}) {
            SCOPED_TRACE(testing::Message() << rope_style_name(style) << " T=" << T << " H=" << H << " D=" << D
                                            << " attention_factor=" << af);
            // T == 1 uses the large position alone.
            std::vector<int64_t> pos = T == 1 ? std::vector<int64_t>{100000} : kRopePositions;
            const ops::RopeTable table = random_table(rng, style, D, af);
            std::vector<float> x = rng.normal(size_t(T * H * D));
            Tensor X = make({T, H, D}, x);
            ops::rope(X, pos, table);
            const auto ref = style == RopeStyle::adjacent_pairs ? rope_ref_adjacent(x, pos, H, D, table)
                                                                : rope_ref_rotate_half(x, pos, H, D, table);
            // A rotation keeps the magnitude: a few float32 roundings of cos/sin and the products.
            EXPECT_CLOSE(log, X.data(), ref, (Tol{2e-6 * max_abs(x) * af, 2e-6, 1e-5}));
          }
        }
      }
    }
  }
}

TEST(OpsRope, PositionZeroOnlyScales) {
  Rng rng(test::test_seed(402));
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::rotate_half}) {
    const ops::RopeTable table = random_table(rng, style, 64, 1.0);
    const std::vector<float> x = rng.normal(2 * 64);
    Tensor X = make({1, 2, 64}, x);
    ops::rope(X, {0}, table);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(X.data()[i], x[i]) << rope_style_name(style) << " element " << i;
  }
}

TEST(OpsRope, PartialRotaryLeavesTailAlone) {
  Rng rng(test::test_seed(403));
  ErrorLog log("rope partial");
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::rotate_half}) {
    for (auto [D, R] : {std::pair<int64_t, int64_t>{64, 32}, {80, 64}, {64, 2}, {65, 64}}) {
      SCOPED_TRACE(testing::Message() << rope_style_name(style) << " head_dim=" << D << " rotary=" << R);
      const int64_t T = int64_t(kRopePositions.size()), H = 2;
      const ops::RopeTable table = random_table(rng, style, R, 1.25);
      const std::vector<float> x = rng.normal(size_t(T * H * D));
      Tensor X = make({T, H, D}, x);
      ops::rope(X, kRopePositions, table);
      const auto ref = style == RopeStyle::adjacent_pairs ? rope_ref_adjacent(x, kRopePositions, H, D, table)
                                                          : rope_ref_rotate_half(x, kRopePositions, H, D, table);
      EXPECT_CLOSE(log, X.data(), ref, (Tol{2e-6 * max_abs(x) * 1.25, 2e-6, 1e-5}));
      for (int64_t r = 0; r < T * H; ++r) {
        for (int64_t i = R; i < D; ++i) {
          ASSERT_EQ(X.data()[r * D + i], x[size_t(r * D + i)]) << "tail element " << i << " of row " << r << " changed";
        }
      }
    }
  }
}

// llama.cpp's convert_hf_to_gguf.py permutes the rows of W_q and W_k per head:
//   w.reshape(n_head, 2, d/2, in).swapaxes(1, 2).reshape(n_head * d, in)
// so new row (head, j, s) = old row (head, s, j): new[2j] = old[j], new[2j+1] = old[d/2 + j].
std::vector<float> gguf_permute_rows(const std::vector<float>& w, int64_t n_head, int64_t d, int64_t in) {
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < d / 2; ++j)
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t new_row = h * d + j * 2 + s, old_row = h * d + s * (d / 2) + j;
        std::memcpy(&out[size_t(new_row * in)], &w[size_t(old_row * in)], size_t(in) * sizeof(float));
      }
  return out;
}

TEST(OpsRope, AdjacentOnGgufPermutedEqualsRotateHalf) {
  Rng rng(test::test_seed(404));
  ErrorLog log("rope gguf permutation");
  const int64_t T = int64_t(kRopePositions.size()), in = 48;
  for (int64_t d : {2, 8, 64, 128}) {
    for (int64_t n_head : {1, 3}) {
      SCOPED_TRACE(testing::Message() << "head_dim=" << d << " heads=" << n_head);
      RopeConfig rc;
      rc.base = 500000.0;
      rc.dim = d;
      rc.scaling = RopeScaling::yarn;  // a non-unit attention factor, to catch a missing multiply
      rc.factor = 4.0;
      rc.original_context = 4096;
      rc.yarn_attn_factor = 1.1386;
      rc.style = RopeStyle::rotate_half;
      const ops::RopeTable hf = ops::make_rope_table(rc);
      rc.style = RopeStyle::adjacent_pairs;
      const ops::RopeTable gg = ops::make_rope_table(rc);
      ASSERT_EQ(hf.inv_freq, gg.inv_freq);

      // q = x W^T with the HF weights and with the GGUF (permuted) weights.
      const std::vector<float> xs = rng.normal(size_t(T * in));
      const std::vector<float> wq = rng.normal(size_t(n_head * d * in), 0.2);
      const std::vector<float> wk = rng.normal(size_t(n_head * d * in), 0.2);
      const Tensor X = make({T, in}, xs);
      auto project = [&](const std::vector<float>& w) {
        Tensor y;
        const Tensor W = make({n_head * d, in}, w);
        ops::linear(X.view(), W.view(), TensorView{}, y);
        y.reshape({T, n_head, d});
        return y;
      };
      Tensor q_hf = project(wq), k_hf = project(wk);
      Tensor q_gg = project(gguf_permute_rows(wq, n_head, d, in)), k_gg = project(gguf_permute_rows(wk, n_head, d, in));
      ops::rope(q_hf, kRopePositions, hf);
      ops::rope(k_hf, kRopePositions, hf);
      ops::rope(q_gg, kRopePositions, gg);
      ops::rope(k_gg, kRopePositions, gg);

      // (1) Vector level: adjacent(permute(q)) == permute(rotate_half(q)). Same float32
      //     operations on the same operands, so the results are identical.
      const std::vector<float> q_hf_vec(q_hf.data(), q_hf.data() + q_hf.numel());
      const std::vector<float> perm_q_hf = gguf_permute_rows(q_hf_vec, T * n_head, d, 1);
      const std::vector<double> perm_ref(perm_q_hf.begin(), perm_q_hf.end());
      EXPECT_CLOSE(log, q_gg.data(), perm_ref, (Tol{1e-6 * max_abs(perm_q_hf), 1e-6, 1e-6}));
      // (2) What attention sees: q . k per head and token pair is the same in both layouts.
      std::vector<double> scores_hf, scores_gg_ref;
      std::vector<float> scores_gg;
      for (int64_t h = 0; h < n_head; ++h)
        for (int64_t i = 0; i < T; ++i)
          for (int64_t j = 0; j < T; ++j) {
            double a = 0.0, b = 0.0;
            for (int64_t e = 0; e < d; ++e) {
              a += double(q_hf.data()[(i * n_head + h) * d + e]) * k_hf.data()[(j * n_head + h) * d + e];
              b += double(q_gg.data()[(i * n_head + h) * d + e]) * k_gg.data()[(j * n_head + h) * d + e];
            }
            scores_hf.push_back(a);
            scores_gg.push_back(float(b));
          }
      EXPECT_CLOSE(log, scores_gg.data(), scores_hf, (Tol{1e-6 * max_abs(scores_hf), 1e-5, 1e-6}));
    }
  }
}

TEST(OpsRope, FreqFactorsDivide) {
  RopeConfig rc;
  rc.base = 500000.0;
  rc.dim = 8;
  const ops::RopeTable plain = ops::make_rope_table(rc);
  const std::vector<float> ff = {1.0f, 2.0f, 8.0f, 0.5f};
  const ops::RopeTable scaled = ops::make_rope_table(rc, ff);
  for (size_t i = 0; i < ff.size(); ++i) {
    EXPECT_NEAR(scaled.inv_freq[i], plain.inv_freq[i] / ff[i], 1e-7 * plain.inv_freq[i] / ff[i]) << i;
  }
  EXPECT_THROW(ops::make_rope_table(rc, {1.0f, 2.0f}), Error);              // wrong count
  EXPECT_THROW(ops::make_rope_table(rc, {1.0f, 0.0f, 1.0f, 1.0f}), Error);  // zero divisor
}

TEST(OpsRope, RejectsBadInputs) {
  RopeConfig rc;
  rc.dim = 7;
  EXPECT_THROW(ops::make_rope_table(rc), Error);  // odd
  rc.dim = 0;
  EXPECT_THROW(ops::make_rope_table(rc), Error);
  rc.dim = 8;
  rc.base = 1.0;
  EXPECT_THROW(ops::make_rope_table(rc), Error);
  rc.base = 10000.0;
  rc.scaling = RopeScaling::llama3;
  rc.factor = 8.0;
  rc.original_context = 0;
  EXPECT_THROW(ops::make_rope_table(rc), Error);
  rc.scaling = RopeScaling::yarn;
  EXPECT_THROW(ops::make_rope_table(rc), Error);
  rc.scaling = RopeScaling::none;
  const ops::RopeTable table = ops::make_rope_table(rc);
  Tensor x2({3, 8}), x3({3, 2, 8}), x_small({3, 2, 6});
  EXPECT_THROW(ops::rope(x2, {0, 1, 2}, table), Error);       // not [T, heads, d]
  EXPECT_THROW(ops::rope(x3, {0, 1}, table), Error);          // positions count
  EXPECT_THROW(ops::rope(x_small, {0, 1, 2}, table), Error);  // rotary dim > head dim
}

// ---- rope against transformers (tests/fixtures/rope/tables.json) --------------------------

const Json& rope_fixture() {
  static const Json j = Json::parse(test::read_file(test::fixture("rope/tables.json")));
  return j;
}

double param(const Json& p, const char* key, double fallback) {
  return p.contains(key) && !p[key].is_null() ? p[key].get<double>() : fallback;
}

/// RopeConfig with the case's values, yarn's attention factor taken from transformers' answer.
RopeConfig rope_config_of(const Json& c) {
  const Json& p = c["rope_parameters"];
  RopeConfig rc;
  rc.base = p["rope_theta"].get<double>();
  rc.dim = c["head_dim"].get<int64_t>();
  rc.style = RopeStyle::rotate_half;
  rc.scaling = parse_rope_scaling(p["rope_type"].get<std::string>());
  rc.factor = param(p, "factor", 1.0);
  rc.original_context = int64_t(param(p, "original_max_position_embeddings", 0.0));
  rc.low_freq_factor = param(p, "low_freq_factor", 1.0);
  rc.high_freq_factor = param(p, "high_freq_factor", 4.0);
  rc.yarn_beta_fast = param(p, "beta_fast", 32.0);
  rc.yarn_beta_slow = param(p, "beta_slow", 1.0);
  rc.yarn_truncate = !p.contains("truncate") || p["truncate"].get<bool>();
  rc.yarn_attn_factor = c["attention_factor"].get<double>();
  return rc;
}

/// A config.json for the case: the published-checkpoint layout (top-level rope_theta +
/// rope_scaling) or the one transformers >= 5 writes (rope_parameters with rope_theta inside).
std::string write_hf_config(const Json& c, const std::string& dir, bool v5_layout = false) {
  const Json& p = c["rope_parameters"];
  const int64_t hd = c["head_dim"].get<int64_t>();
  Json j = {{"model_type", "llama"},       {"architectures", Json::array({"LlamaForCausalLM"})},
            {"hidden_size", 2 * hd},       {"num_attention_heads", 2},
            {"num_key_value_heads", 1},    {"head_dim", hd},
            {"num_hidden_layers", 1},      {"intermediate_size", 64},
            {"vocab_size", 32},            {"max_position_embeddings", c["max_position_embeddings"]},
            {"rms_norm_eps", 1e-5},        {"hidden_act", "silu"}};
  if (v5_layout) {
    j["rope_parameters"] = p;
  } else if (j["rope_theta"] = p["rope_theta"]; p["rope_type"] == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    Json s = p;
    s.erase("rope_theta");
    j["rope_scaling"] = s;
  }
  const std::string path = dir + "/config.json";
  std::ofstream(path) << j.dump(1);
  return path;
}

class RopeTransformers : public ::testing::TestWithParam<std::string> {};

TEST_P(RopeTransformers, TableMatches) {
  const Json& c = rope_fixture()["cases"][GetParam()];
  ASSERT_FALSE(c.is_null()) << "fixture has no case " << GetParam();
  std::vector<double> ref;
  for (const auto& v : c["inv_freq"]) ref.push_back(v.get<double>());
  const double ref_af = c["attention_factor"].get<double>();
  const ops::RopeTable direct = ops::make_rope_table(rope_config_of(c));
  ASSERT_EQ(direct.inv_freq.size(), ref.size());
  const std::vector<float> got(direct.inv_freq.begin(), direct.inv_freq.end());
  const Compared cmp = compare(got.data(), ref, Tol{0.0 + 1e-300, 1e-6, 1e-6});
  std::printf("[ errors   ] %s inv_freq: max rel %.3g (%s), attention_factor esa %.17g transformers %.17g\n",
              GetParam().c_str(), cmp.max_ratio * 1e-6, cmp.ok ? "ok" : "differs", direct.attention_factor, ref_af);

  if (!c["esa_expressible"].get<bool>()) {
    // transformers' yarn `truncate: false` (no floor/ceil of the correction range) has no
    // RopeConfig field; esa always truncates. Record how far that is, and that the fixture
    // really differs (or the case would test nothing).
    EXPECT_FALSE(cmp.ok) << "the case was meant to differ from esa's truncated yarn table";
    // What esa does with such a config.json: report it (esa has no field for the option).
    try {
      const ModelConfig mc = config_from_hf_json(write_hf_config(c, test::temp_dir()));
      const std::vector<double> t = ops::make_rope_table(mc.rope).inv_freq;
      const std::vector<float> tf(t.begin(), t.end());
      const Compared cj = compare(tf.data(), ref, Tol{1e-300, 1e-6, 1e-6});
      std::printf("[ note     ] config_from_hf_json accepts this config.json and ignores the option: max rel %.3g "
                  "from transformers' table\n", cj.max_ratio * 1e-6);
    } catch (const Error& e) {
      std::printf("[ note     ] config_from_hf_json rejects this config.json: %s\n", e.what());
    }
    return;
  }
  EXPECT_TRUE(cmp.ok) << cmp.why;
  EXPECT_NEAR(direct.attention_factor, ref_af, 1e-12 * ref_af);
  // Float32 inv_freq should be the same float: the long-position angles depend on it.
  int64_t differing = 0;
  for (size_t i = 0; i < ref.size(); ++i) differing += float(direct.inv_freq[i]) != float(ref[i]);
  if (differing > 0) std::printf("[ note     ] %lld of %zu inv_freq differ in float32 bits\n", static_cast<long long>(differing), ref.size());

  // Through config_from_hf_json: the mapping of rope_scaling keys, including yarn's default
  // attention factor.
  for (bool v5_layout : {false, true}) {
    SCOPED_TRACE(v5_layout ? "config.json with rope_parameters (transformers >= 5)" : "config.json with rope_scaling");
    const ModelConfig mc = config_from_hf_json(write_hf_config(c, test::temp_dir(), v5_layout));
    const ops::RopeTable via_json = ops::make_rope_table(mc.rope);
    EXPECT_EQ(mc.rope.style, RopeStyle::rotate_half);
    EXPECT_EQ(mc.rope.base, c["rope_parameters"]["rope_theta"].get<double>());
    const std::vector<float> got_json(via_json.inv_freq.begin(), via_json.inv_freq.end());
    const Compared cmp_json = compare(got_json.data(), ref, Tol{1e-300, 1e-6, 1e-6});
    EXPECT_TRUE(cmp_json.ok) << "via config.json: " << cmp_json.why;
    EXPECT_NEAR(via_json.attention_factor, ref_af, 1e-12 * ref_af) << "via config.json";
  }
}

TEST_P(RopeTransformers, RotationMatchesApplyRotaryPosEmb) {
  const Json& c = rope_fixture()["cases"][GetParam()];
  ASSERT_FALSE(c.is_null());
  if (!c.contains("apply")) GTEST_SKIP() << "the fixture applies transformers' rotation for a subset of cases";
  ErrorLog log("rope vs transformers " + GetParam());
  const Json& a = c["apply"];
  const std::vector<int64_t> pos = a["positions"].get<std::vector<int64_t>>();
  const std::vector<float> x = a["x"].get<std::vector<float>>();
  const std::vector<double> ref = a["y"].get<std::vector<double>>();
  const int64_t D = c["head_dim"].get<int64_t>(), T = int64_t(pos.size());
  const double xmax = max_abs(x);

  // (a) transformers' own float32 table: the same float32 angles, cos/sin rounded differently
  //     (transformers in float32, esa in double then float32): a few ulps of the data.
  ops::RopeTable hf_table;
  hf_table.style = RopeStyle::rotate_half;
  hf_table.dim = D;
  hf_table.inv_freq = c["inv_freq"].get<std::vector<double>>();
  hf_table.attention_factor = c["attention_factor"].get<double>();
  Tensor X = make({T, 1, D}, x);
  ops::rope(X, pos, hf_table);
  EXPECT_CLOSE(log, X.data(), ref, (Tol{4e-6 * xmax * hf_table.attention_factor, 4e-6, 1e-5}));
  if (!c["esa_expressible"].get<bool>()) return;

  // (b) esa's table. Its llama3 / yarn frequencies may differ from transformers' float32
  //     arithmetic by an ulp (within TableMatches' 1e-6); at position p an ulp of inv_freq
  //     moves the float32 angle by up to p * inv_freq * 2^-23, about one ulp of the angle, which
  //     is also the size of the float32 angle rounding in transformers itself. For those
  //     frequencies only, the bound adds 3 ulps of the angle times the magnitude of the pair.
  const ops::RopeTable table = ops::make_rope_table(rope_config_of(c));
  Tensor Y = make({T, 1, D}, x);
  ops::rope(Y, pos, table);
  const double af = table.attention_factor, half = double(D / 2);
  double d2 = 0.0, r2 = 0.0, allowed2 = 0.0, worst = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < D; ++e) {
      const int64_t i = e % int64_t(half);
      const double pair = std::hypot(x[size_t(t * D + i)], x[size_t(t * D + i + int64_t(half))]) * af;
      // Frequencies with the same float32 bits give the same angle: no slack for them.
      const bool same_bits = float(table.inv_freq[size_t(i)]) == float(hf_table.inv_freq[size_t(i)]);
      const double angle_slack =
          same_bits ? 0.0 : 3.0 * 1.2e-7 * double(pos[size_t(t)]) * table.inv_freq[size_t(i)] * pair;
      const double r = ref[size_t(t * D + e)], g = Y.data()[t * D + e];
      ASSERT_FALSE(std::isnan(g)) << "NaN at token " << t << " dim " << e;
      const double bound = 4e-6 * xmax * af + 4e-6 * std::abs(r) + angle_slack;
      worst = std::max(worst, std::abs(g - r) / bound);
      EXPECT_LE(std::abs(g - r), bound) << "position " << pos[size_t(t)] << " dim " << e << ": got " << g << ", ref " << r;
      d2 += (g - r) * (g - r);
      r2 += r * r;
      allowed2 += angle_slack * angle_slack;
    }
  }
  const double norm_rel = std::sqrt(d2 / r2), norm_allowed = 1e-5 + std::sqrt(allowed2 / r2);
  std::printf("[ errors   ] rope vs transformers %s, esa table: norm-wise rel %.3g (allowed %.3g), max |d|/bound %.3g\n",
              GetParam().c_str(), norm_rel, norm_allowed, worst);
  EXPECT_LE(norm_rel, norm_allowed);
}

std::vector<std::string> rope_case_names() {
  std::vector<std::string> names;
  try {
    for (const auto& item : rope_fixture()["cases"].items()) names.push_back(item.key());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot read the rope fixture: " << e.what();
  }
  return names;
}

INSTANTIATE_TEST_SUITE_P(Fixture, RopeTransformers, ::testing::ValuesIn(rope_case_names()),
                         [](const auto& info) { return info.param; });

// ---- attention -----------------------------------------------------------------------------

struct AttnRef {
  std::vector<double> out;  // [T, hq, d]
  std::vector<double> lse;  // [T, hq]
  double max_score = 0.0;   // max |scaled score| over visible pairs
};

AttnRef attention_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                      const std::vector<int64_t>& q_pos, const std::vector<int64_t>& k_pos, int64_t hq, int64_t hkv,
                      int64_t d, double scale, bool causal) {
  const int64_t T = int64_t(q_pos.size()), S = int64_t(k_pos.size());
  AttnRef r;
  r.out.assign(size_t(T * hq * d), 0.0);
  r.lse.assign(size_t(T * hq), -kInf);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t g = h * hkv / hq;  // query heads are grouped consecutively per KV head
      std::vector<double> s;
      std::vector<int64_t> idx;
      for (int64_t j = 0; j < S; ++j) {
        if (causal && k_pos[size_t(j)] > q_pos[size_t(t)]) continue;
        double dot = 0.0;
        for (int64_t e = 0; e < d; ++e) dot += double(q[size_t((t * hq + h) * d + e)]) * double(k[size_t((j * hkv + g) * d + e)]);
        s.push_back(dot * scale);
        idx.push_back(j);
        r.max_score = std::max(r.max_score, std::abs(dot * scale));
      }
      if (s.empty()) continue;  // out 0, lse -inf
      const double m = *std::max_element(s.begin(), s.end());
      double sum = 0.0;
      for (double& x : s) sum += (x = std::exp(x - m));
      r.lse[size_t(t * hq + h)] = m + std::log(sum);
      for (size_t n = 0; n < s.size(); ++n)
        for (int64_t e = 0; e < d; ++e)
          r.out[size_t((t * hq + h) * d + e)] += s[n] / sum * double(v[size_t((idx[n] * hkv + g) * d + e)]);
    }
  }
  return r;
}

struct AttnCase {
  int64_t T, S, hq, hkv, d;
  bool causal;
  double scale;
  double qk_std = 1.0;
  std::vector<int64_t> q_pos, k_pos;  // empty: S-T..S-1 and 0..S-1
};

/// Runs the op (outputs pre-filled with NaN) and checks out and lse against the reference.
void check_attention(Rng& rng, const AttnCase& ac, ErrorLog& log) {
  const auto [T, S, hq, hkv, d, causal, scale, qk_std, qp, kp] = ac;
  std::vector<int64_t> q_pos = qp, k_pos = kp;
  if (q_pos.empty()) for (int64_t i = 0; i < T; ++i) q_pos.push_back(S - T + i);
  if (k_pos.empty()) for (int64_t j = 0; j < S; ++j) k_pos.push_back(j);
  const auto q = rng.normal(size_t(T * hq * d), qk_std), k = rng.normal(size_t(S * hkv * d), qk_std);
  const auto v = rng.normal(size_t(S * hkv * d));
  const Tensor Q = make({T, hq, d}, q), K = make({S, hkv, d}, k), V = make({S, hkv, d}, v);
  Tensor out = nan_filled({T, hq, d}), lse = nan_filled({T, hq});
  ops::AttentionArgs args;
  args.scale = float(scale);
  args.causal = causal;
  ops::attention(Q.view(), K.view(), V.view(), q_pos, k_pos, args, out, &lse);
  ASSERT_EQ(out.shape(), (std::vector<int64_t>{T, hq, d}));
  ASSERT_EQ(lse.shape(), (std::vector<int64_t>{T, hq}));
  const AttnRef ref = attention_ref(q, k, v, q_pos, k_pos, hq, hkv, d, double(float(scale)), causal);
  // Scores carry float32 rounding ~ eps * sqrt(d) * |score|, which the softmax turns into a
  // relative error of the weights; the floors scale with max|v| and with the score range.
  const double vmax = std::max(max_abs(v), 1e-30), smax = ref.max_score;
  const double grow = std::max(1.0, smax / 8.0);
  EXPECT_CLOSE(log, out.data(), ref.out, (Tol{4e-6 * grow * vmax, 1e-5, 2e-5 * grow}));
  EXPECT_CLOSE(log, lse.data(), ref.lse, (Tol{2e-6 * (1.0 + smax), 1e-6, 1e-5}));
  // Without lse the output is the same.
  Tensor out2;
  ops::attention(Q.view(), K.view(), V.view(), q_pos, k_pos, args, out2, nullptr);
  EXPECT_EQ(0, std::memcmp(out2.data(), out.data(), out.bytes())) << "out differs when lse is not requested";
}

TEST(OpsAttention, GqaShapesCausalAndNot) {
  Rng rng(test::test_seed(501));
  ErrorLog log("attention");
  for (auto [hkv, group] : {std::pair<int64_t, int64_t>{1, 1}, {2, 3}, {2, 4}, {1, 4}, {3, 1}}) {
    for (int64_t T : {1, 31, 32, 33, 100}) {
      for (int64_t S : {1, 31, 32, 33, 100}) {
        for (bool causal : {true, false}) {
          const int64_t d = (T + S) % 2 == 0 ? 64 : 5;
          SCOPED_TRACE(testing::Message() << "T=" << T << " S=" << S << " hq=" << hkv * group << " hkv=" << hkv
                                          << " d=" << d << " causal=" << causal);
          // T > S with causal: the first T - S queries have negative positions and see no key.
          check_attention(rng, AttnCase{T, S, hkv * group, hkv, d, causal, 1.0 / std::sqrt(double(d)), 1.0, {}, {}}, log);
        }
      }
    }
  }
}

TEST(OpsAttention, ScaleAndLargeScores) {
  Rng rng(test::test_seed(502));
  ErrorLog log("attention scale");
  for (double scale : {1.0, 0.05, 2.0}) {
    for (double qk_std : {1.0, 4.0}) {
      SCOPED_TRACE(testing::Message() << "scale=" << scale << " qk_std=" << qk_std);
      // qk_std 4, scale 2, d 64: scores reach several hundred; exp without the max shift would overflow.
      check_attention(rng, AttnCase{33, 65, 4, 2, 64, true, scale, qk_std, {}, {}}, log);
    }
  }
}

TEST(OpsAttention, ArbitraryPositions) {
  Rng rng(test::test_seed(503));
  ErrorLog log("attention positions");
  for (int rep = 0; rep < 8; ++rep) {
    const int64_t T = rng.integer(1, 40), S = rng.integer(1, 70);
    std::vector<int64_t> q_pos(static_cast<size_t>(T)), k_pos(static_cast<size_t>(S));
    // Unsorted, repeated, far apart; some queries before every key.
    for (auto& p : q_pos) p = rng.integer(-5, 120);
    for (auto& p : k_pos) p = rng.integer(0, 120);
    q_pos[0] = -1;  // sees no key under causal masking
    for (bool causal : {true, false}) {
      SCOPED_TRACE(testing::Message() << "rep=" << rep << " T=" << T << " S=" << S << " causal=" << causal);
      check_attention(rng, AttnCase{T, S, 6, 2, 32, causal, 0.125, 1.0, q_pos, k_pos}, log);
    }
  }
}

TEST(OpsAttention, QueryThatSeesNoKey) {
  Rng rng(test::test_seed(504));
  const int64_t d = 16;
  const Tensor Q = make({2, 2, d}, rng.normal(2 * 2 * d)), K = make({3, 1, d}, rng.normal(3 * d)),
               V = make({3, 1, d}, rng.normal(3 * d));
  Tensor out = nan_filled({2, 2, d}), lse = nan_filled({2, 2});
  ops::attention(Q.view(), K.view(), V.view(), {4, 9}, {5, 6, 7}, {0.25f, true}, out, &lse);
  for (int64_t h = 0; h < 2; ++h) {
    EXPECT_EQ(lse.data()[h], -std::numeric_limits<float>::infinity()) << "head " << h;
    for (int64_t e = 0; e < d; ++e) EXPECT_EQ(out.data()[h * d + e], 0.0f) << "head " << h << " dim " << e;
    EXPECT_TRUE(std::isfinite(lse.data()[2 + h]));  // the second query sees every key
  }
}

TEST(OpsAttention, EmptyKeySet) {
  // A branch with no keys at all (S = 0): every query sees nothing.
  Rng rng(test::test_seed(505));
  const int64_t T = 3, hq = 4, hkv = 2, d = 8;
  const Tensor Q = make({T, hq, d}, rng.normal(size_t(T * hq * d))), K({0, hkv, d}), V({0, hkv, d});
  Tensor out = nan_filled({T, hq, d}), lse = nan_filled({T, hq});
  ops::attention(Q.view(), K.view(), V.view(), {0, 1, 2}, {}, {0.35f, false}, out, &lse);
  for (int64_t i = 0; i < out.numel(); ++i) ASSERT_EQ(out.data()[i], 0.0f) << i;
  for (int64_t i = 0; i < lse.numel(); ++i) ASSERT_EQ(lse.data()[i], -std::numeric_limits<float>::infinity()) << i;
}

TEST(OpsAttention, LseMergesTwoBranches) {
  Rng rng(test::test_seed(506));
  ErrorLog log("attention lse merge");
  for (int64_t S : {1, 2, 33, 100}) {
    for (bool causal : {true, false}) {
      const int64_t T = 31, hq = 6, hkv = 2, d = 32;
      SCOPED_TRACE(testing::Message() << "S=" << S << " causal=" << causal);
      std::vector<int64_t> q_pos(static_cast<size_t>(T)), k_pos(static_cast<size_t>(S));
      for (int64_t i = 0; i < T; ++i) q_pos[size_t(i)] = S - T + i;  // early queries see only part (or none)
      std::iota(k_pos.begin(), k_pos.end(), 0);
      const auto q = rng.normal(size_t(T * hq * d)), k = rng.normal(size_t(S * hkv * d), 2.0), v = rng.normal(size_t(S * hkv * d));
      // A random disjoint split of the keys (either half may be empty).
      std::vector<int64_t> side(static_cast<size_t>(S));
      for (auto& s : side) s = rng.integer(0, 1);
      std::vector<float> kb[2], vb[2];
      std::vector<int64_t> pb[2];
      for (int64_t j = 0; j < S; ++j) {
        const int64_t b = side[size_t(j)];
        kb[b].insert(kb[b].end(), k.begin() + j * hkv * d, k.begin() + (j + 1) * hkv * d);
        vb[b].insert(vb[b].end(), v.begin() + j * hkv * d, v.begin() + (j + 1) * hkv * d);
        pb[b].push_back(k_pos[size_t(j)]);
      }
      const ops::AttentionArgs args{0.2f, causal};
      const Tensor Q = make({T, hq, d}, q);
      Tensor o[2], l[2];
      for (int b = 0; b < 2; ++b) {
        const int64_t n = int64_t(pb[b].size());
        const Tensor Kb = make({n, hkv, d}, kb[b]), Vb = make({n, hkv, d}, vb[b]);
        ops::attention(Q.view(), Kb.view(), Vb.view(), q_pos, pb[b], args, o[b], &l[b]);
      }
      // Merge in float64 from the op's float32 outputs.
      std::vector<double> merged_out(size_t(T * hq * d), 0.0), merged_lse(size_t(T * hq), -kInf);
      for (int64_t r = 0; r < T * hq; ++r) {
        const double l1 = l[0].data()[r], l2 = l[1].data()[r];
        const double m = std::max(l1, l2);
        if (m == -kInf) continue;  // neither branch sees a key
        const double w1 = std::exp(l1 - m), w2 = std::exp(l2 - m);
        merged_lse[size_t(r)] = m + std::log(w1 + w2);
        for (int64_t e = 0; e < d; ++e)
          merged_out[size_t(r * d + e)] = (w1 * o[0].data()[r * d + e] + w2 * o[1].data()[r * d + e]) / (w1 + w2);
      }
      // Against the op over all keys and against the float64 reference.
      const Tensor K = make({S, hkv, d}, k), V = make({S, hkv, d}, v);
      Tensor full_out, full_lse;
      ops::attention(Q.view(), K.view(), V.view(), q_pos, k_pos, args, full_out, &full_lse);
      const AttnRef ref = attention_ref(q, k, v, q_pos, k_pos, hq, hkv, d, double(args.scale), causal);
      const double vmax = max_abs(v), grow = std::max(1.0, ref.max_score / 8.0);
      const std::vector<float> mo(merged_out.begin(), merged_out.end()), ml(merged_lse.begin(), merged_lse.end());
      EXPECT_CLOSE(log, mo.data(), ref.out, (Tol{4e-6 * grow * vmax, 1e-5, 2e-5 * grow}));
      EXPECT_CLOSE(log, ml.data(), ref.lse, (Tol{2e-6 * (1.0 + ref.max_score), 1e-6, 1e-5}));
      const std::vector<double> fo(full_out.data(), full_out.data() + full_out.numel());
      const std::vector<double> fl(full_lse.data(), full_lse.data() + full_lse.numel());
      EXPECT_CLOSE(log, mo.data(), fo, (Tol{8e-6 * grow * vmax, 2e-5, 4e-5 * grow}));
      EXPECT_CLOSE(log, ml.data(), fl, (Tol{4e-6 * (1.0 + ref.max_score), 2e-6, 2e-5}));
    }
  }
}

TEST(OpsAttention, RejectsBadShapes) {
  const Tensor q({2, 4, 8}), k({3, 2, 8}), v({3, 2, 8}), v_bad({3, 2, 7}), k_d({3, 2, 7}), k_h({3, 3, 8}),
      q2({2, 32}), k0({3, 0, 8});
  Tensor out, lse;
  const std::vector<int64_t> qp = {0, 1}, kp = {0, 1, 2};
  const ops::AttentionArgs args;
  EXPECT_THROW(ops::attention(q2.view(), k.view(), v.view(), qp, kp, args, out, &lse), Error);     // rank
  EXPECT_THROW(ops::attention(q.view(), k.view(), v_bad.view(), qp, kp, args, out, &lse), Error);  // k != v
  EXPECT_THROW(ops::attention(q.view(), k_d.view(), k_d.view(), qp, kp, args, out, &lse), Error);  // head dim
  EXPECT_THROW(ops::attention(q.view(), k_h.view(), k_h.view(), qp, kp, args, out, &lse), Error);  // 4 % 3
  EXPECT_THROW(ops::attention(q.view(), k0.view(), k0.view(), qp, kp, args, out, &lse), Error);    // 0 KV heads
  EXPECT_THROW(ops::attention(q.view(), k.view(), v.view(), {0}, kp, args, out, &lse), Error);     // q_pos
  EXPECT_THROW(ops::attention(q.view(), k.view(), v.view(), qp, {0, 1}, args, out, &lse), Error);  // k_pos
}

}  // namespace
}  // namespace esa

namespace esa {
namespace {

// The precomputed angle table (used to rotate the whole KV cache every step) must give the
// same bits as computing the angles on the fly, inside and outside its range.
TEST(RopeAngles, LookupIsBitIdenticalToOnTheFly) {
  std::mt19937_64 rng(test::test_seed(77));
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::rotate_half}) {
    RopeConfig cfg;
    cfg.base = 100000.0;
    cfg.dim = 64;
    cfg.style = style;
    cfg.scaling = RopeScaling::yarn;
    cfg.factor = 4.0;
    cfg.original_context = 4096;
    cfg.yarn_attn_factor = 1.1386;
    const ops::RopeTable table = ops::make_rope_table(cfg);
    const ops::RopeAngles angles = ops::make_rope_angles(table, 1000);
    ASSERT_EQ(angles.positions(), 1000);
    std::vector<int64_t> positions = {0, 1, 999, 1000, 5000, 17, 998};
    std::normal_distribution<float> dist;
    std::vector<float> values(positions.size() * 3 * 64);
    for (float& v : values) v = dist(rng);
    Tensor a({int64_t(positions.size()), 3, 64}, values), b({int64_t(positions.size()), 3, 64}, values);
    ops::rope(a, positions, table);
    ops::rope(b, positions, table, &angles);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.bytes())) << rope_style_name(style);
  }
}

// The GPU kernels' cos/sin (two small tables + the float32 rounding correction) against the
// reference's per-position angles, up to 2^24 positions: without the correction the difference
// at a million positions is ~1e-2 (the float32 angle is off by up to half an ulp of 1e6).
TEST(RopeSplitTables, MatchReferenceAnglesAtAnyPosition) {
  std::mt19937_64 rng(test::test_seed(78));
  for (double factor : {1.0, 8.0}) {
    RopeConfig cfg;
    cfg.base = 500000.0;
    cfg.dim = 128;
    if (factor > 1.0) {
      cfg.scaling = RopeScaling::llama3;
      cfg.factor = factor;
      cfg.original_context = 8192;
    }
    const ops::RopeTable table = ops::make_rope_table(cfg);
    const int64_t positions = (int64_t(1) << 24) - 1;
    const ops::RopeSplitTables split = ops::make_rope_split_tables(table, positions);
    std::vector<int64_t> probe = {0, 1, 1023, 1024, 1025, 131071, 1000000, positions - 1};
    std::uniform_int_distribution<int64_t> any(0, positions - 1);
    for (int i = 0; i < 200; ++i) probe.push_back(any(rng));
    std::vector<float> ref_cos(64), ref_sin(64);
    double worst = 0.0;
    for (int64_t p : probe) {
      ops::rope_angles_cpu(table, p, 1, ref_cos.data(), ref_sin.data());
      for (int64_t i = 0; i < 64; ++i) {
        float c = 0.0f, sn = 0.0f;
        split.angle_at(p, i, c, sn);
        worst = std::max({worst, std::fabs(double(c) - ref_cos[size_t(i)]), std::fabs(double(sn) - ref_sin[size_t(i)])});
      }
    }
    EXPECT_LT(worst, 1e-6) << "llama3 factor " << factor;
  }
  RopeConfig small;
  small.dim = 64;
  EXPECT_THROW(ops::make_rope_split_tables(ops::make_rope_table(small), int64_t(1) << 24), Error);
}

}  // namespace
}  // namespace esa
