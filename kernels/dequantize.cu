// One thread per ggml block: dequantisation runs once at load and is bound by reading the
// quantised bytes, so a simple mapping suffices. Layouts: see lib/ops/dequantize_cpu.cc.
#include "dequantize.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace esa::cuda {
namespace {

__device__ inline float half_at(const uint8_t* p) {
  const uint16_t bits = uint16_t(p[0]) | (uint16_t(p[1]) << 8);
  return __half2float(__ushort_as_half(bits));
}

__device__ void q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = float((b[2 + j] & 0x0f) - 8) * d;
    y[j + 16] = float((b[2 + j] >> 4) - 8) * d;
  }
}

__device__ void q4_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b[4 + j] & 0x0f) * d + m;
    y[j + 16] = float(b[4 + j] >> 4) * d + m;
  }
}

__device__ uint32_t u32_at(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

__device__ void q5(const uint8_t* b, float* y, bool with_min) {
  const float d = half_at(b), m = with_min ? half_at(b + 2) : 0.0f;
  const int off = with_min ? 4 : 2;
  const uint32_t qh = u32_at(b + off);
  const uint8_t* qs = b + off + 4;
  const int bias = with_min ? 0 : 16;
  for (int j = 0; j < 16; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10;
    const int h1 = (qh >> (j + 12)) & 0x10;
    y[j] = float(((qs[j] & 0x0f) | h0) - bias) * d + m;
    y[j + 16] = float(((qs[j] >> 4) | h1) - bias) * d + m;
  }
}

__device__ void q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
}

__device__ void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

__device__ void q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int is = 0; is < 8; is += 2) {
    int sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) y[l] = d1 * float(q[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) y[32 + l] = d2 * float(q[l] >> 4) - m2;
    y += 64;
    q += 32;
  }
}

__device__ void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int n = 0; n < 2; ++n) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is + 0]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

struct Geometry {
  int block_bytes;
  int block_elems;
};

__host__ __device__ inline Geometry geometry(uint32_t type) {
  switch (type) {
    case 1: return {2, 1};      // F16
    case 30: return {2, 1};     // BF16
    case 2: return {18, 32};    // Q4_0
    case 3: return {20, 32};    // Q4_1
    case 6: return {22, 32};    // Q5_0
    case 7: return {24, 32};    // Q5_1
    case 8: return {34, 32};    // Q8_0
    case 12: return {144, 256}; // Q4_K
    case 14: return {210, 256}; // Q6_K
    default: return {0, 0};
  }
}

__global__ void dequantize_kernel(DequantizeParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.n_blocks) return;
  const Geometry g = geometry(p.ggml_type);
  const uint8_t* b = p.src + i * g.block_bytes;  // [block_bytes]
  float* y = p.dst + i * g.block_elems;          // [block_elems]
  switch (p.ggml_type) {
    case 1: y[0] = half_at(b); break;
    case 30: y[0] = __uint_as_float((uint32_t(b[0]) | (uint32_t(b[1]) << 8)) << 16); break;
    case 2: q4_0(b, y); break;
    case 3: q4_1(b, y); break;
    case 6: q5(b, y, false); break;
    case 7: q5(b, y, true); break;
    case 8: q8_0(b, y); break;
    case 12: q4_k(b, y); break;
    case 14: q6_k(b, y); break;
  }
}

}  // namespace

bool dequantize_supported(uint32_t ggml_type) { return geometry(ggml_type).block_bytes != 0; }

cudaError_t launch_dequantize(const DequantizeParams& params, cudaStream_t stream) {
  if (!dequantize_supported(params.ggml_type)) return cudaErrorInvalidValue;
  if (params.n_blocks <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t grid = (params.n_blocks + kThreads - 1) / kThreads;
  if (grid > 0x7fffffff) return cudaErrorInvalidConfiguration;
  dequantize_kernel<<<unsigned(grid), kThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace esa::cuda
