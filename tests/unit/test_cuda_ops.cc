// The element-wise and row kernels of the GPU forward (kernels/model_ops.cuh), launch_gather_rows
// (kernels/gather_rows.cuh) and launch_rope_rows (kernels/rope_rows.cuh),
// op by op against their CPU references: ops::rms_norm_cpu, ops::rope_cpu, ops::swiglu_cpu,
// attention::gqa_fold, and plain loops for the lookups, copies and roundings. Shapes sit where the
// launch geometry changes (256 threads a block, kernels/grid_stride.cuh) in the style of
// llama.cpp's test-backend-ops; inputs are fresh random numbers from a printed seed
// (ESA_TEST_SEED overrides it). Every output buffer starts as NaN (0xff bytes), so an element a
// kernel forgets to write fails the comparison.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "attention/selection.h"
#include "rope_rows.cuh"
#include "core/device.h"
#include "core/device_buffer.h"
#include "core/half.h"
#include "core/tensor.h"
#include "engine/generate.h"
#include "gather_rows.cuh"
#include "model_ops.cuh"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "support/test_support.h"

namespace esa {
namespace {

using cuda::Buffer;

// ---- host <-> device ---------------------------------------------------------------------------

template <typename T>
Buffer<T> to_device(const std::vector<T>& host, const char* what = "test input") {
  Buffer<T> b(host.size(), what);
  b.upload(host.data(), host.size(), what, nullptr);
  return b;
}

/// n elements of 0xff bytes: NaN as float and as bf16, -1 as int.
template <typename T>
Buffer<T> output(size_t n, const char* what = "test output") {
  Buffer<T> b(n, what);
  EXPECT_EQ(cudaMemset(b.get(), 0xff, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
  return b;
}

/// The first n elements, after every launch on every stream has finished (a kernel fault shows here).
template <typename T>
std::vector<T> download(const Buffer<T>& b, size_t n) {
  std::vector<T> host(n);
  const cudaError_t sync = cudaDeviceSynchronize();
  EXPECT_EQ(sync, cudaSuccess) << "kernel failed: " << cudaGetErrorString(sync);
  if (n > 0) {
    EXPECT_EQ(cudaMemcpy(host.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return host;
}

__nv_bfloat16* bf(const Buffer<uint16_t>& b) { return reinterpret_cast<__nv_bfloat16*>(b.get()); }

#define ESA_ASSERT_LAUNCH(call)                                                                 \
  do {                                                                                          \
    const cudaError_t launch_status = (call);                                                   \
    ASSERT_EQ(launch_status, cudaSuccess) << #call << ": " << cudaGetErrorString(launch_status); \
  } while (0)

// ---- bf16 and comparisons -----------------------------------------------------------------------

/// float -> bf16, round to nearest even (finite inputs and infinities; NaN is not fed to it).
uint16_t to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// Distance in representable bf16 values (+0 and -0 coincide); INT_MAX when either is NaN.
int bf16_ulps(uint16_t a, uint16_t b) {
  if ((a & 0x7fff) > 0x7f80 || (b & 0x7fff) > 0x7f80) return INT_MAX;
  auto key = [](uint16_t x) { return (x & 0x8000) ? 0x8000 - int(x & 0x7fff) : 0x8000 + int(x); };
  return std::abs(key(a) - key(b));
}

struct Tolerance {
  double norm, atol, rtol;  // ||gpu - ref|| / ||ref|| <= norm; each |gpu - ref| <= atol + rtol |ref|
};

/// Every element passes ok(i, |got - ref|) (the first few failures named) and the norm-wise error
/// ||got - ref|| / ||ref|| is within norm_tol. NaN or infinity in got fails both.
template <typename Ok>
void expect_elements(const std::vector<float>& got, const std::vector<float>& ref, double norm_tol, Ok ok) {
  ASSERT_EQ(got.size(), ref.size());
  double diff2 = 0.0, ref2 = 0.0;
  size_t bad = 0;
  std::string first_bad;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::abs(double(got[i]) - double(ref[i]));
    diff2 += d * d;
    ref2 += double(ref[i]) * double(ref[i]);
    if (!(std::isfinite(got[i]) && ok(i, d)) && ++bad <= 5) {
      first_bad += fmt::format(" [{}] gpu {} ref {};", i, got[i], ref[i]);
    }
  }
  EXPECT_EQ(bad, 0u) << bad << " of " << ref.size() << " elements out of tolerance:" << first_bad;
  EXPECT_LE(std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-30), norm_tol) << "norm-wise relative error";
}

/// Float output: |gpu - ref| <= atol + rtol |ref|, or <= bound[i] when a bound is given.
void expect_close(const std::vector<float>& gpu, const std::vector<float>& ref, const Tolerance& tol,
                  const std::vector<float>* bound = nullptr) {
  expect_elements(gpu, ref, tol.norm, [&](size_t i, double d) {
    return d <= (bound != nullptr ? double((*bound)[i]) : tol.atol + tol.rtol * std::abs(double(ref[i])));
  });
}

// A bf16 result may be one ulp off where the float arithmetic differs slightly (order of a double
// sum, the device's expf): the float values then straddle a rounding boundary. Bound on the
// norm-wise error against the unrounded reference: rounding (u = 2^-8 relative) plus one ulp
// (2u), i.e. 3 * 2^-8, reached only if every element were off. A wrong row or pairing is O(1).
constexpr int kBf16Ulps = 1;
constexpr double kBf16Norm = 3.0 / 256.0;

/// bf16 output against the float reference rounded to bf16: within kBf16Ulps of it, or, given
/// the kernel's float tolerance before its rounding, within that plus the rounding (u |v| <=
/// 1.0625 u |ref|) of the unrounded reference (values near zero, whose ulps are tiny).
void expect_bf16_close(const std::vector<uint16_t>& gpu, const std::vector<float>& ref, double norm_tol,
                       const Tolerance* before_rounding = nullptr) {
  std::vector<float> got(gpu.size());
  for (size_t i = 0; i < gpu.size(); ++i) got[i] = bf16_to_float(gpu[i]);
  expect_elements(got, ref, norm_tol, [&](size_t i, double d) {
    if (bf16_ulps(gpu[i], to_bf16(ref[i])) <= kBf16Ulps) return true;
    const Tolerance* t = before_rounding;
    return t != nullptr && d <= t->atol + (t->rtol + 0x1.1p-8) * std::abs(double(ref[i]));
  });
}

/// Bit for bit (floats compared by their bits: NaN never equals, -0 differs from +0).
template <typename T>
void expect_bits_equal(const std::vector<T>& gpu, const std::vector<T>& ref) {
  ASSERT_EQ(gpu.size(), ref.size());
  size_t bad = 0;
  std::string first_bad;
  for (size_t i = 0; i < ref.size(); ++i) {
    bool same = gpu[i] == ref[i];
    if constexpr (std::is_same_v<T, float>) same = std::bit_cast<uint32_t>(gpu[i]) == std::bit_cast<uint32_t>(ref[i]);
    if (!same && ++bad <= 5) first_bad += fmt::format(" [{}] gpu {} ref {};", i, gpu[i], ref[i]);
  }
  EXPECT_EQ(bad, 0u) << bad << " of " << ref.size() << " elements differ:" << first_bad;
}

// RoPE: the reference rotates by cos/sin of the float angle fl(p * f) computed in double; the
// kernel reaches that angle from two float tables (angle-sum rule, a few float roundings) and a
// __sincosf correction (absolute error ~2^-21.4, the correction reaching ~1 rad near 2^24), so its
// cos and sin are within ~1.5e-6 absolute. An output x1 cos - x2 sin with N(0, 1) inputs
// (|x| <= ~5) is then within ~1.5e-5; atol 3e-5 has margin. Norm-wise the error is <~2e-6
// relative. An off-by-one position moves the first pair by O(1) rad, far outside.
constexpr Tolerance kRopeTol{5e-6, 3e-5, 1e-5};

// ---- fixture ------------------------------------------------------------------------------------

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (cuda_devices(&why).empty()) GTEST_SKIP() << "no CUDA device: " << why;
    seed_ = test::test_seed(20240611);
    rng_.seed(seed_);
  }
  std::string seed_trace() const { return "seed " + std::to_string(seed_) + " (ESA_TEST_SEED)"; }

  std::vector<float> normal(size_t n, float sigma = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng_);
    return v;
  }
  std::vector<uint16_t> normal_bf16(size_t n) {
    std::vector<uint16_t> v(n);
    for (uint16_t& b : v) b = to_bf16(std::normal_distribution<float>(0.0f, 1.0f)(rng_));
    return v;
  }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

template <typename Shape>
class CudaOpsParamTest : public CudaOpsTest, public ::testing::WithParamInterface<Shape> {};

// Shapes name their test instances and print as their names (gtest would print their bytes).
auto shape_name = [](const auto& info) { return info.param.name; };
#define ESA_PRINTS_NAME(Shape) \
  friend void PrintTo(const Shape& s, std::ostream* os) { *os << s.name; }

// ---- shapes -------------------------------------------------------------------------------------

struct RowsShape { std::string name; int rows, cols; ESA_PRINTS_NAME(RowsShape) };
// Element counts around one block (256) and four blocks (1024), one row and several.
const std::vector<RowsShape> kRowShapes = {{"r1_c1", 1, 1},       {"r1_c255", 1, 255},   {"r2_c256", 2, 256},
                                           {"r3_c257", 3, 257},   {"r1_c1023", 1, 1023}, {"r2_c1024", 2, 1024},
                                           {"r3_c1025", 3, 1025}, {"r17_c576", 17, 576}};

std::vector<RowsShape> rms_norm_shapes() {
  std::vector<RowsShape> shapes;
  for (int cols : {1, 64, 576, 1023, 1024, 1025, 4096}) {
    for (int rows : {1, 3, 17}) shapes.push_back({fmt::format("r{}_c{}", rows, cols), rows, cols});
  }
  return shapes;
}

struct ElementsShape { std::string name; int64_t n; ESA_PRINTS_NAME(ElementsShape) };
const std::vector<ElementsShape> kElementShapes = {{"n1", 1},       {"n255", 255},   {"n256", 256},
                                                   {"n257", 257},   {"n1023", 1023}, {"n1024", 1024},
                                                   {"n1025", 1025}, {"n65539", 65539}};

// ---- embedding, RMSNorm, bias -------------------------------------------------------------------

class RowOpsTest : public CudaOpsParamTest<RowsShape> {};

TEST_P(RowOpsTest, EmbedRowsCopiesTheTableRowsExactly) {
  SCOPED_TRACE(seed_trace());
  const int T = GetParam().rows, hidden = GetParam().cols, vocab = 50;
  const std::vector<uint16_t> table = normal_bf16(size_t(vocab) * hidden);
  std::vector<int> ids(static_cast<size_t>(T));
  for (int& id : ids) id = uniform_int(0, vocab - 1);
  ids.front() = vocab - 1;  // the last row is read too
  if (T > 1) ids.back() = 0;
  const Buffer<uint16_t> d_table = to_device(table);
  const Buffer<int> d_ids = to_device(ids);
  const Buffer<float> d_out = output<float>(size_t(T) * hidden);
  ESA_ASSERT_LAUNCH(cuda::launch_embed_rows(bf(d_table), d_ids.get(), T, hidden, d_out.get(), nullptr));
  std::vector<float> ref(size_t(T) * hidden);
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < hidden; ++c) ref[size_t(t) * hidden + c] = bf16_to_float(table[size_t(ids[t]) * hidden + c]);
  }
  expect_bits_equal(download(d_out, ref.size()), ref);
}

// One float addition per element, as the reference: bit for bit.
TEST_P(RowOpsTest, AddBiasAddsToEveryRowExactly) {
  SCOPED_TRACE(seed_trace());
  const int rows = GetParam().rows, cols = GetParam().cols;
  const std::vector<float> x = normal(size_t(rows) * cols), bias = normal(size_t(cols));
  Buffer<float> d_x = to_device(x);
  const Buffer<float> d_bias = to_device(bias);
  ESA_ASSERT_LAUNCH(cuda::launch_add_bias(d_x.get(), d_bias.get(), rows, cols, nullptr));
  std::vector<float> ref = x;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) ref[size_t(r) * cols + c] += bias[size_t(c)];
  }
  expect_bits_equal(download(d_x, ref.size()), ref);
}
INSTANTIATE_TEST_SUITE_P(Shapes, RowOpsTest, ::testing::ValuesIn(kRowShapes), shape_name);

class RmsNormTest : public CudaOpsParamTest<RowsShape> {};

// Both sum the squares in double and then do the same two float multiplications, so the float
// results agree except where the double sums' order flips inv's last bit: bf16 within 1 ulp.
TEST_P(RmsNormTest, MatchesRmsNormCpu) {
  SCOPED_TRACE(seed_trace());
  const int rows = GetParam().rows, cols = GetParam().cols;
  const float eps = 1e-5f;
  std::vector<float> x = normal(size_t(rows) * cols);
  for (int r = 0; r < rows; ++r) {  // rows of different scale: a row read with another's norm shows
    const float scale = std::exp2(float(uniform_int(-4, 4)));
    for (int c = 0; c < cols; ++c) x[size_t(r) * cols + c] *= scale;
  }
  std::vector<float> w(static_cast<size_t>(cols));
  for (float& v : w) v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng_);
  const Buffer<float> d_x = to_device(x), d_w = to_device(w);
  const Buffer<uint16_t> d_out = output<uint16_t>(x.size());
  ESA_ASSERT_LAUNCH(cuda::launch_rms_norm(d_x.get(), d_w.get(), rows, cols, eps, bf(d_out), nullptr));
  std::vector<float> ref(x.size());
  ops::rms_norm_cpu(x.data(), w.data(), eps, ref.data(), rows, cols);
  expect_bf16_close(download(d_out, ref.size()), ref, kBf16Norm);
}
INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormTest, ::testing::ValuesIn(rms_norm_shapes()), shape_name);

// ---- RoPE ---------------------------------------------------------------------------------------

ops::RopeTable rope_table(int rope_dim, RopeStyle style) {  // Llama 3's base, no scaling
  return ops::make_rope_table(RopeConfig{.base = 500000.0, .dim = rope_dim, .style = style});
}

/// The two-table form on the device, uploaded as lib/engine/llama_cuda.cc does.
struct DeviceRope {
  Buffer<float> inv_freq, low, high;
  cuda::RopeTables tables;
};
DeviceRope upload_rope(const ops::RopeSplitTables& split) {
  DeviceRope r;
  auto put = [](Buffer<float>& dst, const std::vector<float>& src) {
    dst.resize(src.size(), "the RoPE tables");
    EXPECT_EQ(cudaMemcpy(dst.get(), src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  };
  put(r.inv_freq, split.inv_freq);
  put(r.low, split.low);
  put(r.high, split.high);
  r.tables = {r.inv_freq.get(), reinterpret_cast<const float2*>(r.low.get()),
              reinterpret_cast<const float2*>(r.high.get()), int(split.half), split.adjacent_pairs};
  return r;  // moving the buffers keeps their device pointers
}

/// Dimensions [rope_dim, d) of every head are copied: bit for bit.
template <typename T>
void expect_tail_copied(const std::vector<T>& gpu, const std::vector<T>& x, int64_t heads_total, int d, int rope_dim) {
  std::vector<T> got, want;
  for (int64_t h = 0; h < heads_total; ++h) {
    for (int c = rope_dim; c < d; ++c) {
      got.push_back(gpu[size_t(h * d + c)]);
      want.push_back(x[size_t(h * d + c)]);
    }
  }
  expect_bits_equal(got, want);
}

struct RopeShape {
  std::string name;
  int T, heads, d, rope_dim;
  RopeStyle style;
  int64_t first;  // token t at first + t * step
  int step;
  ESA_PRINTS_NAME(RopeShape)
};
constexpr RopeStyle kAdjacent = RopeStyle::adjacent_pairs, kHalf = RopeStyle::rotate_half;
const std::vector<RopeShape> kRopeShapes = {
    {"d64_adjacent_h1_from0", 4, 1, 64, 64, kAdjacent, 0, 1},
    {"d64_half_h3_from1", 5, 3, 64, 64, kHalf, 1, 1},
    // Rotated pairs (T * heads * half, a multiple of 8) at one block and just past it, at four.
    {"d64_adjacent_h1_256pairs", 8, 1, 64, 64, kAdjacent, 3, 1},
    {"d64_half_h1_partial48_264pairs", 11, 1, 64, 48, kHalf, 0, 1},
    {"d64_adjacent_h1_1024pairs", 32, 1, 64, 64, kAdjacent, 1000, 1},
    {"d64_half_h1_partial48_1032pairs", 43, 1, 64, 48, kHalf, 0, 1},
    {"d128_adjacent_h9_across1024", 4, 9, 128, 128, kAdjacent, 1022, 1},  // low/high table boundary
    {"d128_half_h9_across1024", 4, 9, 128, 128, kHalf, 1022, 1},
    {"d128_half_h9_partial64", 3, 9, 128, 64, kHalf, 5, 1},
    {"d128_adjacent_h3_partial64", 3, 3, 128, 64, kAdjacent, 5, 1},
    {"d64_adjacent_h3_partial32_step0", 3, 3, 64, 32, kAdjacent, 0, 0},
    {"d128_half_h3_step0", 4, 3, 128, 128, kHalf, 777, 0},
    {"d128_adjacent_h3_at2pow20", 3, 3, 128, 128, kAdjacent, int64_t(1) << 20, 1},
    {"d128_half_h9_at2pow20", 3, 9, 128, 128, kHalf, int64_t(1) << 20, 1},
    {"d128_half_h9_at2pow24", 2, 9, 128, 128, kHalf, (int64_t(1) << 24) - 2, 1},  // up to 2^24 - 1
    {"d128_adjacent_h1_at2pow24", 2, 1, 128, 128, kAdjacent, (int64_t(1) << 24) - 2, 1},
    {"d64_half_h3_partial48_at2pow24_step0", 4, 3, 64, 48, kHalf, (int64_t(1) << 24) - 2, 0},
};

class RopeTest : public CudaOpsParamTest<RopeShape> {};

TEST_P(RopeTest, MatchesRopeCpu) {
  SCOPED_TRACE(seed_trace());
  const RopeShape& s = GetParam();
  std::vector<int64_t> positions(static_cast<size_t>(s.T));
  for (int t = 0; t < s.T; ++t) positions[size_t(t)] = s.first + int64_t(t) * s.step;
  const ops::RopeTable table = rope_table(s.rope_dim, s.style);
  const DeviceRope rope = upload_rope(ops::make_rope_split_tables(table, positions.back()));
  const std::vector<float> x = normal(size_t(s.T) * s.heads * s.d);
  const Buffer<float> d_x = to_device(x);
  const Buffer<float> d_out = output<float>(x.size());
  ESA_ASSERT_LAUNCH(
      cuda::launch_rope(d_x.get(), d_out.get(), s.T, s.heads, s.d, rope.tables, s.first, s.step, nullptr));
  std::vector<float> ref = x;
  ops::rope_cpu(ref.data(), positions.data(), s.T, s.heads, s.d, table);
  const std::vector<float> gpu = download(d_out, ref.size());
  expect_close(gpu, ref, kRopeTol);
  expect_tail_copied(gpu, x, int64_t(s.T) * s.heads, s.d, s.rope_dim);
}
INSTANTIATE_TEST_SUITE_P(Shapes, RopeTest, ::testing::ValuesIn(kRopeShapes), shape_name);

struct RopeRowsShape {
  std::string name;
  int64_t begin, end;  // rows, each rotated to its own index
  int heads, d, rope_dim;
  RopeStyle style;
  ESA_PRINTS_NAME(RopeRowsShape)
};
const std::vector<RopeRowsShape> kRopeRowsShapes = {
    {"one_row_d64_adjacent", 0, 1, 1, 64, 64, kAdjacent},
    {"rows0to300_d64_half", 0, 300, 1, 64, 64, kHalf},
    {"across1024_h3_d128_adjacent", 1020, 1030, 3, 128, 128, kAdjacent},
    {"across1024_h3_d128_half", 1020, 1030, 3, 128, 128, kHalf},
    {"partial64_h9_d128_half", 7, 12, 9, 128, 64, kHalf},
    {"at2pow20_h3_d128_adjacent", int64_t(1) << 20, (int64_t(1) << 20) + 3, 3, 128, 128, kAdjacent},
    // The kernel reads rows [begin, end) of a cache of `end` rows: 2 GiB here, fine on the H200.
    {"at2pow24_h1_d64_half", (int64_t(1) << 24) - 3, (int64_t(1) << 24) - 1, 1, 64, 64, kHalf},
};

class RopeRowsTest : public CudaOpsParamTest<RopeRowsShape> {};

// The reference: bf16 keys of rows [begin, end) as float, turned by rope_cpu to position
// sign * r (sign -1: the inverse rotation).
std::vector<float> turned_rows(const std::vector<uint16_t>& keys, const RopeRowsShape& s, const ops::RopeTable& table,
                               int sign) {
  const int64_t n = s.end - s.begin;
  std::vector<float> ref(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) ref[i] = bf16_to_float(keys[i]);
  std::vector<int64_t> positions(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) positions[size_t(r)] = sign * (s.begin + r);
  ops::rope_cpu(ref.data(), positions.data(), n, s.heads, s.d, table);
  return ref;
}

// bf16 keys in, each row rotated to its own position, bf16 out: the float rotation has the RoPE
// tolerance before its rounding to bf16.
TEST_P(RopeRowsTest, MatchesRopeCpuRoundedToBf16) {
  SCOPED_TRACE(seed_trace());
  const RopeRowsShape& s = GetParam();
  const int64_t n = s.end - s.begin, width = int64_t(s.heads) * s.d;
  const ops::RopeTable table = rope_table(s.rope_dim, s.style);
  const DeviceRope rope = upload_rope(ops::make_rope_split_tables(table, s.end));
  const std::vector<uint16_t> keys = normal_bf16(size_t(n * width));  // rows [begin, end)
  const Buffer<uint16_t> d_keys = output<uint16_t>(size_t(s.end * width), "the key cache");  // NaN outside
  ASSERT_EQ(cudaMemcpy(d_keys.get() + s.begin * width, keys.data(), keys.size() * sizeof(uint16_t),
                       cudaMemcpyHostToDevice), cudaSuccess);
  const Buffer<uint16_t> d_out = output<uint16_t>(keys.size());
  ESA_ASSERT_LAUNCH(cuda::launch_rope_rows(bf(d_keys), s.begin, s.end, s.heads, s.d, rope.tables, bf(d_out), nullptr));
  const std::vector<float> ref = turned_rows(keys, s, table, +1);
  const std::vector<uint16_t> gpu = download(d_out, ref.size());
  expect_bf16_close(gpu, ref, kBf16Norm + kRopeTol.norm, &kRopeTol);
  expect_tail_copied(gpu, keys, n * s.heads, s.d, s.rope_dim);  // bf16 in, the same bf16 out
}

// The inverse turn, in place in the cache (as the forward turns a dense sequence's rotated keys
// back when a selecting policy takes it over): rope_cpu at position -r is the inverse rotation.
// Rows outside [begin, end) stay untouched.
TEST_P(RopeRowsTest, TurnsBackInPlace) {
  SCOPED_TRACE(seed_trace());
  const RopeRowsShape& s = GetParam();
  const int64_t n = s.end - s.begin, width = int64_t(s.heads) * s.d;
  const ops::RopeTable table = rope_table(s.rope_dim, s.style);
  const DeviceRope rope = upload_rope(ops::make_rope_split_tables(table, s.end));
  const std::vector<uint16_t> keys = normal_bf16(size_t(n * width));
  const Buffer<uint16_t> d_keys = output<uint16_t>(size_t(s.end * width) + size_t(width), "the key cache");
  ASSERT_EQ(cudaMemcpy(d_keys.get() + s.begin * width, keys.data(), keys.size() * sizeof(uint16_t),
                       cudaMemcpyHostToDevice), cudaSuccess);
  ESA_ASSERT_LAUNCH(cuda::launch_rope_rows(bf(d_keys), s.begin, s.end, s.heads, s.d, rope.tables,
                                           bf(d_keys) + s.begin * width, nullptr, cuda::RopeTurn::from_position));
  const std::vector<float> ref = turned_rows(keys, s, table, -1);
  const std::vector<uint16_t> all = download(d_keys, size_t(s.end * width) + size_t(width));
  const std::vector<uint16_t> gpu(all.begin() + s.begin * width, all.begin() + s.end * width);
  expect_bf16_close(gpu, ref, kBf16Norm + kRopeTol.norm, &kRopeTol);
  expect_tail_copied(gpu, keys, n * s.heads, s.d, s.rope_dim);
  // The row after the range keeps its NaN filler (0xffff): nothing written past `end`.
  const std::vector<uint16_t> after(all.begin() + s.end * width, all.end());
  EXPECT_EQ(std::count(after.begin(), after.end(), uint16_t(0xffff)), width);
}
INSTANTIATE_TEST_SUITE_P(Shapes, RopeRowsTest, ::testing::ValuesIn(kRopeRowsShapes), shape_name);

// ---- KV store, SwiGLU, GQA fold -----------------------------------------------------------------

struct StoreShape { std::string name; int T, width; int64_t first_row; int cache_rows; ESA_PRINTS_NAME(StoreShape) };
const std::vector<StoreShape> kStoreShapes = {{"t1_w1_at0", 1, 1, 0, 1},         {"t1_w256_at5", 1, 256, 5, 8},
                                              {"t3_w255_at2", 3, 255, 2, 6},     {"t2_w257_at0", 2, 257, 0, 3},
                                              {"t4_w1023_at1", 4, 1023, 1, 6},   {"t1_w1024_at7", 1, 1024, 7, 8},
                                              {"t5_w1025_at3", 5, 1025, 3, 9},   {"t17_w576_at40", 17, 576, 40, 64}};

class StoreKvTest : public CudaOpsParamTest<StoreShape> {};

// RNE rounding of each element into rows [first_row, first_row + T); every other row keeps its
// (random) contents: the whole cache compared bit for bit.
TEST_P(StoreKvTest, RoundsIntoTheRowsExactly) {
  SCOPED_TRACE(seed_trace());
  const StoreShape& s = GetParam();
  const size_t n = size_t(s.T) * s.width, cache = size_t(s.cache_rows) * s.width;
  const std::vector<float> k = normal(n, 3.0f), v = normal(n, 0.25f);
  const std::vector<uint16_t> k_cache = normal_bf16(cache), v_cache = normal_bf16(cache);
  const Buffer<float> d_k = to_device(k), d_v = to_device(v);
  const Buffer<uint16_t> d_k_cache = to_device(k_cache), d_v_cache = to_device(v_cache);
  ESA_ASSERT_LAUNCH(cuda::launch_store_kv(d_k.get(), d_v.get(), s.T, s.width, bf(d_k_cache), bf(d_v_cache),
                                          s.first_row, nullptr));
  std::vector<uint16_t> k_ref = k_cache, v_ref = v_cache;
  const size_t offset = size_t(s.first_row) * s.width;
  for (size_t i = 0; i < n; ++i) {
    k_ref[offset + i] = to_bf16(k[i]);
    v_ref[offset + i] = to_bf16(v[i]);
  }
  expect_bits_equal(download(d_k_cache, cache), k_ref);
  expect_bits_equal(download(d_v_cache, cache), v_ref);
}
INSTANTIATE_TEST_SUITE_P(Shapes, StoreKvTest, ::testing::ValuesIn(kStoreShapes), shape_name);

class ElementOpsTest : public CudaOpsParamTest<ElementsShape> {};

// The device's expf is within 2 float ulps, the rest is the same IEEE division and product, and
// nothing cancels (1 + exp(-g) >= 1): the float results are a few ulps apart, bf16 within 1 ulp.
TEST_P(ElementOpsTest, SwigluMatchesSwigluCpu) {
  SCOPED_TRACE(seed_trace());
  const size_t n = size_t(GetParam().n);
  const std::vector<float> gate = normal(n, 4.0f), up = normal(n);  // gates into silu's flat tails
  const Buffer<float> d_gate = to_device(gate), d_up = to_device(up);
  const Buffer<uint16_t> d_out = output<uint16_t>(n);
  ESA_ASSERT_LAUNCH(cuda::launch_swiglu(d_gate.get(), d_up.get(), int64_t(n), bf(d_out), nullptr));
  std::vector<float> ref = gate;
  ops::swiglu_cpu(ref.data(), up.data(), int64_t(n));
  expect_bf16_close(download(d_out, n), ref, kBf16Norm);
}
struct FoldShape { std::string name; int T, hq, hkv, d; ESA_PRINTS_NAME(FoldShape) };
std::vector<FoldShape> fold_shapes() {
  std::vector<FoldShape> shapes;
  for (auto [hq, hkv] : {std::pair{9, 3}, std::pair{8, 1}, std::pair{32, 8}}) {
    for (int d : {64, 128}) {
      for (int T : {1, 5}) shapes.push_back({fmt::format("hq{}_hkv{}_d{}_t{}", hq, hkv, d, T), T, hq, hkv, d});
    }
  }
  return shapes;
}

class GqaFoldTest : public CudaOpsParamTest<FoldShape> {};

// A sum of `group` floats: in any order within (group - 1) * 2^-24 * sum |q_h| of the reference
// (both add in head order today, so the error is 0). Norm-wise that is < 1e-5 for random q. A
// head in the wrong group (h % hkv instead of h / group) is off by O(1).
TEST_P(GqaFoldTest, MatchesGqaFold) {
  SCOPED_TRACE(seed_trace());
  const FoldShape& s = GetParam();
  const int group = s.hq / s.hkv;
  const std::vector<float> q = normal(size_t(s.T) * s.hq * s.d);
  const Buffer<float> d_q = to_device(q);
  const Buffer<float> d_out = output<float>(size_t(s.T) * s.hkv * s.d);
  ESA_ASSERT_LAUNCH(cuda::launch_gqa_fold(d_q.get(), s.T, s.hq, s.hkv, s.d, d_out.get(), nullptr));
  const Tensor q_tensor({s.T, s.hq, s.d}, q);
  const Tensor folded = attention::gqa_fold(q_tensor.view(), s.hkv);
  const std::vector<float> ref(folded.data(), folded.data() + folded.numel());
  std::vector<float> bound(ref.size(), 0.0f);
  for (int t = 0; t < s.T; ++t) {
    for (int h = 0; h < s.hq; ++h) {
      for (int c = 0; c < s.d; ++c) {
        bound[(size_t(t) * s.hkv + h / group) * s.d + c] +=
            float(group - 1) * 0x1p-24f * std::abs(q[(size_t(t) * s.hq + h) * s.d + c]);
      }
    }
  }
  expect_close(download(d_out, ref.size()), ref, {1e-5, 0.0, 0.0}, &bound);
}
INSTANTIATE_TEST_SUITE_P(Shapes, GqaFoldTest, ::testing::ValuesIn(fold_shapes()), shape_name);

// ---- add, iota, to_bf16, gather -----------------------------------------------------------------

TEST_P(ElementOpsTest, AddAddsExactly) {  // one IEEE addition per element, as the reference
  SCOPED_TRACE(seed_trace());
  const size_t n = size_t(GetParam().n);
  const std::vector<float> x = normal(n), y = normal(n, 10.0f);
  Buffer<float> d_x = to_device(x);
  const Buffer<float> d_y = to_device(y);
  ESA_ASSERT_LAUNCH(cuda::launch_add(d_x.get(), d_y.get(), int64_t(n), nullptr));
  std::vector<float> ref(n);
  for (size_t i = 0; i < n; ++i) ref[i] = x[i] + y[i];
  expect_bits_equal(download(d_x, n), ref);
}
struct IotaShape { std::string name; int n, first; ESA_PRINTS_NAME(IotaShape) };
// The largest: past the grid cap (65535 * 16 blocks of 256 threads), so threads loop (1 GiB).
constexpr int kPastGridCap = 65535 * 16 * 256 + 1025;
const std::vector<IotaShape> kIotaShapes = {
    {"n0", 0, 0},           {"n1", 1, 0},          {"n255_from7", 255, 7},         {"n256", 256, 0},
    {"n257_fromminus5", 257, -5}, {"n1023", 1023, 0}, {"n1024_from2pow30", 1024, 1 << 30}, {"n1025", 1025, 3},
    {"past_grid_cap", kPastGridCap, 0}};

class IotaTest : public CudaOpsParamTest<IotaShape> {};

// Exact, and nothing written past n (four guard elements keep their 0xff bytes).
TEST_P(IotaTest, WritesConsecutiveIntegersExactly) {
  const IotaShape& s = GetParam();
  const size_t n = size_t(s.n), guard = 4;
  const Buffer<int> d_out = output<int>(n + guard);
  ESA_ASSERT_LAUNCH(cuda::launch_iota(d_out.get(), s.n, nullptr, s.first));
  std::vector<int> ref(n + guard, -1);
  for (size_t i = 0; i < n; ++i) ref[i] = s.first + int(i);
  expect_bits_equal(download(d_out, n + guard), ref);
}
INSTANTIATE_TEST_SUITE_P(Shapes, IotaTest, ::testing::ValuesIn(kIotaShapes), shape_name);

// Random bit patterns over every finite exponent (subnormals included), preceded by the cases
// that tell RNE from truncation or round-half-up: ties to even both ways, overflow to infinity.
TEST_P(ElementOpsTest, ToBf16RoundsToNearestEvenExactly) {
  SCOPED_TRACE(seed_trace());
  const size_t n = size_t(GetParam().n);
  const std::vector<float> specials = {1.0f + 0x1p-8f,  // tie, rounds down to even 1.0
                                       1.0f + 0x3p-8f,  // tie, rounds up to even 1.015625
                                       -(1.0f + 0x1p-8f), 1.0f + 0x1.02p-8f,  // just past a tie: up
                                       0.0f, -0.0f, 1e-40f, -3e-39f, std::numeric_limits<float>::max(),
                                       -std::numeric_limits<float>::infinity(), 65504.0f, -1.5f};
  std::vector<float> in(n);
  std::uniform_int_distribution<uint32_t> bits;
  for (size_t i = 0; i < n; ++i) {
    uint32_t u = bits(rng_);
    if ((u & 0x7f800000u) == 0x7f800000u) u &= 0xbfffffffu;  // no inf/NaN from the random part
    in[i] = i < specials.size() ? specials[i] : std::bit_cast<float>(u);
  }
  const Buffer<float> d_in = to_device(in);
  const Buffer<uint16_t> d_out = output<uint16_t>(n);
  ESA_ASSERT_LAUNCH(cuda::launch_to_bf16(d_in.get(), bf(d_out), int64_t(n), nullptr));
  std::vector<uint16_t> ref(n);
  for (size_t i = 0; i < n; ++i) ref[i] = to_bf16(in[i]);
  expect_bits_equal(download(d_out, n), ref);
}
INSTANTIATE_TEST_SUITE_P(Shapes, ElementOpsTest, ::testing::ValuesIn(kElementShapes), shape_name);

struct GatherShape { std::string name; int n, width, source_rows; ESA_PRINTS_NAME(GatherShape) };
const std::vector<GatherShape> kGatherShapes = {
    {"n0", 0, 64, 4},           {"n1_w1", 1, 1, 1},          {"n3_w255", 3, 255, 10},    {"n5_w256", 5, 256, 7},
    {"n2_w257", 2, 257, 3},     {"n4_w1023", 4, 1023, 9},    {"n1_w1024", 1, 1024, 2},   {"n6_w1025", 6, 1025, 8},
    {"n300_w128", 300, 128, 1000}};

class GatherRowsTest : public CudaOpsParamTest<GatherShape> {};

// Listed rows (repeats, out of order, the first and the last source row) copied bit for bit to
// k_out and v_out; with n = 0 nothing is written (the outputs keep their 0xff bytes).
TEST_P(GatherRowsTest, CopiesTheListedRowsExactly) {
  SCOPED_TRACE(seed_trace());
  const GatherShape& s = GetParam();
  const size_t width = size_t(s.width), out_n = std::max<size_t>(size_t(s.n), 1) * width;
  const std::vector<uint16_t> k = normal_bf16(size_t(s.source_rows) * width),
                              v = normal_bf16(size_t(s.source_rows) * width);
  std::vector<int> rows(static_cast<size_t>(s.n));
  for (int& r : rows) r = uniform_int(0, s.source_rows - 1);
  if (s.n > 0) rows.front() = s.source_rows - 1;
  if (s.n > 1) rows.back() = 0;
  const Buffer<uint16_t> d_k = to_device(k), d_v = to_device(v);
  const Buffer<int> d_rows = to_device(rows);
  const Buffer<uint16_t> d_k_out = output<uint16_t>(out_n), d_v_out = output<uint16_t>(out_n);
  ESA_ASSERT_LAUNCH(cuda::launch_gather_rows(bf(d_k), bf(d_v), d_rows.get(), s.n, s.width, bf(d_k_out), bf(d_v_out),
                                             nullptr));
  std::vector<uint16_t> k_ref(out_n, 0xffff), v_ref(out_n, 0xffff);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy_n(k.begin() + ptrdiff_t(size_t(rows[i]) * width), width, k_ref.begin() + ptrdiff_t(i * width));
    std::copy_n(v.begin() + ptrdiff_t(size_t(rows[i]) * width), width, v_ref.begin() + ptrdiff_t(i * width));
  }
  expect_bits_equal(download(d_k_out, out_n), k_ref);
  expect_bits_equal(download(d_v_out, out_n), v_ref);
}
INSTANTIATE_TEST_SUITE_P(Shapes, GatherRowsTest, ::testing::ValuesIn(kGatherShapes), shape_name);

// ---- greedy argmax ------------------------------------------------------------------------------

struct ArgmaxShape { std::string name; int rows; int64_t cols; ESA_PRINTS_NAME(ArgmaxShape) };
// Around one warp, one block (1024 threads) and a vocabulary (SmolLM2's 49152, Llama 3's 128256).
const std::vector<ArgmaxShape> kArgmaxShapes = {
    {"r1_c1", 1, 1},       {"r2_c31", 2, 31},       {"r3_c33", 3, 33},           {"r1_c1023", 1, 1023},
    {"r2_c1024", 2, 1024}, {"r3_c1025", 3, 1025},   {"r1_c49152", 1, 49152},     {"r4_c128256", 4, 128256}};

class ArgmaxTest : public CudaOpsParamTest<ArgmaxShape> {};

// Each row's index equals esa::argmax (the host's greedy choice) on random rows, rows whose
// maximum appears twice (the first wins), rows that hold NaN (never chosen) and a row of NaN (0).
TEST_P(ArgmaxTest, EqualsTheHostArgmax) {
  SCOPED_TRACE(seed_trace());
  const ArgmaxShape& s = GetParam();
  const size_t cols = size_t(s.cols), rows = size_t(s.rows);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* kind : {"random", "ties", "nan", "all_nan"}) {
    std::vector<float> x = normal(rows * cols);
    for (size_t r = 0; r < rows; ++r) {
      float* row = x.data() + r * cols;
      const size_t a = size_t(uniform_int(0, int(cols) - 1)), b = size_t(uniform_int(0, int(cols) - 1));
      if (std::string(kind) == "ties") row[a] = row[b] = 100.0f;
      if (std::string(kind) == "nan") row[a] = nan, row[0] = nan, row[b] = 50.0f;
      if (std::string(kind) == "all_nan") std::fill(row, row + cols, nan);
    }
    const Buffer<float> d_x = to_device(x);
    const Buffer<int> d_out = output<int>(rows);
    ESA_ASSERT_LAUNCH(cuda::launch_argmax_rows(d_x.get(), s.rows, s.cols, d_out.get(), nullptr));
    std::vector<int> ref(rows);
    for (size_t r = 0; r < rows; ++r) ref[r] = argmax(x.data() + r * cols, s.cols);
    EXPECT_EQ(download(d_out, rows), ref) << kind;
  }
}
INSTANTIATE_TEST_SUITE_P(Shapes, ArgmaxTest, ::testing::ValuesIn(kArgmaxShapes), shape_name);

// ---- argument checks ----------------------------------------------------------------------------

// Each launcher refuses the sizes it checks before launching anything (so null pointers are never
// read), and leaves no error behind for the next CUDA call.
TEST_F(CudaOpsTest, LaunchersRejectInvalidSizes) {
  constexpr cudaError_t bad = cudaErrorInvalidValue;
  float* f = nullptr;  // never read: the checks come before any launch
  __nv_bfloat16* b = nullptr;
  const cuda::RopeTables rope{nullptr, nullptr, nullptr, 32, true};
  cuda::RopeTables no_pairs = rope;
  no_pairs.half = 0;
  EXPECT_EQ(cuda::launch_embed_rows(b, nullptr, 0, 64, f, nullptr), bad);
  EXPECT_EQ(cuda::launch_embed_rows(b, nullptr, 1, -1, f, nullptr), bad);
  EXPECT_EQ(cuda::launch_rms_norm(f, f, 0, 64, 1e-5f, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_rms_norm(f, f, 1, 0, 1e-5f, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_add_bias(f, f, -1, 64, nullptr), bad);
  EXPECT_EQ(cuda::launch_add_bias(f, f, 1, 0, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope(f, f, 0, 1, 64, rope, 0, 1, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope(f, f, 1, 0, 64, rope, 0, 1, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope(f, f, 1, 1, 64, no_pairs, 0, 1, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope(f, f, 1, 1, 48, rope, 0, 1, nullptr), bad);  // 2 * 32 pairs > d
  EXPECT_EQ(cuda::launch_rope(f, f, 1, 1, 64, rope, -1, 1, nullptr), bad);
  EXPECT_EQ(cuda::launch_store_kv(f, f, 0, 64, b, b, 0, nullptr), bad);
  EXPECT_EQ(cuda::launch_store_kv(f, f, 1, 0, b, b, 0, nullptr), bad);
  EXPECT_EQ(cuda::launch_store_kv(f, f, 1, 64, b, b, -1, nullptr), bad);
  EXPECT_EQ(cuda::launch_swiglu(f, f, 0, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_gqa_fold(f, 0, 8, 2, 64, f, nullptr), bad);
  EXPECT_EQ(cuda::launch_gqa_fold(f, 1, 8, 0, 64, f, nullptr), bad);
  EXPECT_EQ(cuda::launch_gqa_fold(f, 1, 9, 2, 64, f, nullptr), bad);  // 9 heads do not split in 2
  EXPECT_EQ(cuda::launch_gqa_fold(f, 1, 8, 2, 0, f, nullptr), bad);
  EXPECT_EQ(cuda::launch_add(f, f, -1, nullptr), bad);
  EXPECT_EQ(cuda::launch_iota(nullptr, -1, nullptr), bad);
  EXPECT_EQ(cuda::launch_argmax_rows(f, 0, 64, nullptr, nullptr), bad);
  EXPECT_EQ(cuda::launch_argmax_rows(f, 1, 0, nullptr, nullptr), bad);
  EXPECT_EQ(cuda::launch_to_bf16(f, b, 0, nullptr), bad);
  EXPECT_EQ(cuda::launch_gather_rows(b, b, nullptr, -1, 64, b, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_gather_rows(b, b, nullptr, 1, 0, b, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope_rows(b, 5, 4, 1, 64, rope, b, nullptr), bad);  // end < begin
  EXPECT_EQ(cuda::launch_rope_rows(b, -1, 4, 1, 64, rope, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope_rows(b, 0, 4, 0, 64, rope, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope_rows(b, 0, 4, 1, 64, no_pairs, b, nullptr), bad);
  EXPECT_EQ(cuda::launch_rope_rows(b, 0, 4, 1, 48, rope, b, nullptr), bad);
  // Empty work is no error for the launchers that allow it (and launches nothing).
  EXPECT_EQ(cuda::launch_iota(nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::launch_gather_rows(b, b, nullptr, 0, 64, b, b, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::launch_rope_rows(b, 4, 4, 1, 64, rope, b, nullptr), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace esa
