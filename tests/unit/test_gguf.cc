// GGUF reader: valid files (hand-built and the real SmolLM2 model) and corrupt ones. Every
// corruption must raise esa::Error whose message names the file; never crash.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/weights.h"
#include "support/gguf_writer.h"
#include "support/test_support.h"

namespace esa {
namespace {

using io::GgufFile;

std::string write_temp(const std::string& name, const std::string& bytes) {
  static const std::string dir = test::temp_dir();
  const std::string path = dir + "/" + name;
  test::write_file(path, bytes);
  return path;
}

// Expects opening `bytes` as GGUF to fail with a one-line message naming the file and
// containing `needle`.
void expect_corrupt(const std::string& name, const std::string& bytes, const std::string& needle) {
  const std::string path = write_temp(name, bytes);
  try {
    GgufFile f(path);
    ADD_FAILURE() << name << ": opened without error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << name << ": message does not name the file: " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << name << ": expected '" << needle << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << name << ": message is not one line: " << msg;
  }
}

template <typename T>
void poke(std::string& bytes, size_t at, T v) {
  std::memcpy(bytes.data() + at, &v, sizeof(T));
}

TEST(Gguf, ReadsEveryMetadataType) {
  test::GgufWriter w;
  w.add_u32("a.u32", 7);
  w.add_i32("a.i32", -7);
  w.add_u64("a.u64", uint64_t(1) << 40);
  w.add_f32("a.f32", 0.5f);
  w.add_bool("a.bool", true);
  w.add_string("a.str", "héllo");
  w.add_string_array("a.strs", {"x", "", "zz"});
  w.add_i32_array("a.ints", {1, -2, 3});
  w.add_f32_array("a.floats", {1.5f, -2.5f});
  std::string i8;
  i8 += char(-3);
  w.add_raw("a.i8", 1, i8);
  std::string f64(8, '\0');
  const double pi = 3.25;
  std::memcpy(f64.data(), &pi, 8);
  w.add_raw("a.f64", 12, f64);
  // Array of arrays: [[1u8, 2u8]]
  std::string nested;
  const uint32_t arr = 9, u8 = 0;
  const uint64_t one = 1, two = 2;
  nested.append(reinterpret_cast<const char*>(&arr), 4).append(reinterpret_cast<const char*>(&one), 8);
  nested.append(reinterpret_cast<const char*>(&u8), 4).append(reinterpret_cast<const char*>(&two), 8);
  nested += "\x01\x02";
  w.add_raw("a.nested", 9, nested);
  const std::string path = write_temp("types.gguf", w.build(3));
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_int("a.u32"), 7);
  EXPECT_EQ(f.get_int("a.i32"), -7);
  EXPECT_EQ(f.get_int("a.u64"), int64_t(1) << 40);
  EXPECT_EQ(f.get_int("a.i8"), -3);
  EXPECT_FLOAT_EQ(float(f.get_float("a.f32")), 0.5f);
  EXPECT_DOUBLE_EQ(f.get_float("a.f64"), 3.25);
  EXPECT_DOUBLE_EQ(f.get_float("a.u32"), 7.0);  // integers are numbers too
  EXPECT_TRUE(f.get_bool("a.bool"));
  EXPECT_EQ(f.get_string("a.str"), "héllo");
  EXPECT_EQ(f.get_string_array("a.strs"), (std::vector<std::string_view>{"x", "", "zz"}));
  EXPECT_EQ(f.get_int_array("a.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_float_array("a.floats"), (std::vector<float>{1.5f, -2.5f}));
  const io::GgufValue& n = f.get("a.nested");
  ASSERT_EQ(n.items.size(), 1u);
  EXPECT_EQ(n.items[0].count, 2u);
  EXPECT_EQ(n.items[0].raw[1], 2);
  EXPECT_EQ(f.metadata().size(), 12u);
  // Wrong-type and missing lookups are user errors that name the file and key.
  EXPECT_THROW(f.get_string("a.u32"), Error);
  EXPECT_THROW(f.get_int("a.str"), Error);
  EXPECT_THROW(f.get_bool("a.u32"), Error);
  EXPECT_THROW(f.get_string_array("a.ints"), Error);
  try {
    f.get_int("missing.key");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.key"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_FALSE(f.find_int("missing.key").has_value());
}

TEST(Gguf, ReadsTensorsAndAlignment) {
  for (uint32_t version : {2u, 3u}) {
    for (uint64_t alignment : {32u, 64u, 8u}) {
      test::GgufWriter w;
      w.add_u32("general.alignment", uint32_t(alignment));
      std::string a(4 * 3, '\0'), b(2 * 5, '\0');
      for (int i = 0; i < 3; ++i) { const float v = float(i) + 0.5f; std::memcpy(a.data() + 4 * i, &v, 4); }
      for (int i = 0; i < 5; ++i) { const uint16_t h = uint16_t(0x3c00 + i); std::memcpy(b.data() + 2 * i, &h, 2); }
      w.add_tensor("a", {3}, io::GgmlType::f32, a);
      w.add_tensor("b", {5, 1}, io::GgmlType::f16, b);
      const std::string path = write_temp("tensors.gguf", w.build(version, alignment));
      GgufFile f(path);
      ASSERT_EQ(f.tensors().size(), 2u);
      EXPECT_EQ(f.alignment(), alignment);
      EXPECT_EQ(f.data_offset() % alignment, 0u);
      const io::GgufTensorInfo& tb = f.tensor("b");
      EXPECT_EQ(tb.shape, (std::vector<int64_t>{5, 1}));
      EXPECT_EQ(tb.n_elements, 5);
      EXPECT_EQ(tb.n_bytes, 10u);
      EXPECT_EQ(dequantize_tensor(f, f.tensor("a")), (std::vector<float>{0.5f, 1.5f, 2.5f}));
      const std::vector<float> bv = dequantize_tensor(f, tb);
      EXPECT_FLOAT_EQ(bv[0], 1.0f);
      EXPECT_FLOAT_EQ(bv[1], 1.0f + 1.0f / 1024);
      EXPECT_EQ(f.find_tensor("nope"), nullptr);
      EXPECT_THROW(f.tensor("nope"), Error);
    }
  }
}

TEST(Gguf, TinyLlamaRoundTrip) {
  const std::string path = write_temp("tiny.gguf", test::tiny_llama_gguf());
  GgufFile f(path);
  const ModelConfig c = config_from_gguf(f);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.hidden, 32);
  EXPECT_TRUE(c.tied_embeddings);
  const std::vector<float> q = dequantize_tensor(f, f.tensor("blk.0.attn_q.weight"));
  EXPECT_EQ(q.size(), 32u * 32u);
}

// ---- corruptions ------------------------------------------------------------------------

class GgufCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    test::GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
    w.add_u32("llama.block_count", 1);
    std::string data(4 * 64, '\0');
    w.add_tensor("w", {64}, io::GgmlType::f32, data);
    w.add_tensor("q", {32, 2}, io::GgmlType::q8_0, std::string(34 * 2, '\0'));
    good = w.build(3, 32, &offset_fields);
    // Fixed header fields.
    kv_count_at = 16;
    tensor_count_at = 8;
  }
  std::string good;
  std::vector<size_t> offset_fields;
  size_t kv_count_at = 0, tensor_count_at = 0;
};

TEST_F(GgufCorrupt, GoodFileOpens) { EXPECT_NO_THROW(GgufFile(write_temp("good.gguf", good))); }

TEST_F(GgufCorrupt, EmptyFile) { expect_corrupt("empty.gguf", "", "not a GGUF file"); }
TEST_F(GgufCorrupt, BadMagic) {
  std::string b = good;
  b[0] = 'X';
  expect_corrupt("magic.gguf", b, "bad magic");
}
TEST_F(GgufCorrupt, UnknownVersion) {
  std::string b = good;
  poke<uint32_t>(b, 4, 4);
  expect_corrupt("v4.gguf", b, "unsupported GGUF version 4");
  poke<uint32_t>(b, 4, 1);
  expect_corrupt("v1.gguf", b, "unsupported GGUF version 1");
  poke<uint32_t>(b, 4, 0x03000000);
  expect_corrupt("bigendian.gguf", b, "big-endian");
}
TEST_F(GgufCorrupt, HugeTensorCount) {
  std::string b = good;
  poke<uint64_t>(b, tensor_count_at, uint64_t(1) << 60);
  expect_corrupt("tensors.gguf", b, "tensor count");
}
TEST_F(GgufCorrupt, HugeMetadataCount) {
  std::string b = good;
  poke<uint64_t>(b, kv_count_at, ~uint64_t(0));
  expect_corrupt("kvs.gguf", b, "metadata count");
}
TEST_F(GgufCorrupt, HugeStringLength) {
  std::string b = good;
  poke<uint64_t>(b, 24, uint64_t(1) << 62);  // first key's length
  expect_corrupt("keylen.gguf", b, "past the end");
}
TEST_F(GgufCorrupt, HugeArrayCount) {
  // The tokens array count sits after "general.architecture" (string) and the array's key/type.
  std::string b = good;
  const size_t key = b.find("tokenizer.ggml.tokens");
  ASSERT_NE(key, std::string::npos);
  poke<uint64_t>(b, key + 21 + 4 + 4, uint64_t(1) << 59);
  expect_corrupt("arraycount.gguf", b, "array count");
}
TEST_F(GgufCorrupt, UnknownValueType) {
  std::string b = good;
  const size_t key = b.find("general.architecture");
  poke<uint32_t>(b, key + 20, 77);
  expect_corrupt("valuetype.gguf", b, "unknown value type 77");
}
TEST_F(GgufCorrupt, UnknownTensorType) {
  std::string b = good;
  poke<uint32_t>(b, offset_fields[0] - 4, 200);
  expect_corrupt("ggmltype.gguf", b, "unknown ggml type 200");
}
TEST_F(GgufCorrupt, TensorOffsetPastEnd) {
  std::string b = good;
  poke<uint64_t>(b, offset_fields[1], uint64_t(1) << 40);
  expect_corrupt("offset.gguf", b, "past the end");
}
TEST_F(GgufCorrupt, MisalignedOffset) {
  std::string b = good;
  poke<uint64_t>(b, offset_fields[1], 260);
  expect_corrupt("misaligned.gguf", b, "not aligned");
}
TEST_F(GgufCorrupt, TruncatedData) {
  expect_corrupt("truncdata.gguf", good.substr(0, good.size() - 40), "past the end");
}
TEST_F(GgufCorrupt, BadDims) {
  std::string b = good;
  const size_t name = b.find("\x01\x00\x00\x00\x00\x00\x00\x00w", 0, 9);
  ASSERT_NE(name, std::string::npos);
  const size_t ndims_at = name + 9;
  poke<uint32_t>(b, ndims_at, 0);
  expect_corrupt("ndims0.gguf", b, "dimensions");
  poke<uint32_t>(b, ndims_at, 9);
  expect_corrupt("ndims9.gguf", b, "dimensions");
  poke<uint32_t>(b, ndims_at, 1);
  poke<uint64_t>(b, ndims_at + 4, 0);
  expect_corrupt("dim0.gguf", b, "dimension 0 is 0");
  poke<uint64_t>(b, ndims_at + 4, ~uint64_t(0));
  expect_corrupt("dimhuge.gguf", b, "dimension 0");
}
TEST_F(GgufCorrupt, DimsOverflowTogether) {
  test::GgufWriter w;
  w.add_tensor("big", {uint64_t(1) << 30, uint64_t(1) << 30}, io::GgmlType::f32, "");
  expect_corrupt("overflow.gguf", w.build(), "overflows");
}
TEST_F(GgufCorrupt, RowNotWholeBlocks) {
  test::GgufWriter w;
  w.add_tensor("q", {33}, io::GgmlType::q8_0, std::string(34 * 2, '\0'));
  expect_corrupt("block.gguf", w.build(), "block size");
}
TEST_F(GgufCorrupt, DuplicateKeyAndTensor) {
  test::GgufWriter w;
  w.add_u32("k", 1);
  w.add_u32("k", 2);
  expect_corrupt("dupkey.gguf", w.build(), "duplicate metadata key 'k'");
  test::GgufWriter t;
  t.add_tensor("x", {1}, io::GgmlType::f32, std::string(4, '\0'));
  t.add_tensor("x", {1}, io::GgmlType::f32, std::string(4, '\0'));
  expect_corrupt("duptensor.gguf", t.build(), "duplicate tensor 'x'");
}
TEST_F(GgufCorrupt, BadAlignmentAndBool) {
  test::GgufWriter w;
  w.add_u32("general.alignment", 24);
  expect_corrupt("align.gguf", w.build(3, 32), "power of two");
  test::GgufWriter b;
  b.add_raw("flag", 7, std::string(1, '\x02'));
  expect_corrupt("bool.gguf", b.build(), "bool value 2");
}

TEST_F(GgufCorrupt, EveryTruncationFailsCleanly) {
  // Every prefix of the file that cuts into the header or into tensor data must fail with an
  // esa::Error, never crash or read out of bounds; prefixes that drop only the final alignment
  // padding still hold every tensor and open.
  const GgufFile whole(write_temp("whole.gguf", good));
  uint64_t needed = 0;
  for (const auto& t : whole.tensors()) needed = std::max(needed, whole.data_offset() + t.offset + t.n_bytes);
  ASSERT_LT(needed, good.size());
  for (size_t len = 0; len < good.size(); ++len) {
    const std::string path = write_temp("prefix.gguf", good.substr(0, len));
    if (len < needed) {
      EXPECT_THROW(GgufFile f(path), Error) << "prefix of " << len << " bytes opened";
    } else {
      EXPECT_NO_THROW(GgufFile f(path)) << "prefix of " << len << " bytes holds every tensor";
    }
  }
}

TEST_F(GgufCorrupt, RandomByteFlipsNeverCrash) {
  std::mt19937_64 rng(test::test_seed(42));
  int opened = 0, rejected = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string b = good;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % 200] = char(rng());
    const std::string path = write_temp("flip.gguf", b);
    try {
      GgufFile f(path);
      for (const auto& t : f.tensors()) {
        if (io::ggml_type_info(t.type).dequantizable) (void)dequantize_tensor(f, t);
      }
      ++opened;
    } catch (const Error&) {
      ++rejected;
    }
  }
  std::printf("[ info     ] 400 corrupted files: %d opened, %d rejected with esa::Error\n", opened, rejected);
  EXPECT_EQ(opened + rejected, 400);
}

// ---- the real model -----------------------------------------------------------------------

TEST(GgufModel, SmolLm2) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  GgufFile f(test::default_model_path());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  int q4_1 = 0, f32 = 0, q8_0 = 0;
  for (const auto& t : f.tensors()) {
    q4_1 += t.type == io::GgmlType::q4_1;
    f32 += t.type == io::GgmlType::f32;
    q8_0 += t.type == io::GgmlType::q8_0;
  }
  EXPECT_EQ(q4_1, 210);
  EXPECT_EQ(f32, 61);
  EXPECT_EQ(q8_0, 1);
  const io::GgufTensorInfo& emb = f.tensor("token_embd.weight");
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{576, 49152}));
  const std::vector<float> norm = dequantize_tensor(f, f.tensor("blk.0.attn_norm.weight"));
  ASSERT_EQ(norm.size(), 576u);
  for (float v : norm) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace esa
