// lib/core: sha256 against the FIPS 180-4 vectors, fp16/bf16 conversions, mapped files.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/sha256.h"
#include "core/version.h"
#include "support/gguf_writer.h"
#include "support/test_support.h"

namespace esa {
namespace {

TEST(Sha256, StandardVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingEqualsOneShot) {
  std::mt19937 rng(test::test_seed(5));
  std::string data(10000, '\0');
  for (char& c : data) c = char(rng());
  Sha256 h;
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t n = std::min<size_t>(rng() % 200, data.size() - pos);
    h.update(data.data() + pos, n);
    pos += n;
  }
  EXPECT_EQ(h.hex_digest(), sha256_hex(data));
  const std::string path = test::temp_dir() + "/blob";
  test::write_file(path, data);
  EXPECT_EQ(sha256_file(path), sha256_hex(data));
  EXPECT_THROW(sha256_file(path + ".missing"), Error);
}

TEST(Half, Fp16ToFloatExactForAllValues) {
  // Every fp16 bit pattern converts to the float that has exactly that value: check through
  // the inverse (round trip) and a few known values.
  EXPECT_EQ(fp16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_float(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7e00)));
  EXPECT_TRUE(std::signbit(fp16_to_float(0x8000)));
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << "bits " << h;
  }
}

TEST(Half, Fp16RoundsToNearestEven) {
  EXPECT_EQ(float_to_fp16(1.0f + 1.0f / 2048), 0x3c00);            // halfway, even stays
  EXPECT_EQ(float_to_fp16(1.0f + 3.0f / 2048), 0x3c02);            // halfway, rounds up to even
  EXPECT_EQ(float_to_fp16(70000.0f), 0x7c00);                       // overflow to inf
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -26)), 0x0000);          // below half the smallest subnormal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.5f, -24)), 0x0002);          // subnormal tie to even
}

TEST(Half, Bf16) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc040), -3.0f);
  EXPECT_TRUE(std::isinf(bf16_to_float(0x7f80)));
}

TEST(MappedFile, MapsAndReportsErrors) {
  const std::string dir = test::temp_dir();
  test::write_file(dir + "/f", "hello");
  MappedFile m(dir + "/f");
  EXPECT_EQ(m.bytes(), "hello");
  test::write_file(dir + "/empty", "");
  MappedFile e(dir + "/empty");
  EXPECT_EQ(e.size(), 0u);
  try {
    MappedFile missing(dir + "/missing");
    ADD_FAILURE();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find(dir + "/missing"), std::string::npos);
  }
  EXPECT_THROW(MappedFile d(dir), Error);  // a folder is not a regular file
}

TEST(Version, HasVersionAndRevision) {
  EXPECT_STRNE(version(), "");
  EXPECT_STRNE(git_revision(), "");
}

}  // namespace
}  // namespace esa
