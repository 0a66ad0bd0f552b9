// Safetensors reader: the fixture checkpoints written by the official `safetensors` package
// (scripts/reference/make_safetensors_fixture.py) compared to numpy's checksums in
// expected.json, sharded and single-file folder resolution, and corrupt files that must raise
// one-line esa::Errors naming the file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "support/test_support.h"

namespace esa::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string le64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

/// A safetensors file's bytes: the length prefix, the header text as given, then `data`.
std::string st_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

/// Runs `fn`, expects an esa::Error whose one-line message starts with "<path>: " and contains
/// `needle`; prints the message so that the suite's log shows what users would see.
template <typename Fn>
void expect_error(Fn&& fn, const std::string& path, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no esa::Error; expected one containing: " << needle;
  } catch (const esa::Error& e) {
    const std::string msg = e.what();
    std::printf("[ message  ] %s\n", msg.c_str());
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the file: " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message lacks '" << needle << "': " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

Json expected_json() {
  return Json::parse(esa::test::read_file(esa::test::fixture("safetensors/expected.json")));
}

// ---- the fixture checkpoints ---------------------------------------------------------------

class FixtureCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureCheckpoint, MatchesNumpyChecksums) {
  const Json expected = expected_json()["checkpoints"][GetParam()];
  ASSERT_TRUE(expected.is_object()) << GetParam();
  const SafetensorsCheckpoint ckpt(esa::test::fixture("safetensors/" + GetParam()));

  std::set<std::string> want, got(ckpt.names().begin(), ckpt.names().end());
  for (const auto& [name, e] : expected["tensors"].items()) want.insert(name);
  EXPECT_EQ(got, want);
  EXPECT_EQ(got.size(), ckpt.names().size()) << "duplicate names";
  EXPECT_EQ(ckpt.parameter_count(), expected["parameter_count"].get<int64_t>());

  for (const auto& [name, e] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    const SafetensorsTensorInfo& info = ckpt.info(name);
    EXPECT_EQ(safetensors_dtype_name(info.dtype), e["dtype"].get<std::string>());
    EXPECT_EQ(info.shape, e["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(fs::path(ckpt.file_of(name).path()).filename().string(), e["file"].get<std::string>());

    const std::vector<float> v = ckpt.to_float(name);
    ASSERT_EQ(static_cast<int64_t>(v.size()), info.n_elements);
    double sum = 0, sum_abs = 0, sum_sq = 0;
    for (float x : v) {
      ASSERT_FALSE(std::isnan(x));
      sum += x;
      sum_abs += std::abs(x);
      sum_sq += double(x) * x;
    }
    // Both sides sum the same float32 values in float64, in possibly different orders.
    const double e_sum_abs = e["sum_abs"].get<double>();
    EXPECT_NEAR(sum_abs, e_sum_abs, 1e-12 * e_sum_abs);
    EXPECT_NEAR(sum, e["sum"].get<double>(), 1e-12 * e_sum_abs);
    EXPECT_NEAR(sum_sq, e["sum_sq"].get<double>(), 1e-12 * e["sum_sq"].get<double>());
    const auto first = e["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_EQ(static_cast<double>(v[i]), first[i]) << "element " << i;  // exact
      EXPECT_EQ(std::signbit(v[i]), std::signbit(first[i])) << "element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Safetensors, FixtureCheckpoint, ::testing::Values("llama_sharded", "qwen2_single"));

TEST(Safetensors, ShardedLookup) {
  const std::string dir = esa::test::fixture("safetensors/llama_sharded");
  const SafetensorsCheckpoint ckpt(dir);
  EXPECT_EQ(ckpt.index_path(), dir + "/model.safetensors.index.json");
  ASSERT_EQ(ckpt.shards().size(), 2u);
  EXPECT_EQ(&ckpt.file_of("model.embed_tokens.weight"), ckpt.shards()[0].get());
  EXPECT_EQ(&ckpt.file_of("model.layers.0.mlp.down_proj.weight"), ckpt.shards()[0].get());
  EXPECT_EQ(&ckpt.file_of("model.layers.1.self_attn.k_proj.weight"), ckpt.shards()[1].get());
  EXPECT_EQ(&ckpt.file_of("model.norm.weight"), ckpt.shards()[1].get());
  EXPECT_EQ(ckpt.find("lm_head.weight"), nullptr);  // tied
  EXPECT_EQ(ckpt.info("model.layers.1.self_attn.k_proj.weight").dtype, SafetensorsDtype::f32);
  EXPECT_EQ(ckpt.info("model.layers.1.mlp.up_proj.weight").dtype, SafetensorsDtype::f16);
  EXPECT_EQ(ckpt.info("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(ckpt.info("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{32, 64}));
  expect_error([&] { ckpt.info("model.nope"); }, ckpt.index_path(), "'model.nope'");

  // The same checkpoint opened through its index path, and one shard opened on its own.
  const SafetensorsCheckpoint via_index(ckpt.index_path());
  EXPECT_EQ(via_index.names(), ckpt.names());
  const SafetensorsFile& shard = *ckpt.shards()[1];
  EXPECT_EQ(shard.metadata().at("format"), "pt");
  uint64_t previous = 0;
  for (const auto& t : shard.tensors()) {  // file order = data offset order
    EXPECT_GE(t.offset, previous) << t.name;
    previous = t.offset + t.n_bytes;
  }
  EXPECT_EQ(shard.names().front(), shard.tensors().front().name);
  EXPECT_EQ(shard.data_offset(), 8 + shard.header_size());
  expect_error([&] { shard.info("model.embed_tokens.weight"); }, shard.path(), "'model.embed_tokens.weight'");
}

TEST(Safetensors, FolderResolution) {
  const std::string single = esa::test::fixture("safetensors/qwen2_single/model.safetensors");
  // A direct file path.
  const SafetensorsCheckpoint file(single);
  EXPECT_TRUE(file.index_path().empty());
  EXPECT_NE(file.find("model.layers.0.self_attn.q_proj.bias"), nullptr);

  // A folder with one differently named *.safetensors.
  const std::string dir = esa::test::temp_dir();
  fs::copy_file(single, dir + "/weights.safetensors");
  const SafetensorsCheckpoint one(dir);
  EXPECT_EQ(one.parameter_count(), file.parameter_count());
  EXPECT_EQ(one.names(), file.names());

  // Two of them and no index: ambiguous.
  fs::copy_file(single, dir + "/more.safetensors");
  expect_error([&] { SafetensorsCheckpoint c(dir); }, dir, "no model.safetensors.index.json");

  // Nothing at all.
  const std::string empty = esa::test::temp_dir();
  expect_error([&] { SafetensorsCheckpoint c(empty); }, empty, "*.safetensors");
  expect_error([&] { SafetensorsCheckpoint c(empty + "/absent"); }, empty + "/absent", "no such file");
}

TEST(Safetensors, AllDtypesScalarsEmptyAndUnalignedData) {
  // One tensor per dtype; the odd header length leaves every tensor unaligned in the mapping.
  std::string header =
      R"({"__metadata__":{"k":"v"},)"
      R"("f64":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
      R"("i64":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},)"
      R"("i32":{"dtype":"I32","shape":[1,1],"data_offsets":[24,28]},)"
      R"("i16":{"dtype":"I16","shape":[1],"data_offsets":[28,30]},)"
      R"("u16":{"dtype":"U16","shape":[1],"data_offsets":[30,32]},)"
      R"("i8":{"dtype":"I8","shape":[2],"data_offsets":[32,34]},)"
      R"("u8":{"dtype":"U8","shape":[1],"data_offsets":[34,35]},)"
      R"("bool":{"dtype":"BOOL","shape":[1],"data_offsets":[35,36]},)"
      R"("scalar":{"dtype":"F32","shape":[],"data_offsets":[36,40]},)"
      R"("empty":{"dtype":"BF16","shape":[3,0],"data_offsets":[40,40]},)"
      R"("f16":{"dtype":"F16","shape":[2],"data_offsets":[40,44]}})";
  if (header.size() % 2 == 0) header += " ";  // trailing spaces are legal padding
  std::string data(44, '\0');
  const double f64[2] = {1.5, -2.25};
  std::memcpy(&data[0], f64, 16);
  const float scalar = 3.0f;
  std::memcpy(&data[36], &scalar, 4);
  const uint16_t f16[2] = {0x3c00, 0x8001};  // 1.0, the smallest negative subnormal
  std::memcpy(&data[40], f16, 4);
  const std::string path = esa::test::temp_dir() + "/dtypes.safetensors";
  write_bytes(path, st_bytes(header, data));

  const SafetensorsFile f(path);
  EXPECT_EQ(f.tensors().size(), 11u);
  EXPECT_EQ(f.names().front(), "f64");
  EXPECT_EQ(f.metadata().at("k"), "v");
  EXPECT_EQ(f.to_float("f64"), (std::vector<float>{1.5f, -2.25f}));
  EXPECT_EQ(f.info("scalar").n_elements, 1);
  EXPECT_TRUE(f.info("scalar").shape.empty());
  EXPECT_EQ(f.to_float("scalar"), std::vector<float>{3.0f});
  EXPECT_EQ(f.info("empty").n_elements, 0);
  EXPECT_TRUE(f.to_float("empty").empty());
  const auto half = f.to_float("f16");
  EXPECT_EQ(half[0], 1.0f);
  EXPECT_EQ(half[1], -std::ldexp(1.0f, -24));
  EXPECT_EQ(f.info("bool").dtype, SafetensorsDtype::boolean);
  EXPECT_EQ(safetensors_dtype_size(f.info("i64").dtype), 8u);
  expect_error([&] { f.to_float("i32"); }, path, "tensor 'i32' has dtype I32");
  expect_error([&] { f.to_float("bool"); }, path, "dtype BOOL");
  EXPECT_EQ(f.parameter_count(), 2 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 0 + 2);
  for (const char* name : {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}) {
    const auto dtype = parse_safetensors_dtype(name);
    ASSERT_TRUE(dtype.has_value()) << name;
    EXPECT_STREQ(safetensors_dtype_name(*dtype), name);
  }
  EXPECT_FALSE(parse_safetensors_dtype("F8_E4M3").has_value());
}

// ---- corrupt files -------------------------------------------------------------------------

struct CorruptCase {
  const char* name;
  std::string bytes;
  const char* needle;  // what the message must say
};

std::string one_tensor(const std::string& entry, size_t data_bytes = 16) {
  return st_bytes(R"({"w":)" + entry + "}", std::string(data_bytes, '\0'));
}

std::vector<CorruptCase> corrupt_cases() {
  return {
      {"truncated_length", std::string(5, '\0'), "too short for the 8-byte header length"},
      {"length_past_file", le64(1000) + "{}", "header length 1000 exceeds the file (2 bytes"},
      {"length_above_cap", le64(uint64_t{1} << 40) + "{}", "exceeds the 100 MB cap"},
      {"bad_json", st_bytes(R"({"w": {"dtype": )", ""), "header: not valid JSON"},
      {"json_not_object", st_bytes("[1, 2, 3]", ""), "header is a JSON array, expected an object"},
      {"entry_not_object", st_bytes(R"({"w": 3})", ""), "tensor 'w': entry is 3 (number)"},
      {"missing_dtype", one_tensor(R"({"shape":[4],"data_offsets":[0,16]})"), "tensor 'w': missing 'dtype'"},
      {"unknown_dtype", one_tensor(R"({"dtype":"Q4_0","shape":[4],"data_offsets":[0,16]})"),
       "tensor 'w': unknown dtype 'Q4_0'"},
      {"shape_not_array", one_tensor(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})"),
       "tensor 'w': 'shape' is 4 (number), expected an array"},
      {"negative_dim", one_tensor(R"({"dtype":"F32","shape":[4,-1],"data_offsets":[0,16]})"),
       "tensor 'w': shape[1] is -1 (number), expected a non-negative integer"},
      {"fractional_dim", one_tensor(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,16]})"),
       "shape[0] is 2.5"},
      {"overflowing_dims",
       one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]})"),
       "tensor 'w': shape [4294967296, 4294967296, 16] has more than 2^63-1 elements"},
      {"overflowing_bytes", one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16]})"),
       "overflows 64-bit byte sizes"},
      {"offsets_past_end", one_tensor(R"({"dtype":"F32","shape":[8],"data_offsets":[0,32]})"),
       "data_offsets [0, 32] run past the end of the data section (16 bytes)"},
      {"offsets_reversed", one_tensor(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})"),
       "data_offsets [8, 4] end before they begin"},
      {"offsets_not_pair", one_tensor(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})"),
       "'data_offsets' is [0], expected [begin, end]"},
      {"offsets_negative", one_tensor(R"({"dtype":"F32","shape":[4],"data_offsets":[-4,12]})"),
       "must be two non-negative integers"},
      {"size_mismatch", one_tensor(R"({"dtype":"BF16","shape":[4],"data_offsets":[0,16]})"),
       "data_offsets [0, 16] span 16 bytes, expected 8 for shape [4] of BF16"},
      {"overlap",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::string(12, '\0')),
       "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
      {"metadata_not_strings", st_bytes(R"({"__metadata__":{"n":1}})", ""), "__metadata__['n'] is 1 (number)"},
      {"newline_in_name", st_bytes(R"({"a\nb": 3})", ""), "tensor 'a\\x0ab': entry is 3 (number)"},
  };
}

TEST(Safetensors, CorruptFilesRaiseOneLineErrorsNamingTheFile) {
  const std::string dir = esa::test::temp_dir();
  for (const auto& c : corrupt_cases()) {
    SCOPED_TRACE(c.name);
    const std::string path = dir + "/" + c.name + ".safetensors";
    write_bytes(path, c.bytes);
    expect_error([&] { SafetensorsFile f(path); }, path, c.needle);
  }
  // Through the checkpoint API too (a folder holding one corrupt file).
  const std::string folder = esa::test::temp_dir();
  write_bytes(folder + "/model.safetensors", corrupt_cases()[1].bytes);
  expect_error([&] { SafetensorsCheckpoint c(folder); }, folder + "/model.safetensors", "exceeds the file");
}

/// A copy of the sharded fixture in a temp folder, with its index replaced by `index`.
std::string sharded_copy(const std::string& index, bool copy_second_shard = true) {
  const std::string src = esa::test::fixture("safetensors/llama_sharded");
  const std::string dir = esa::test::temp_dir();
  fs::copy_file(src + "/model-00001-of-00002.safetensors", dir + "/model-00001-of-00002.safetensors");
  if (copy_second_shard) {
    fs::copy_file(src + "/model-00002-of-00002.safetensors", dir + "/model-00002-of-00002.safetensors");
  }
  std::ofstream(dir + "/model.safetensors.index.json") << index;
  return dir;
}

TEST(Safetensors, CorruptIndexes) {
  const std::string good = esa::test::read_file(
      esa::test::fixture("safetensors/llama_sharded/model.safetensors.index.json"));
  const std::string kIndex = "/model.safetensors.index.json";
  {
    const std::string dir = sharded_copy(good, /*copy_second_shard=*/false);
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex,
                 "shard 'model-00002-of-00002.safetensors' (holding 10 tensors, e.g. 'model.layers.1.input_layernorm.weight') not found");
  }
  {
    const std::string dir = sharded_copy(R"({"metadata": {"total_size": 1}})");
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex, "missing 'weight_map'");
  }
  {
    Json index = Json::parse(good);
    index["weight_map"]["model.layers.0.extra.weight"] = "model-00001-of-00002.safetensors";
    const std::string dir = sharded_copy(index.dump());
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex,
                 "tensor 'model.layers.0.extra.weight' is mapped to shard 'model-00001-of-00002.safetensors', "
                 "which does not hold it");
  }
  {
    Json index = Json::parse(good);
    index["weight_map"]["model.norm.weight"] = "../model-00002-of-00002.safetensors";
    const std::string dir = sharded_copy(index.dump());
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex, "not a file inside the folder");
  }
  {
    Json index = Json::parse(good);
    index["weight_map"]["model.norm.weight"] = 2;
    const std::string dir = sharded_copy(index.dump());
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex,
                 "weight_map['model.norm.weight'] is 2 (number), expected a shard file name");
  }
  {
    const std::string dir = sharded_copy(R"({"weight_map": [)");
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex, "not valid JSON");
  }
  {
    const std::string dir = sharded_copy(R"({"weight_map": {}})");
    expect_error([&] { SafetensorsCheckpoint c(dir); }, dir + kIndex, "'weight_map' is empty");
  }
  {
    // A tensor the index does not name is not listed: the index is authoritative.
    Json index = Json::parse(good);
    index["weight_map"].erase("model.norm.weight");
    const std::string dir = sharded_copy(index.dump());
    const SafetensorsCheckpoint c(dir);
    EXPECT_EQ(c.find("model.norm.weight"), nullptr);
    EXPECT_EQ(c.names().size(), Json::parse(good)["weight_map"].size() - 1);
  }
  {
    // A corrupt shard: its own message, naming the shard.
    const std::string dir = sharded_copy(good);
    const std::string shard = dir + "/model-00002-of-00002.safetensors";
    fs::resize_file(shard, 100);
    expect_error([&] { SafetensorsCheckpoint c(dir); }, shard, "exceeds the file");
  }
}

}  // namespace
}  // namespace esa::io
