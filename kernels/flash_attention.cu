// See flash_attention.cuh.
//
// One block of 4 warps per 64 (query, head) rows of one KV group. The block walks the listed
// rows' tiles, then the range's (up to its last query's position), 64 keys at a time:
//   K, V tile -> shared (16-byte loads);
//   S = Q K^T by WMMA (each warp its 16 rows; Q stays in registers for the segment);
//   per row: mask, running max m and sum l (base 2), P = 2^(S - m) in bf16, O *= 2^(m_old - m);
//   O += P V by WMMA, O kept in shared memory as float.
// Shared memory: K, V, S, P, O and the row statistics (96 KB at d = 128: two blocks per SM).
#include "flash_attention.cuh"

#include <mma.h>

#include <cfloat>

namespace esa::cuda {
namespace {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int kRows = 64;  // (query, head) rows per block
constexpr int kCols = 64;  // keys per tile
constexpr int kWarps = kRows / 16;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Leading dimensions padded off the bank period; every WMMA pointer stays 32-byte aligned.
template <int D>
struct FlashLayout {
  static constexpr int ldk = D + 8;      // bf16 K and V tiles (and Q while it loads)
  static constexpr int lds = kCols + 4;  // float scores
  static constexpr int ldp = kCols + 8;  // bf16 probabilities
  static constexpr int ldo = D + 4;      // float output accumulator
  static constexpr size_t v_off = size_t(kCols) * ldk * sizeof(bf16);
  static constexpr size_t s_off = v_off + size_t(kCols) * ldk * sizeof(bf16);
  static constexpr size_t p_off = s_off + size_t(kRows) * lds * sizeof(float);
  static constexpr size_t o_off = p_off + size_t(kRows) * ldp * sizeof(bf16);
  static constexpr size_t stat_off = o_off + size_t(kRows) * ldo * sizeof(float);  // m, l, factor
  static constexpr size_t bytes = stat_off + 3 * kRows * sizeof(float);
  static_assert(v_off % 32 == 0 && s_off % 32 == 0 && p_off % 32 == 0 && o_off % 32 == 0, "WMMA alignment");
};

// rows [row0, row0 + kCols) of src (row stride `stride` elements, columns [col0, col0 + D)) into
// dst [kCols, ld]; rows past n are zeros.
template <int D>
__device__ void load_tile(const bf16* src, int64_t stride, int64_t row0, int64_t n, int col0, bf16* dst, int ld) {
  constexpr int kVectors = D / 8;  // 16-byte vectors per row
  for (int i = threadIdx.x; i < kCols * kVectors; i += kThreads) {
    const int r = i / kVectors, c = (i % kVectors) * 8;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (r < n) value = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + col0 + c);
    *reinterpret_cast<uint4*>(dst + r * ld + c) = value;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_chunk_kernel(FlashChunkParams p) {
  using L = FlashLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::v_off);
  float* sS = reinterpret_cast<float*>(smem + L::s_off);
  bf16* sP = reinterpret_cast<bf16*>(smem + L::p_off);
  float* sO = reinterpret_cast<float*>(smem + L::o_off);
  float* sM = reinterpret_cast<float*>(smem + L::stat_off);
  float* sL = sM + kRows;
  float* sF = sL + kRows;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = p.hq / p.hkv, g = blockIdx.y;
  const int64_t row0 = int64_t(blockIdx.x) * kRows;  // tile row r is (query, head) pair row0 + r
  const int64_t kw = int64_t(p.hkv) * D;
  const float scale2 = p.scale * kLog2e;

  for (int i = threadIdx.x; i < kRows * L::ldo; i += kThreads) sO[i] = 0.0f;
  for (int i = threadIdx.x; i < kRows; i += kThreads) sM[i] = -INFINITY, sL[i] = 0.0f;

  // The range columns this block can see: up to its last query's position.
  const int64_t t_last = min(int64_t(p.T) - 1, (row0 + kRows - 1) / group);
  const int64_t range_visible = max(int64_t(0), min(p.range_len, p.first_query + t_last - p.range_begin + 1));

  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> q_frag[D / 16];
  for (int segment = 0; segment < 2; ++segment) {
    const bool listed = segment == 0;
    const int64_t len = listed ? p.n_rows : range_visible;
    if (len == 0) continue;
    const bf16* q = listed ? p.q_long : p.q_local;
    const bf16* k_src = listed ? p.k_rows : p.k_range;
    const bf16* v_src = listed ? p.v_rows : p.v_range;

    // Q rows through the K buffer into registers.
    __syncthreads();
    for (int i = threadIdx.x; i < kRows * (D / 8); i += kThreads) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      const int64_t pair = row0 + r, t = pair / group;
      uint4 value = make_uint4(0, 0, 0, 0);
      if (t < p.T) {
        const int64_t h = int64_t(g) * group + pair % group;
        value = *reinterpret_cast<const uint4*>(q + (t * p.hq + h) * D + c);
      }
      *reinterpret_cast<uint4*>(sK + r * L::ldk + c) = value;
    }
    __syncthreads();
    for (int k = 0; k < D / 16; ++k) wmma::load_matrix_sync(q_frag[k], sK + warp * 16 * L::ldk + k * 16, L::ldk);

    for (int64_t j0 = 0; j0 < len; j0 += kCols) {
      __syncthreads();  // every warp is done with the previous tile (and with Q in sK)
      load_tile<D>(k_src, kw, j0, len - j0, g * D, sK, L::ldk);
      load_tile<D>(v_src, kw, j0, len - j0, g * D, sV, L::ldk);
      __syncthreads();

      // S[16 rows, 64 keys] of this warp.
      for (int j = 0; j < kCols / 16; ++j) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < D / 16; ++k) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> k_frag;  // K^T
          wmma::load_matrix_sync(k_frag, sK + j * 16 * L::ldk + k * 16, L::ldk);
          wmma::mma_sync(acc, q_frag[k], k_frag, acc);
        }
        wmma::store_matrix_sync(sS + warp * 16 * L::lds + j * 16, acc, L::lds, wmma::mem_row_major);
      }
      __syncwarp();

      // Online softmax of the warp's rows; lanes take columns lane and lane + 32.
      for (int rr = 0; rr < 16; ++rr) {
        const int row = warp * 16 + rr;
        const int64_t t = (row0 + row) / group;
        float s[2];
        for (int half = 0; half < 2; ++half) {
          const int c = lane + 32 * half;
          const int64_t column = j0 + c;
          bool visible = t < p.T && column < len;
          if (!listed) visible = visible && p.range_begin + column <= p.first_query + t;
          s[half] = visible ? sS[row * L::lds + c] * scale2 : -INFINITY;
        }
        float tile_max = fmaxf(s[0], s[1]);
        for (int off = 16; off > 0; off >>= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
        const float m_old = sM[row], m_new = fmaxf(m_old, tile_max);
        const float ref = m_new == -INFINITY ? 0.0f : m_new;  // a row that has seen nothing stays at 0
        const float p0 = exp2f(s[0] - ref), p1 = exp2f(s[1] - ref);
        sP[row * L::ldp + lane] = __float2bfloat16_rn(p0);
        sP[row * L::ldp + lane + 32] = __float2bfloat16_rn(p1);
        float sum = p0 + p1;
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        __syncwarp();  // every lane has read sM[row] before lane 0 replaces it
        if (lane == 0) {
          const float factor = exp2f(m_old - ref);
          sM[row] = m_new;
          sL[row] = sL[row] * factor + sum;
          sF[row] = factor;
        }
      }
      __syncwarp();
      for (int i = lane; i < 16 * D; i += 32) {
        const int row = warp * 16 + i / D;
        sO[row * L::ldo + i % D] *= sF[row];
      }
      __syncwarp();

      // O[16 rows, D] += P V.
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        float* o = sO + warp * 16 * L::ldo + n * 16;
        wmma::load_matrix_sync(acc, o, L::ldo, wmma::mem_row_major);
        for (int k = 0; k < kCols / 16; ++k) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> p_frag;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> v_frag;
          wmma::load_matrix_sync(p_frag, sP + warp * 16 * L::ldp + k * 16, L::ldp);
          wmma::load_matrix_sync(v_frag, sV + k * 16 * L::ldk + n * 16, L::ldk);
          wmma::mma_sync(acc, p_frag, v_frag, acc);
        }
        wmma::store_matrix_sync(o, acc, L::ldo, wmma::mem_row_major);
      }
      __syncwarp();
    }
  }

  __syncthreads();
  for (int i = threadIdx.x; i < kRows * D; i += kThreads) {
    const int row = i / D, c = i % D;
    const int64_t pair = row0 + row, t = pair / group;
    if (t >= p.T) continue;
    const int64_t h = int64_t(g) * group + pair % group;
    const float l = sL[row];
    p.out[(t * p.hq + h) * D + c] = l > 0.0f ? sO[row * L::ldo + c] / l : 0.0f;
    if (c == 0 && p.lse != nullptr) p.lse[t * p.hq + h] = l > 0.0f ? sM[row] * kLn2 + logf(l) : -INFINITY;
  }
}

template <int D>
cudaError_t launch(const FlashChunkParams& p, cudaStream_t stream) {
  const size_t bytes = FlashLayout<D>::bytes;
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(flash_chunk_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (opt_in != cudaSuccess) return opt_in;
  const int64_t pairs = int64_t(p.T) * (p.hq / p.hkv);
  const dim3 grid(unsigned((pairs + kRows - 1) / kRows), unsigned(p.hkv));
  flash_chunk_kernel<D><<<grid, kThreads, bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_flash_chunk_attention(const FlashChunkParams& p, cudaStream_t stream) {
  if (p.T <= 0 || p.hq <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0 || p.n_rows < 0 || p.range_len < 0 ||
      p.range_begin < 0 || p.hkv > 65535 || p.out == nullptr || p.q_local == nullptr) {
    return cudaErrorInvalidValue;
  }
  if ((p.n_rows > 0 && (p.q_long == nullptr || p.k_rows == nullptr || p.v_rows == nullptr)) ||
      (p.range_len > 0 && (p.k_range == nullptr || p.v_range == nullptr))) {
    return cudaErrorInvalidValue;
  }
  if (p.d == 64) return launch<64>(p, stream);
  if (p.d == 128) return launch<128>(p, stream);
  return cudaErrorInvalidValue;
}

}  // namespace esa::cuda
