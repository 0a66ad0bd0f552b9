// See flash_attention.cuh.
//
// Grid (query block, KV head, split). A block of 4 warps owns 64 (query, head) rows of one KV
// group and walks its split's share of the column tiles (the listed rows' tiles, then the
// range's up to its last query's position), 64 keys at a time:
//   K, V tile -> shared (the next tile's loads are issued before this tile's math);
//   S = Q K^T by WMMA (each warp its 16 rows; Q in registers for the segment);
//   per row (two lanes a row, 32 columns each): mask, running max m and sum l (base 2),
//   P = 2^(S - m) in bf16, O *= 2^(m_old - m);
//   O += P V by WMMA, O kept in shared memory as float.
// One split writes the normalised output; several write (O, m, l) and a merge kernel combines
// them. Shared memory: K, V, S, P, O and the row statistics (96 KB at d = 128: two blocks per SM).
#include "flash_attention.cuh"

#include <mma.h>

#include <algorithm>

#include "device_query.cuh"

namespace esa::cuda {
namespace {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int kRows = 64;  // (query, head) rows per block
constexpr int kCols = 64;  // keys per tile
constexpr int kWarps = kRows / 16;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxSplits = 64;
constexpr int kMinTilesPerSplit = 4;
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
  static constexpr size_t stat_off = o_off + size_t(kRows) * ldo * sizeof(float);  // m, l
  static constexpr size_t bytes = stat_off + 2 * kRows * sizeof(float);
  static_assert(v_off % 32 == 0 && s_off % 32 == 0 && p_off % 32 == 0 && o_off % 32 == 0, "WMMA alignment");
  static constexpr int vectors = kCols * D / 8 / kThreads;  // 16-byte vectors per thread per tile
};

// The columns a block sees: n_rows listed, then the range up to its last query's position.
__host__ __device__ inline int64_t range_visible(const FlashChunkParams& p, int64_t block) {
  const int group = p.hq / p.hkv;
  int64_t t_last = (block * kRows + kRows - 1) / group;
  if (t_last > p.T - 1) t_last = p.T - 1;
  int64_t v = p.first_query + t_last - p.range_begin + 1;
  if (v > p.range_len) v = p.range_len;
  return v > 0 ? v : 0;
}

__host__ __device__ inline int64_t tiles(int64_t columns) { return (columns + kCols - 1) / kCols; }

template <int D>
struct TileRegs {
  uint4 k[FlashLayout<D>::vectors], v[FlashLayout<D>::vectors];
};

// Rows [row0, row0 + kCols) of a segment (n rows in all, row stride kw, columns col0 ...) into
// registers; rows past n are zeros.
template <int D>
__device__ __forceinline__ void fetch_tile(const bf16* k, const bf16* v, int64_t kw, int64_t row0, int64_t n, int col0,
                                           TileRegs<D>& r) {
#pragma unroll
  for (int i = 0; i < FlashLayout<D>::vectors; ++i) {
    const int e = threadIdx.x + i * kThreads;
    const int row = e / (D / 8), c = (e % (D / 8)) * 8;
    const bool ok = row0 + row < n;
    const int64_t at = (row0 + row) * kw + col0 + c;
    r.k[i] = ok ? *reinterpret_cast<const uint4*>(k + at) : make_uint4(0, 0, 0, 0);
    r.v[i] = ok ? *reinterpret_cast<const uint4*>(v + at) : make_uint4(0, 0, 0, 0);
  }
}

template <int D>
__device__ __forceinline__ void store_tile(const TileRegs<D>& r, bf16* sK, bf16* sV) {
#pragma unroll
  for (int i = 0; i < FlashLayout<D>::vectors; ++i) {
    const int e = threadIdx.x + i * kThreads;
    const int row = e / (D / 8), c = (e % (D / 8)) * 8;
    *reinterpret_cast<uint4*>(sK + row * FlashLayout<D>::ldk + c) = r.k[i];
    *reinterpret_cast<uint4*>(sV + row * FlashLayout<D>::ldk + c) = r.v[i];
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) flash_chunk_kernel(FlashChunkParams p, int splits) {
  using L = FlashLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::v_off);
  float* sS = reinterpret_cast<float*>(smem + L::s_off);
  bf16* sP = reinterpret_cast<bf16*>(smem + L::p_off);
  float* sO = reinterpret_cast<float*>(smem + L::o_off);
  float* sM = reinterpret_cast<float*>(smem + L::stat_off);
  float* sL = sM + kRows;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = p.hq / p.hkv, g = blockIdx.y, split = blockIdx.z;
  const int64_t row0 = int64_t(blockIdx.x) * kRows;  // tile row r is (query, head) pair row0 + r
  const int64_t kw = int64_t(p.hkv) * D;
  const float scale2 = p.scale * kLog2e;

  for (int i = threadIdx.x; i < kRows * L::ldo; i += kThreads) sO[i] = 0.0f;
  for (int i = threadIdx.x; i < kRows; i += kThreads) sM[i] = -INFINITY, sL[i] = 0.0f;

  // This split's share of the block's tiles: listed tiles [0, n0), range tiles [n0, n0 + n1).
  const int64_t visible = range_visible(p, blockIdx.x);
  const int64_t n0 = tiles(p.n_rows), n1 = tiles(visible);
  const int64_t per = (n0 + n1 + splits - 1) / splits;
  const int64_t my_first = min(int64_t(split) * per, n0 + n1), my_end = min(my_first + per, n0 + n1);

  // The softmax lanes: two a row (row = warp * 16 + lane / 2), 32 columns each, visited from a
  // lane-dependent start so that the 32 lanes hit 32 banks.
  const int my_row = warp * 16 + lane / 2, my_half = lane & 1;
  const int64_t my_t = (row0 + my_row) / group;

  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> q_frag[D / 16];
  for (int segment = 0; segment < 2; ++segment) {
    const bool listed = segment == 0;
    const int64_t t_begin = listed ? my_first : max(my_first, n0), t_end = listed ? min(my_end, n0) : my_end;
    if (t_begin >= t_end) continue;
    const int64_t len = !listed ? visible : p.rows_valid != nullptr ? min(p.n_rows, int64_t(*p.rows_valid)) : p.n_rows;
    const int64_t base = listed ? 0 : n0;  // tile index of the segment's first tile
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

    TileRegs<D> regs;
    fetch_tile<D>(k_src, v_src, kw, (t_begin - base) * kCols, len, g * D, regs);
    for (int64_t tile = t_begin; tile < t_end; ++tile) {
      const int64_t j0 = (tile - base) * kCols;
      __syncthreads();  // every warp is done with the previous tile (and with Q in sK)
      store_tile<D>(regs, sK, sV);
      __syncthreads();
      if (tile + 1 < t_end) fetch_tile<D>(k_src, v_src, kw, j0 + kCols, len, g * D, regs);  // in flight meanwhile

      // S[16 rows, 64 keys] of this warp.
#pragma unroll
      for (int j = 0; j < kCols / 16; ++j) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int k = 0; k < D / 16; ++k) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> k_frag;  // K^T
          wmma::load_matrix_sync(k_frag, sK + j * 16 * L::ldk + k * 16, L::ldk);
          wmma::mma_sync(acc, q_frag[k], k_frag, acc);
        }
        wmma::store_matrix_sync(sS + warp * 16 * L::lds + j * 16, acc, L::lds, wmma::mem_row_major);
      }
      __syncwarp();

      // Online softmax: this lane's 32 columns of its row.
      {
        const float* s_row = sS + my_row * L::lds + my_half * 32;
        bf16* p_row = sP + my_row * L::ldp + my_half * 32;
        // Columns visible to the row: all listed ones that exist; the range's up to its position.
        int64_t limit = len - j0 - my_half * 32;
        if (!listed) limit = min(limit, p.first_query + my_t - p.range_begin + 1 - j0 - my_half * 32);
        if (my_t >= p.T) limit = 0;
        float m_tile = -INFINITY;
#pragma unroll 8
        for (int i = 0; i < 32; ++i) {
          const int c = (i + lane) & 31;
          if (c < limit) m_tile = fmaxf(m_tile, s_row[c]);
        }
        m_tile = fmaxf(m_tile, __shfl_xor_sync(0xffffffffu, m_tile, 1)) * scale2;
        const float m_old = sM[my_row], m_new = fmaxf(m_old, m_tile);
        const float ref = m_new == -INFINITY ? 0.0f : m_new;  // a row that has seen nothing stays at 0
        float sum = 0.0f;
#pragma unroll 8
        for (int i = 0; i < 32; ++i) {
          const int c = (i + lane) & 31;
          const float e = c < limit ? exp2f(s_row[c] * scale2 - ref) : 0.0f;
          sum += e;
          p_row[c] = __float2bfloat16_rn(e);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        const float factor = exp2f(m_old - ref);
        float* o_row = sO + my_row * L::ldo + my_half * (D / 2);
#pragma unroll 8
        for (int i = 0; i < D / 2; ++i) {
          const int c = (i + lane) % (D / 2);
          o_row[c] *= factor;
        }
        __syncwarp();  // both lanes of the row have read sM before it changes
        if (my_half == 0) {
          sM[my_row] = m_new;
          sL[my_row] = sL[my_row] * factor + sum;
        }
      }
      __syncwarp();

      // O[16 rows, D] += P V.
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        float* o = sO + warp * 16 * L::ldo + n * 16;
        wmma::load_matrix_sync(acc, o, L::ldo, wmma::mem_row_major);
#pragma unroll
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
  const int64_t rows_total = int64_t(p.T) * p.hq;
  for (int i = threadIdx.x; i < kRows * D; i += kThreads) {
    const int row = i / D, c = i % D;
    const int64_t pair = row0 + row, t = pair / group;
    if (t >= p.T) continue;
    const int64_t h = int64_t(g) * group + pair % group, at = t * p.hq + h;
    const float l = sL[row];
    if (splits == 1) {
      p.out[at * D + c] = l > 0.0f ? sO[row * L::ldo + c] / l : 0.0f;
      if (c == 0 && p.lse != nullptr) p.lse[at] = l > 0.0f ? sM[row] * kLn2 + logf(l) : -INFINITY;
    } else {  // unnormalised output, then (m, l) after every split's outputs
      p.partial[(int64_t(split) * rows_total + at) * D + c] = sO[row * L::ldo + c];
      if (c == 0) {
        float* ml = p.partial + int64_t(splits) * rows_total * D + (int64_t(split) * rows_total + at) * 2;
        ml[0] = sM[row];
        ml[1] = l;
      }
    }
  }
}

// A thread per output element: the splits' (O, m, l) merged by log-sum-exp (base 2).
__global__ void flash_merge_kernel(FlashChunkParams p, int splits, int d) {
  const int64_t rows_total = int64_t(p.T) * p.hq;
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows_total * d) return;
  const int64_t at = i / d;
  const float* ml = p.partial + int64_t(splits) * rows_total * d;
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, ml[(s * rows_total + at) * 2]);
  float l = 0.0f, o = 0.0f;
  if (m != -INFINITY) {
    for (int s = 0; s < splits; ++s) {
      const float w = exp2f(ml[(s * rows_total + at) * 2] - m);
      l += w * ml[(s * rows_total + at) * 2 + 1];
      o += w * p.partial[(s * rows_total) * d + i];
    }
  }
  p.out[i] = l > 0.0f ? o / l : 0.0f;
  if (i % d == 0 && p.lse != nullptr) p.lse[at] = l > 0.0f ? m * kLn2 + logf(l) : -INFINITY;
}

template <int D>
cudaError_t launch(const FlashChunkParams& p, cudaStream_t stream) {
  const size_t bytes = FlashLayout<D>::bytes;
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(flash_chunk_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (opt_in != cudaSuccess) return opt_in;
  const int splits = flash_chunk_splits(p);
  if (splits > 1 && p.partial == nullptr) return cudaErrorInvalidValue;
  const int64_t pairs = int64_t(p.T) * (p.hq / p.hkv);
  const dim3 grid(unsigned((pairs + kRows - 1) / kRows), unsigned(p.hkv), unsigned(splits));
  flash_chunk_kernel<D><<<grid, kThreads, bytes, stream>>>(p, splits);
  if (splits > 1) {
    const int64_t n = int64_t(p.T) * p.hq * D;
    flash_merge_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(p, splits, D);
  }
  return cudaGetLastError();
}

}  // namespace

int flash_chunk_splits(const FlashChunkParams& p) {
  if (p.T <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0) return 1;
  const int64_t blocks = (int64_t(p.T) * (p.hq / p.hkv) + kRows - 1) / kRows * p.hkv;
  const int64_t most_tiles = tiles(p.n_rows) + tiles(p.range_len);
  const int64_t want = (4 * int64_t(current_multiprocessors()) + blocks - 1) / blocks;  // two waves of two per SM
  const int64_t splits = std::min({want, most_tiles / kMinTilesPerSplit, int64_t(kMaxSplits)});
  return int(std::max<int64_t>(splits, 1));
}

size_t flash_chunk_partial_floats(const FlashChunkParams& p) {
  const int splits = flash_chunk_splits(p);
  return splits > 1 ? size_t(splits) * size_t(p.T) * size_t(p.hq) * size_t(p.d + 2) : 0;
}

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
