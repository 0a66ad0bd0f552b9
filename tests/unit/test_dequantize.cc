// dequantize against gguf-py's numpy implementation (fixture: scripts/reference/dequant_fixture.py).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "io/ggml_type.h"
#include "ops/dequantize.h"
#include "support/test_support.h"

namespace esa {
namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

float json_float(const nlohmann::json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::numeric_limits<float>::quiet_NaN();
    return s == "inf" ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  }
  return v.get<float>();
}

io::GgmlType type_by_name(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    const io::GgmlTypeInfo* info = io::ggml_type_info(id);
    if (info != nullptr && name == info->name) return static_cast<io::GgmlType>(id);
  }
  throw std::runtime_error("unknown type " + name);
}

class DequantizeFixture : public ::testing::TestWithParam<std::string> {
 protected:
  static const nlohmann::json& doc() {
    static const nlohmann::json j = nlohmann::json::parse(test::read_file(test::fixture("dequant/blocks.json")));
    return j;
  }
};

TEST_P(DequantizeFixture, MatchesGgufPy) {
  const std::string name = GetParam();
  const nlohmann::json& c = doc()["cases"][name];
  ASSERT_FALSE(c.is_null()) << "fixture has no case " << name;
  const std::vector<uint8_t> raw = from_hex(c["raw_hex"].get<std::string>());
  std::vector<float> expected;
  for (const auto& v : c["values"]) expected.push_back(json_float(v));
  const io::GgmlType type = type_by_name(name);
  std::vector<float> got(expected.size(), -12345.0f);
  ops::dequantize(type, raw.data(), raw.size(), got.data(), int64_t(got.size()));

  // Element-wise atol + rtol*|ref| with atol scaled to the case's magnitude (the K-quants
  // subtract two products, so rounding is relative to the terms, not the difference); NaN
  // must match NaN, infinities must match exactly.
  double max_abs = 0.0, err2 = 0.0, ref2 = 0.0;
  for (float e : expected) if (std::isfinite(e)) max_abs = std::max(max_abs, double(std::fabs(e)));
  const double rtol = 1e-6, atol = 1e-6 * max_abs;
  int bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const float e = expected[i], g = got[i];
    bool ok;
    if (std::isnan(e)) ok = std::isnan(g);
    else if (std::isinf(e)) ok = g == e;
    else {
      ok = std::isfinite(g) && std::fabs(double(g) - e) <= atol + rtol * std::fabs(e);
      err2 += (double(g) - e) * (double(g) - e);
      ref2 += double(e) * e;
    }
    if (!ok && ++bad <= 5) ADD_FAILURE() << name << " element " << i << ": got " << g << ", expected " << e;
  }
  EXPECT_EQ(bad, 0) << name << ": " << bad << " of " << expected.size() << " elements differ";
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  std::printf("[ info     ] %s: %zu elements, norm-wise relative error %.3g\n", name.c_str(), expected.size(), rel);
  EXPECT_LE(rel, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeFixture,
                         ::testing::Values("F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                                           "Q4_K", "Q5_K", "Q6_K"),
                         [](const auto& info) { return info.param; });

TEST(Dequantize, EveryDequantizableTypeHasAFixtureCase) {
  const nlohmann::json j = nlohmann::json::parse(test::read_file(test::fixture("dequant/blocks.json")));
  for (uint32_t id = 0; id < 64; ++id) {
    const io::GgmlTypeInfo* info = io::ggml_type_info(id);
    if (info == nullptr || !info->dequantizable || id == 0) continue;
    EXPECT_TRUE(j["cases"].contains(info->name)) << info->name << " is dequantisable but untested";
  }
}

TEST(Dequantize, F32IsACopy) {
  std::vector<float> src = {1.0f, -2.0f, std::numeric_limits<float>::infinity(), 0.5f};
  std::vector<float> dst(4);
  ops::dequantize(io::GgmlType::f32, src.data(), src.size() * 4, dst.data(), 4);
  EXPECT_EQ(src, dst);
}

TEST(Dequantize, RejectsBadArguments) {
  std::vector<uint8_t> src(34 * 2);
  std::vector<float> dst(64);
  EXPECT_THROW(ops::dequantize(io::GgmlType::q8_0, src.data(), src.size(), dst.data(), 63), Error);  // not whole blocks
  EXPECT_THROW(ops::dequantize(io::GgmlType::q8_0, src.data(), src.size() - 1, dst.data(), 64), Error);  // short
  EXPECT_THROW(ops::dequantize(io::GgmlType::q8_1, src.data(), src.size(), dst.data(), 64), Error);  // unsupported
  EXPECT_THROW(ops::dequantize(static_cast<io::GgmlType>(99), src.data(), src.size(), dst.data(), 64), Error);
}

}  // namespace
}  // namespace esa
