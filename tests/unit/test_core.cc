// lib/core: sha256 against the FIPS 180-4 vectors, fp16/bf16 conversions, mapped files.
#include <gtest/gtest.h>

#include <fmt/ranges.h>

#include <csignal>
#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "core/child_probe.h"
#include "core/error.h"
#include "core/half.h"
#include "core/interrupt.h"
#include "core/mapped_file.h"
#include "core/memory_limit.h"
#include "core/sha256.h"
#include "core/version.h"
#include "support/gguf_writer.h"
#include "support/test_support.h"

namespace esa {
namespace {

// A string from a file quoted in an error may be megabytes long: the message stays short, keeps
// the string's head and tail (a path's file name) and says how long it was.
TEST(Error, LongQuotedStringsAreShortened) {
  const std::string arch = std::string(1 << 20, 'a') + "TAIL";
  std::string message;
  try {
    ESA_FAIL("model.gguf: unknown architecture '{}' ({} layers)", arch, 3);
  } catch (const esa::Error& e) {
    message = e.what();
  }
  EXPECT_LT(message.size(), 2 * esa::detail::kMaxQuotedBytes) << message.size();
  EXPECT_EQ(message.rfind("model.gguf: unknown architecture 'aaaa", 0), 0u) << message.substr(0, 80);
  EXPECT_NE(message.find(fmt::format("[{} bytes in all]", arch.size())), std::string::npos);
  EXPECT_NE(message.find("aaTAIL' (3 layers)"), std::string::npos);
  // Short strings, views and other types are formatted as fmt formats them.
  const std::vector<int> shape = {2, 3};
  const char* null_name = nullptr;
  try {
    ESA_CHECK(false, "{} [{}] {} {}", std::string_view("x.h5"), fmt::join(shape, ", "), 1.5, null_name);
  } catch (const esa::Error& e) {
    message = e.what();
  }
  EXPECT_EQ(message, "x.h5 [2, 3] 1.5 (null)");
}

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

TEST(MemoryLimit, ParsesSizes) {
  EXPECT_EQ(parse_memory_size("8G"), 8ull << 30);
  EXPECT_EQ(parse_memory_size("512m"), 512ull << 20);
  EXPECT_EQ(parse_memory_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(parse_memory_size("64000000"), 64000000ull);
  EXPECT_EQ(parse_memory_size("2KB"), 2048ull);
  const uint64_t half = parse_memory_size("50%");
  EXPECT_GT(half, 0u);
  EXPECT_NEAR(double(parse_memory_size("100%")), 2.0 * double(half), 2.0);
  for (const char* bad : {"", "G", "-1G", "0", "5Q", "101%", "nanG", "1e30T", "8 G"}) {
    EXPECT_THROW(parse_memory_size(bad), Error) << bad;
  }
}

TEST(MemoryLimit, RefusesWhatDoesNotFitAndSaysWhatWould) {
  const uint64_t resident = resident_memory();
  ASSERT_GT(resident, 0u);
  set_max_memory(resident + (100ull << 20));  // 100 MiB free
  EXPECT_NO_THROW(check_memory("small", 10, 1 << 20, "tokens"));
  try {
    check_memory("the KV cache", 1000, 1 << 20, "tokens");  // 1000 MiB
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("the KV cache: 1000 tokens need"), std::string::npos) << m;
    // Resident memory moves a little while the test runs: about 100 one-MiB tokens fit.
    const size_t at = m.find("at most ");
    ASSERT_NE(at, std::string::npos) << m;
    const int fit = std::stoi(m.substr(at + 8));
    EXPECT_GE(fit, 90) << m;
    EXPECT_LE(fit, 100) << m;
    EXPECT_NE(m.find("--max-memory is"), std::string::npos) << m;
  }
  EXPECT_THROW(check_memory("weights", 1, 1ull << 40, ""), Error);
  EXPECT_THROW(check_memory("overflow", uint64_t(1) << 40, uint64_t(1) << 40, "values"), Error);
  set_max_memory(0);  // back to the default
  EXPECT_GT(max_memory(), uint64_t(100) << 20);
}

// The first SIGINT / SIGTERM only sets the flag that check_interrupt() turns into Interrupted.
TEST(Interrupt, FirstSignalIsTurnedIntoAnException) {
  install_interrupt_handlers();
  EXPECT_NO_THROW(check_interrupt());
  std::raise(SIGTERM);
  try {
    check_interrupt();
    ADD_FAILURE() << "no exception";
  } catch (const Interrupted& e) {
    EXPECT_EQ(e.signal(), SIGTERM);
    EXPECT_STREQ(e.what(), "interrupted by SIGTERM");
  }
}

// A crash in the probe costs only the child; each way a probe can end is told apart.
TEST(ChildProbe, TellsSurvivalCrashAndTimeoutApart) {
  int in_parent = 0;
  const ChildProbe survived = probe_in_child([&] { in_parent = 1; }, 30);
  EXPECT_EQ(survived.end, ChildProbe::End::survived);
  EXPECT_EQ(in_parent, 0);  // the probe ran in a copy of this process
  EXPECT_EQ(probe_in_child([] { throw Error("the in-process run reports it"); }, 30).end,
            ChildProbe::End::survived);

  const ChildProbe crashed = probe_in_child([] { std::raise(SIGSEGV); }, 30);
  EXPECT_EQ(crashed.end, ChildProbe::End::crashed);
  // Under a sanitizer its SIGSEGV handler reports first: the child ends through the death callback.
  if (crashed.signal != 0) {
    EXPECT_EQ(crashed.describe(30), "SIGSEGV");
  }
  EXPECT_EQ(probe_in_child([] { std::abort(); }, 30).end, ChildProbe::End::crashed);

  const ChildProbe hung = probe_in_child([] { for (;;) std::this_thread::sleep_for(std::chrono::seconds(1)); }, 0.2);
  EXPECT_EQ(hung.end, ChildProbe::End::timed_out);
  EXPECT_EQ(hung.describe(0.2), "no end after 0.2 s");
}

}  // namespace esa
