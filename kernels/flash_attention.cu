// See flash_attention.cuh.
//
// Grid (query block, KV head, split). A block of W = 4 or 8 warps owns 16 W (query, head) rows of
// one KV group (16 a warp) and walks its split's share of the column tiles (the listed rows' tiles, then
// the range's up to its last query's position), 64 keys at a time, as FlashAttention-2:
//   K, V tiles -> shared memory by cp.async, double-buffered (tile j + 1 lands while j is used);
//   S = Q K^T by mma.sync m16n8k16 (bf16 in, f32 out): Q, S, P and O live in registers, the
//   operands come from shared memory by ldmatrix (V transposed on the way);
//   online softmax in base 2 on the accumulators (a row's 64 columns sit in the 4 lanes of a quad);
//   P (bf16) is the next mma's A operand straight from S's registers.
// One split writes the normalised output; several write (O, m, l) and a merge kernel combines
// them. Shared memory: Q and two K, V stages, rows padded by 16 bytes so that ldmatrix's 8 rows
// fall in distinct banks (d = 128: 85 KB with 4 warps, two blocks per SM; 102 KB with 8, one:
// the registers, ~240 a thread, allow no more).
#include "flash_attention.cuh"

#include <algorithm>
#include <cstdlib>

#include "device_query.cuh"
#include "tensor_core.cuh"

namespace esa::cuda {
namespace {

using bf16 = __nv_bfloat16;
using namespace tc;

constexpr int kCols = 64;  // keys per tile
constexpr int kMaxSplits = 64;
constexpr int kMinTilesPerSplit = 4;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// W warps a block, 16 (query, head) rows each.
template <int D, int W>
struct FlashLayout {
  static constexpr int rows = 16 * W, threads = 32 * W;
  static constexpr int ld = D + 8;  // bf16 elements per shared row (Q, K and V alike)
  static constexpr int tile = kCols * ld;
  static constexpr size_t bytes = size_t(rows * ld + 4 * tile) * sizeof(bf16);  // Q, K[2], V[2]
  static constexpr int vectors = kCols * D / 8 / threads;                      // 16-byte copies a thread a tile
  static_assert(kCols * D / 8 % threads == 0, "a tile's 16-byte copies divide evenly over the threads");
};

// Warps a block: 8 (128 rows, each K/V tile read once for twice the rows) once the chunk fills
// such blocks, else 4. ESA_FLASH_WARPS=4|8 overrides (benchmarks).
int block_warps(const FlashChunkParams& p) {
  static const int forced = [] {
    const char* v = std::getenv("ESA_FLASH_WARPS");
    return v != nullptr && (std::atoi(v) == 4 || std::atoi(v) == 8) ? std::atoi(v) : 0;
  }();
  if (forced != 0) return forced;
  return int64_t(p.T) * (p.hq / p.hkv) >= 256 ? 8 : 4;
}

// The columns a block of `rows` rows sees: n_rows listed, then the range up to its last query's position.
__host__ __device__ inline int64_t range_visible(const FlashChunkParams& p, int64_t block, int rows) {
  const int group = p.hq / p.hkv;
  int64_t t_last = (block * rows + rows - 1) / group;
  if (t_last > p.T - 1) t_last = p.T - 1;
  int64_t v = p.first_query + t_last - p.range_begin + 1;
  if (v > p.range_len) v = p.range_len;
  return v > 0 ? v : 0;
}

__host__ __device__ inline int64_t tiles(int64_t columns) { return (columns + kCols - 1) / kCols; }

// Rows [row0, row0 + kCols) of a segment's K and V (n rows in all, row stride kw, columns
// col0 ...) into a stage; rows past n are zeros.
template <int D, int W>
__device__ __forceinline__ void load_tile(const bf16* k, const bf16* v, int64_t kw, int64_t row0, int64_t n, int col0,
                                          bf16* sK, bf16* sV) {
#pragma unroll
  for (int i = 0; i < FlashLayout<D, W>::vectors; ++i) {
    const int e = threadIdx.x + i * FlashLayout<D, W>::threads;
    const int row = e / (D / 8), c = (e % (D / 8)) * 8;
    const bool ok = row0 + row < n;
    const int64_t at = ok ? (row0 + row) * kw + col0 + c : 0;
    copy_async16(sK + row * FlashLayout<D, W>::ld + c, k + at, ok);
    copy_async16(sV + row * FlashLayout<D, W>::ld + c, v + at, ok);
  }
}

template <int D, int W>
__global__ void __launch_bounds__(32 * W, W == 4 ? 2 : 1) flash_chunk_kernel(FlashChunkParams p, int splits) {
  using L = FlashLayout<D, W>;
  constexpr int kRows = L::rows, kThreads = L::threads;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sK = sQ + kRows * L::ld;  // stage s at sK + s * tile
  bf16* sV = sK + 2 * L::tile;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int quad_row = lane / 4, quad_col = (lane % 4) * 2;  // the mma accumulator layout
  const int group = p.hq / p.hkv, g = blockIdx.y, split = blockIdx.z;
  const int64_t row0 = int64_t(blockIdx.x) * kRows;  // tile row r is (query, head) pair row0 + r
  const int64_t kw = int64_t(p.hkv) * D;
  const float scale2 = p.scale * kLog2e;

  // This thread's two rows: warp * 16 + quad_row and 8 below.
  int64_t my_t[2];
  for (int r = 0; r < 2; ++r) my_t[r] = (row0 + warp * 16 + quad_row + 8 * r) / group;
  const int64_t block_t_first = row0 / group;

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's share of the row sum

  // This split's share of the block's tiles: listed tiles [0, n0), range tiles [n0, n0 + n1).
  const int64_t visible = range_visible(p, blockIdx.x, kRows);
  const int64_t n0 = tiles(p.n_rows), n1 = tiles(visible);
  const int64_t per = (n0 + n1 + splits - 1) / splits;
  const int64_t my_first = min(int64_t(split) * per, n0 + n1), my_end = min(my_first + per, n0 + n1);

  for (int segment = 0; segment < 2; ++segment) {
    const bool listed = segment == 0;
    const int64_t t_begin = listed ? my_first : max(my_first, n0), t_end = listed ? min(my_end, n0) : my_end;
    if (t_begin >= t_end) continue;
    const int64_t len = !listed ? visible : p.rows_valid != nullptr ? min(p.n_rows, int64_t(*p.rows_valid)) : p.n_rows;
    const int64_t base = listed ? 0 : n0;  // tile index of the segment's first tile
    const bf16* q = listed ? p.q_long : p.q_local;
    const bf16* k_src = listed ? p.k_rows : p.k_range;
    const bf16* v_src = listed ? p.v_rows : p.v_range;

    __syncthreads();  // every warp is done with sQ and both stages (the previous segment)
    for (int i = threadIdx.x; i < kRows * (D / 8); i += kThreads) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      const int64_t pair = row0 + r, t = pair / group;
      const bool ok = t < p.T;
      const int64_t h = int64_t(g) * group + pair % group;
      copy_async16(sQ + r * L::ld + c, q + (ok ? (t * p.hq + h) * D + c : 0), ok);
    }
    load_tile<D, W>(k_src, v_src, kw, (t_begin - base) * kCols, len, g * D, sK, sV);
    copy_async_commit();

    unsigned q_frag[D / 16][4];
    for (int64_t tile = t_begin; tile < t_end; ++tile) {
      const int stage = int((tile - t_begin) & 1);
      const int64_t j0 = (tile - base) * kCols;
      if (tile + 1 < t_end) {
        load_tile<D, W>(k_src, v_src, kw, j0 + kCols, len, g * D, sK + (stage ^ 1) * L::tile, sV + (stage ^ 1) * L::tile);
        copy_async_commit();
        copy_async_wait<1>();
      } else {
        copy_async_wait<0>();
      }
      __syncthreads();
      const bf16* k_tile = sK + stage * L::tile;
      const bf16* v_tile = sV + stage * L::tile;
      if (tile == t_begin) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          load_a(q_frag[kk], sQ + warp * 16 * L::ld, L::ld, kk * 16, lane);
        }
      }

      // S[16 rows, 64 keys] of this warp: n-tile j holds keys 8j ... 8j + 7.
      float s[kCols / 8][4];
#pragma unroll
      for (int j = 0; j < kCols / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int jp = 0; jp < kCols / 16; ++jp) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          unsigned b[4];  // keys 16 jp + (0..7 | 8..15), dims 16 kk + (0..7 | 8..15)
          load_b_pair(b, k_tile, L::ld, jp * 16, kk * 16, lane);
          mma_16x8x16(s[2 * jp], q_frag[kk], b[0], b[1]);
          mma_16x8x16(s[2 * jp + 1], q_frag[kk], b[2], b[3]);
        }
      }

      // Mask only the tiles that cross the segment's end or, in the range, some row's position.
      const bool edge = j0 + kCols > len || (!listed && p.range_begin + j0 + kCols - 1 > p.first_query + block_t_first);
#pragma unroll
      for (int j = 0; j < kCols / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[j][e] * scale2;
          if (edge) {
            const int64_t col = j0 + j * 8 + quad_col + (e & 1);
            const bool seen = col < len && (listed || p.range_begin + col <= p.first_query + my_t[e >> 1]);
            x = seen ? x : -INFINITY;
          }
          s[j][e] = x;
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float top = -INFINITY;
#pragma unroll
        for (int j = 0; j < kCols / 8; ++j) top = fmaxf(top, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
        top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 1));
        top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 2));
        const float m_new = fmaxf(m[r], top);
        const float ref = m_new == -INFINITY ? 0.0f : m_new;  // a row that has seen nothing stays at 0
        const float factor = exp2f(m[r] - ref);
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kCols / 8; ++j) {
          s[j][2 * r] = exp2f(s[j][2 * r] - ref);
          s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - ref);
          sum += s[j][2 * r] + s[j][2 * r + 1];
        }
        l[r] = l[r] * factor + sum;
        m[r] = m_new;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) o[n][2 * r] *= factor, o[n][2 * r + 1] *= factor;
      }

      // O[16 rows, D] += P V: P's A operand for keys 16 kk ... is S's n-tiles 2 kk and 2 kk + 1.
#pragma unroll
      for (int kk = 0; kk < kCols / 16; ++kk) {
        const unsigned a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                               pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int np = 0; np < D / 16; ++np) {
          unsigned b[4];  // keys 16 kk + (0..7 | 8..15), dims 16 np + (0..7 | 8..15), transposed
          load_b_pair_transposed(b, v_tile, L::ld, kk * 16, np * 16, lane);
          mma_16x8x16(o[2 * np], a, b[0], b[1]);
          mma_16x8x16(o[2 * np + 1], a, b[2], b[3]);
        }
      }
      __syncthreads();  // every warp is done with this stage before the next tile's copy lands in it
    }
  }

  // The row sums are split over the quad's 4 lanes.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const int64_t rows_total = int64_t(p.T) * p.hq;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t pair = row0 + warp * 16 + quad_row + 8 * r, t = my_t[r];
    if (t >= p.T) continue;
    const int64_t h = int64_t(g) * group + pair % group, at = t * p.hq + h;
    if (splits == 1) {
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        *reinterpret_cast<float2*>(p.out + at * D + n * 8 + quad_col) = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
      }
      if (quad_col == 0 && p.lse != nullptr) p.lse[at] = l[r] > 0.0f ? m[r] * kLn2 + logf(l[r]) : -INFINITY;
    } else {  // unnormalised output, then (m, l) after every split's outputs
      float* dst = p.partial + (int64_t(split) * rows_total + at) * D;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        *reinterpret_cast<float2*>(dst + n * 8 + quad_col) = make_float2(o[n][2 * r], o[n][2 * r + 1]);
      }
      if (quad_col == 0) {
        float* ml = p.partial + int64_t(splits) * rows_total * D + (int64_t(split) * rows_total + at) * 2;
        ml[0] = m[r];
        ml[1] = l[r];
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

template <int D, int W>
cudaError_t launch(const FlashChunkParams& p, cudaStream_t stream) {
  using L = FlashLayout<D, W>;
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(flash_chunk_kernel<D, W>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(L::bytes));
  if (opt_in != cudaSuccess) return opt_in;
  const int splits = flash_chunk_splits(p);
  if (splits > 1 && p.partial == nullptr) return cudaErrorInvalidValue;
  const int64_t pairs = int64_t(p.T) * (p.hq / p.hkv);
  const dim3 grid(unsigned((pairs + L::rows - 1) / L::rows), unsigned(p.hkv), unsigned(splits));
  flash_chunk_kernel<D, W><<<grid, L::threads, L::bytes, stream>>>(p, splits);
  if (splits > 1) {
    const int64_t n = int64_t(p.T) * p.hq * D;
    flash_merge_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(p, splits, D);
  }
  return cudaGetLastError();
}

}  // namespace

int flash_chunk_splits(const FlashChunkParams& p) {
  if (p.T <= 0 || p.hkv <= 0 || p.hq % p.hkv != 0) return 1;
  const int warps = block_warps(p), rows = 16 * warps, per_sm = warps == 4 ? 2 : 1;  // blocks resident per SM
  const int64_t blocks = (int64_t(p.T) * (p.hq / p.hkv) + rows - 1) / rows * p.hkv;
  const int64_t most_tiles = tiles(p.n_rows) + tiles(p.range_len);
  const int64_t want = (2 * per_sm * int64_t(current_multiprocessors()) + blocks - 1) / blocks;  // two waves
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
  const bool wide = block_warps(p) == 8;
  if (p.d == 64) return wide ? launch<64, 8>(p, stream) : launch<64, 4>(p, stream);
  if (p.d == 128) return wide ? launch<128, 8>(p, stream) : launch<128, 4>(p, stream);
  return cudaErrorInvalidValue;
}

}  // namespace esa::cuda
