// CPU reference of dequantize: one function per ggml block format, written from the GGUF
// specification's block layouts (block structs in memory order are given above each function).
// Checked against gguf-py's numpy dequantisers on random blocks (tests/unit/test_dequantize.cc).
#include <cstring>
#include <stdexcept>

#include "core/half.h"
#include "ops/dequantize.h"

namespace esa::ops {
namespace {

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_float(h);
}

// Q4_0 {f16 d; u8 qs[16]}: x = (nibble - 8) * d; low nibbles are elements 0..15, high 16..31.
void q4_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = float((qs[j] & 0x0f) - 8) * d;
    y[j + 16] = float((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1 {f16 d; f16 m; u8 qs[16]}: x = nibble * d + m.
void q4_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = float(qs[j] & 0x0f) * d + m;
    y[j + 16] = float(qs[j] >> 4) * d + m;
  }
}

// Q5_0 {f16 d; u32 qh; u8 qs[16]}: 5-bit values, the fifth bit of element j in qh bit j.
void q5_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10;
    const int h1 = (qh >> (j + 12)) & 0x10;
    y[j] = float(((qs[j] & 0x0f) | h0) - 16) * d;
    y[j + 16] = float(((qs[j] >> 4) | h1) - 16) * d;
  }
}

// Q5_1 {f16 d; f16 m; u32 qh; u8 qs[16]}: x = q5 * d + m.
void q5_1(const uint8_t* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10;
    const int h1 = (qh >> (j + 12)) & 0x10;
    y[j] = float((qs[j] & 0x0f) | h0) * d + m;
    y[j + 16] = float((qs[j] >> 4) | h1) * d + m;
  }
}

// Q8_0 {f16 d; i8 qs[32]}: x = q * d.
void q8_0(const uint8_t* b, float* y) {
  const float d = half_at(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

// Q2_K {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}: 16 sub-blocks of 16, 2-bit values,
// scale (low nibble) and min (high nibble) per sub-block.
void q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half_at(b + 80), dmin = half_at(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      uint8_t sc = scales[is++];
      float dl = d * float(sc & 0x0f), ml = dmin * float(sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l] >> shift) & 3) - ml;
      sc = scales[is++];
      dl = d * float(sc & 0x0f);
      ml = dmin * float(sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16] >> shift) & 3) - ml;
      shift += 2;
    }
    q += 32;
  }
}

// Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: 3-bit values (2 low bits in qs, the
// high bit in hmask, subtract 4 when it is clear), 16 six-bit signed scales packed in 12 bytes.
void q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const float d_all = half_at(b + 108);
  uint32_t aux[4];
  std::memcpy(aux, b + 96, 12);
  constexpr uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  int8_t scales[16];
  std::memcpy(scales, aux, 16);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      float dl = d_all * float(scales[is++] - 32);
      for (int l = 0; l < 16; ++l) *y++ = dl * float(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      dl = d_all * float(scales[is++] - 32);
      for (int l = 0; l < 16; ++l) *y++ = dl * float(((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
      shift += 2;
      m = uint8_t(m << 1);
    }
    q += 32;
  }
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block, packed in 12 bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = uint8_t((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32, x = d*sc*q - dmin*m.
void q4_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

// Q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: Q4_K plus a fifth bit in qh.
void q5_k(const uint8_t* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = uint8_t(u1 << 2);
    u2 = uint8_t(u2 << 2);
  }
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: 6-bit values minus 32, 16 sub-blocks.
void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_at(b + 208);
  for (int n = 0; n < 256; n += 128) {
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

template <void (*Block)(const uint8_t*, float*)>
void run_blocks(const uint8_t* src, float* dst, int64_t n_blocks, int64_t block_bytes, int64_t block_elems) {
#pragma omp parallel for schedule(static) if (n_blocks > 4096)
  for (int64_t i = 0; i < n_blocks; ++i) Block(src + i * block_bytes, dst + i * block_elems);
}

}  // namespace

void dequantize_cpu(io::GgmlType type, const uint8_t* src, float* dst, int64_t n_blocks) {
  using io::GgmlType;
  switch (type) {
    case GgmlType::f32:
      std::memcpy(dst, src, size_t(n_blocks) * 4);
      return;
    case GgmlType::f16:
#pragma omp parallel for schedule(static) if (n_blocks > 65536)
      for (int64_t i = 0; i < n_blocks; ++i) dst[i] = half_at(src + 2 * i);
      return;
    case GgmlType::bf16:
#pragma omp parallel for schedule(static) if (n_blocks > 65536)
      for (int64_t i = 0; i < n_blocks; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_float(h);
      }
      return;
    case GgmlType::q4_0: return run_blocks<q4_0>(src, dst, n_blocks, 18, 32);
    case GgmlType::q4_1: return run_blocks<q4_1>(src, dst, n_blocks, 20, 32);
    case GgmlType::q5_0: return run_blocks<q5_0>(src, dst, n_blocks, 22, 32);
    case GgmlType::q5_1: return run_blocks<q5_1>(src, dst, n_blocks, 24, 32);
    case GgmlType::q8_0: return run_blocks<q8_0>(src, dst, n_blocks, 34, 32);
    case GgmlType::q2_k: return run_blocks<q2_k>(src, dst, n_blocks, 84, 256);
    case GgmlType::q3_k: return run_blocks<q3_k>(src, dst, n_blocks, 110, 256);
    case GgmlType::q4_k: return run_blocks<q4_k>(src, dst, n_blocks, 144, 256);
    case GgmlType::q5_k: return run_blocks<q5_k>(src, dst, n_blocks, 176, 256);
    case GgmlType::q6_k: return run_blocks<q6_k>(src, dst, n_blocks, 210, 256);
    default: break;
  }
  // The dispatcher only calls with dequantisable types.
  throw std::logic_error("dequantize_cpu: unsupported type");
}

}  // namespace esa::ops
