// See esa_select.cuh. All three stages are bound by memory: the scores read k' (d' bf16 per
// token) once with 16-byte loads, a group of lanes per row; the importance and the top-k passes
// read 4 bytes per token, which at 1M tokens stays in L2 between passes.
#include "esa_select.cuh"

#include "device_query.cuh"
#include "float_key.cuh"
#include "tensor_core.cuh"

#include <algorithm>
#include <cmath>

namespace esa::cuda {
namespace {

constexpr int kThreads = 256;

// ---- compressed scores -----------------------------------------------------------------------

// A group of G lanes reads one row of k' (8 bf16 per lane, G a power of two >= dim / 8); a warp
// covers 32 / G rows at a time, kScoreUnroll such steps in flight.
constexpr int kScoreUnroll = 4;
template <int TMAX>
__global__ void __launch_bounds__(kThreads) compressed_scores_kernel(CompressedScoreParams p, int group) {
  extern __shared__ float q_shared[];  // [T, dim]
  for (int i = threadIdx.x; i < p.T * p.dim; i += blockDim.x) q_shared[i] = p.q[i];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int part = lane & (group - 1);           // which 8 columns
  const int rows_per_warp = 32 / group;
  const bool active_part = part * 8 < p.dim;
  const int64_t n = p.end - p.begin;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  const int64_t stride = warps * rows_per_warp;
  float q_reg[TMAX][8];
#pragma unroll
  for (int c = 0; c < TMAX; ++c) {
#pragma unroll
    for (int j = 0; j < 8; ++j) q_reg[c][j] = (c < p.T && active_part) ? q_shared[c * p.dim + part * 8 + j] : 0.0f;
  }
  float run_max[TMAX];
#pragma unroll
  for (int c = 0; c < TMAX; ++c) run_max[c] = -INFINITY;

  // The loop bounds are the same for every lane of a warp (the shuffles need all 32).
  for (int64_t warp_base = warp * rows_per_warp; warp_base < n; warp_base += kScoreUnroll * stride) {
    const int64_t base = warp_base + lane / group;
    uint4 raw[kScoreUnroll];
#pragma unroll
    for (int u = 0; u < kScoreUnroll; ++u) {
      const int64_t m = base + u * stride;
      raw[u] = make_uint4(0, 0, 0, 0);
      if (m < n && active_part) {
        raw[u] = __ldg(reinterpret_cast<const uint4*>(p.k + (p.begin + m) * p.dim + part * 8));
      }
    }
#pragma unroll
    for (int u = 0; u < kScoreUnroll; ++u) {
      const int64_t m = base + u * stride;
      const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw[u]);
      float kv[8];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(pairs[j]);
        kv[2 * j] = f.x;
        kv[2 * j + 1] = f.y;
      }
#pragma unroll
      for (int c = 0; c < TMAX; ++c) {
        if (c >= p.T) break;
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) dot = fmaf(q_reg[c][j], kv[j], dot);
        for (int off = group / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        if (m < n) {
          if (part == 0) p.scores[int64_t(c) * n + m] = dot;
          run_max[c] = fmaxf(run_max[c], dot);
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < TMAX; ++c) {
    if (c >= p.T) break;
    float v = run_max[c];
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    if (lane == 0 && v > -INFINITY) atomicMax(p.row_max + c, float_key(v));
  }
}

// ---- importance and max-pool -----------------------------------------------------------------

constexpr int kPoolTile = 2048;

__global__ void __launch_bounds__(kThreads) importance_pool_kernel(ImportanceParams p) {
  extern __shared__ float f_shared[];  // [kPoolTile + 2 eps]
  __shared__ float row_max[kMaxScoreQueries];
  if (threadIdx.x < p.T) row_max[threadIdx.x] = p.row_max != nullptr ? key_float(p.row_max[threadIdx.x]) : 0.0f;
  __syncthreads();
  const int64_t tile0 = int64_t(blockIdx.x) * kPoolTile;
  const int span = kPoolTile + 2 * p.eps;
  for (int i = threadIdx.x; i < span; i += blockDim.x) {
    const int64_t m = tile0 - p.eps + i;
    float f = -INFINITY;
    if (m >= 0 && m < p.n) {
      for (int c = 0; c < p.T; ++c) f = fmaxf(f, p.scores[int64_t(c) * p.n + m] - row_max[c]);
    }
    f_shared[i] = f;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kPoolTile; i += blockDim.x) {
    const int64_t m = tile0 + i;
    if (m >= p.n) break;
    float v = f_shared[i + p.eps];
    for (int j = 0; j <= 2 * p.eps; ++j) v = fmaxf(v, f_shared[i + j]);
    p.importance[m] = p.accumulate ? fmaxf(p.importance[m], v) : v;
  }
}

// One block per row: the row's maximum (NaN ranks below every number, as fmaxf drops it).
__global__ void __launch_bounds__(kThreads) score_row_max_kernel(const float* scores, int64_t n, unsigned int* row_max) {
  __shared__ float warp_max[kThreads / 32];
  const float* row = scores + int64_t(blockIdx.x) * n;
  float v = -INFINITY;
  for (int64_t m = threadIdx.x; m < n; m += blockDim.x) v = fmaxf(v, row[m]);
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) v = fmaxf(v, warp_max[w]);
    row_max[blockIdx.x] = float_key(v);
  }
}

// A thread per column: the rows' (score - row maximum), maxed (reads are coalesced across the
// warp; the row maxima are the same address for every lane, a broadcast).
__global__ void __launch_bounds__(kThreads) score_columns_kernel(const float* scores, int rows, int64_t n,
                                                                 const unsigned int* row_max, bool accumulate, float* f) {
  const int64_t m = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= n) return;
  float v = accumulate ? f[m] : -INFINITY;
  for (int r = 0; r < rows; ++r) {
    v = fmaxf(v, scores[int64_t(r) * n + m] - (row_max != nullptr ? key_float(__ldg(row_max + r)) : 0.0f));
  }
  f[m] = v;
}

// ---- chunk importance (many queries) ---------------------------------------------------------

constexpr int kChunkTileFloats = 4096;  // a tile of keys (as float) in shared memory
constexpr int kChunkQueriesPerThread = kChunkScoreFloats / 8 / kThreads;  // T <= 8192 / dim, dim >= 8

// Pass 1: the per-query maxima. A block stages tiles of keys in shared memory; thread t keeps the
// running maxima of queries t, t + kThreads, ... The queries are staged transposed ([dim, T]), so
// that a warp's 32 queries read 32 banks (as [T, dim] they would collide dim-ways).
__global__ void __launch_bounds__(kThreads) chunk_row_max_kernel(ChunkImportanceParams p) {
  extern __shared__ float chunk_shared[];
  float* qs = chunk_shared;                      // [dim, T]
  float* ks = chunk_shared + p.T * p.dim;        // [tile, dim]
  for (int i = threadIdx.x; i < p.T * p.dim; i += blockDim.x) qs[(i % p.dim) * p.T + i / p.dim] = p.q[i];
  const int tile_rows = kChunkTileFloats / p.dim;
  const int64_t n = p.end - p.begin, tiles = (n + tile_rows - 1) / tile_rows;
  float best[kChunkQueriesPerThread];
  for (int j = 0; j < kChunkQueriesPerThread; ++j) best[j] = -INFINITY;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    __syncthreads();  // the previous tile is consumed (and q staged)
    const int64_t m0 = p.begin + tile * tile_rows;
    const int count = int(p.end - m0 < tile_rows ? p.end - m0 : tile_rows);
    for (int i = threadIdx.x; i < count * p.dim; i += blockDim.x) ks[i] = __bfloat162float(p.k[m0 * p.dim + i]);
    __syncthreads();
    for (int j = 0; j < kChunkQueriesPerThread; ++j) {
      const int c = threadIdx.x + j * kThreads;
      if (c >= p.T) break;
      for (int r = 0; r < count; ++r) {
        const float* kr = ks + r * p.dim;  // the same address across the warp: a broadcast
        float s = 0.0f;
        for (int i = 0; i < p.dim; ++i) s = fmaf(qs[i * p.T + c], kr[i], s);
        best[j] = fmaxf(best[j], s);
      }
    }
  }
  for (int j = 0; j < kChunkQueriesPerThread; ++j) {
    const int c = threadIdx.x + j * kThreads;
    if (c < p.T && best[j] > -INFINITY) atomicMax(p.row_max + c, float_key(best[j]));
  }
}

// Pass 2: a thread per key, the max over the chunk's queries of the score less the query's maximum.
// KMAX > 0: the key (dim <= KMAX) is held in registers; 0: read from memory per query.
template <int KMAX>
__global__ void __launch_bounds__(kThreads) chunk_importance_kernel(ChunkImportanceParams p) {
  extern __shared__ float chunk_shared[];
  float* qs = chunk_shared;               // [T, dim]
  float* rm = chunk_shared + p.T * p.dim; // [T]
  for (int i = threadIdx.x; i < p.T * p.dim; i += blockDim.x) qs[i] = p.q[i];
  for (int c = threadIdx.x; c < p.T; c += blockDim.x) rm[c] = key_float(p.row_max[c]);
  __syncthreads();
  for (int64_t m = p.begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m < p.end;
       m += int64_t(gridDim.x) * blockDim.x) {
    const __nv_bfloat16* km = p.k + m * p.dim;
    float f = -INFINITY;
    if constexpr (KMAX > 0) {
      float key[KMAX];
#pragma unroll
      for (int i = 0; i < KMAX; ++i) key[i] = i < p.dim ? __bfloat162float(km[i]) : 0.0f;
      for (int c = 0; c < p.T; ++c) {
        const float* qc = qs + c * p.dim;  // the same address across the warp: a broadcast
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < KMAX; ++i) s = i < p.dim ? fmaf(qc[i], key[i], s) : s;
        f = fmaxf(f, s - rm[c]);
      }
    } else {
      for (int c = 0; c < p.T; ++c) {
        const float* qc = qs + c * p.dim;
        float s = 0.0f;
        for (int i = 0; i < p.dim; ++i) s = fmaf(qc[i], __bfloat162float(km[i]), s);
        f = fmaxf(f, s - rm[c]);
      }
    }
    p.importance[m - p.begin] = f;
  }
}


// ---- chunk importance on tensor cores ----------------------------------------------------------

// Both passes are one kernel: a block holds 64 rows of A (4 warps of 16) in registers and streams
// 64-row tiles of B through two shared stages (cp.async), S = A B^T by mma.sync, and keeps per
// A row the max over the B rows it visits of S less a per-B-row offset:
//   pass 1: A = queries, B = keys, no offset: the queries' maxima (B split over blocks, merged
//           by atomicMax on order-preserving bits);
//   pass 2: A = keys, B = queries, offset = the query's maximum: F of the key, written directly.
// Columns past dim and rows past the ends are zeros in shared memory; masked rows are -inf.
constexpr int kTcRows = 64, kTcThreads = 128;

template <int DP>  // dim rounded up to 16, 32, 64, 128 or 256
struct TcLayout {
  static constexpr int ld = DP + 8;  // padded by 16 bytes: ldmatrix's 8 rows in distinct banks
  static constexpr int tile = kTcRows * ld;
  static constexpr size_t bytes = size_t(3 * tile) * sizeof(__nv_bfloat16) + kTcRows * 2 * sizeof(float);
};

template <int DP>
__device__ __forceinline__ void tc_load_tile(const __nv_bfloat16* src, int64_t rows, int64_t row0, int dim,
                                             __nv_bfloat16* dst) {
  constexpr int per_row = DP / 8;
  for (int i = threadIdx.x; i < kTcRows * per_row; i += kTcThreads) {
    const int r = i / per_row, c = (i % per_row) * 8;
    const bool ok = row0 + r < rows && c < dim;
    tc::copy_async16(dst + r * TcLayout<DP>::ld + c, src + (ok ? (row0 + r) * dim + c : 0), ok);
  }
}

struct TcRowMaxParams {
  const __nv_bfloat16* a;         // [a_rows, dim]
  const __nv_bfloat16* b;         // [b_rows, dim]
  int64_t a_rows, b_rows;
  int dim;
  const unsigned int* b_offset;   // null, or [b_rows] order-preserving bits subtracted per B row
  int64_t tiles_per_split;        // B tiles a block visits (gridDim.y splits)
  unsigned int* max_bits;         // split > 1: atomicMax of the bits, [a_rows] (starts at 0)
  float* max_out;                 // one split: the maxima as floats, [a_rows]
};

template <int DP>
__global__ void __launch_bounds__(kTcThreads) tc_row_max_kernel(TcRowMaxParams p) {
  using L = TcLayout<DP>;
  extern __shared__ __align__(128) unsigned char tc_shared[];
  __nv_bfloat16* sA = reinterpret_cast<__nv_bfloat16*>(tc_shared);
  __nv_bfloat16* sB = sA + L::tile;  // stage s at sB + s * tile
  float* sOff = reinterpret_cast<float*>(sB + 2 * L::tile);  // [2][64] the stages' B offsets
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad_col = (lane % 4) * 2;
  const int64_t a0 = int64_t(blockIdx.x) * kTcRows;
  const int64_t tiles = (p.b_rows + kTcRows - 1) / kTcRows;
  const int64_t first = int64_t(blockIdx.y) * p.tiles_per_split;
  const int64_t end = min(first + p.tiles_per_split, tiles);

  auto stage_offsets = [&](int64_t tile, int stage) {
    for (int i = threadIdx.x; i < kTcRows; i += kTcThreads) {
      const int64_t row = tile * kTcRows + i;
      // A row past the end gets +inf: its S - offset is -inf, so it never wins the max.
      sOff[stage * kTcRows + i] = row >= p.b_rows ? INFINITY : p.b_offset ? key_float(p.b_offset[row]) : 0.0f;
    }
  };
  float best[2] = {-INFINITY, -INFINITY};
  if (first < end) {
    tc_load_tile<DP>(p.a, p.a_rows, a0, p.dim, sA);
    tc_load_tile<DP>(p.b, p.b_rows, first * kTcRows, p.dim, sB);
    tc::copy_async_commit();
    stage_offsets(first, 0);
  }
  unsigned a_frag[DP / 16][4];
  for (int64_t tile = first; tile < end; ++tile) {
    const int stage = int((tile - first) & 1);
    if (tile + 1 < end) {
      tc_load_tile<DP>(p.b, p.b_rows, (tile + 1) * kTcRows, p.dim, sB + (stage ^ 1) * L::tile);
      tc::copy_async_commit();
      stage_offsets(tile + 1, stage ^ 1);
      tc::copy_async_wait<1>();
    } else {
      tc::copy_async_wait<0>();
    }
    __syncthreads();
    if (tile == first) {
#pragma unroll
      for (int kk = 0; kk < DP / 16; ++kk) tc::load_a(a_frag[kk], sA + warp * 16 * L::ld, L::ld, kk * 16, lane);
    }
    const __nv_bfloat16* b_tile = sB + stage * L::tile;
    float s[kTcRows / 8][4];
#pragma unroll
    for (int j = 0; j < kTcRows / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int jp = 0; jp < kTcRows / 16; ++jp) {
#pragma unroll
      for (int kk = 0; kk < DP / 16; ++kk) {
        unsigned b[4];
        tc::load_b_pair(b, b_tile, L::ld, jp * 16, kk * 16, lane);
        tc::mma_16x8x16(s[2 * jp], a_frag[kk], b[0], b[1]);
        tc::mma_16x8x16(s[2 * jp + 1], a_frag[kk], b[2], b[3]);
      }
    }
    const float* off = sOff + stage * kTcRows;
#pragma unroll
    for (int j = 0; j < kTcRows / 8; ++j) {
      const float o0 = off[j * 8 + quad_col], o1 = off[j * 8 + quad_col + 1];
      best[0] = fmaxf(best[0], fmaxf(s[j][0] - o0, s[j][1] - o1));
      best[1] = fmaxf(best[1], fmaxf(s[j][2] - o0, s[j][3] - o1));
    }
    __syncthreads();  // every warp is done with this stage before the next tile's copy lands in it
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    best[r] = fmaxf(best[r], __shfl_xor_sync(0xffffffffu, best[r], 1));
    best[r] = fmaxf(best[r], __shfl_xor_sync(0xffffffffu, best[r], 2));
    const int64_t row = a0 + warp * 16 + lane / 4 + 8 * r;
    if (quad_col != 0 || row >= p.a_rows) continue;
    if (p.max_out != nullptr) {
      p.max_out[row] = best[r];
    } else if (best[r] > -INFINITY) {
      atomicMax(p.max_bits + row, float_key(best[r]));
    }
  }
}

template <int DP>
cudaError_t launch_tc_row_max(const TcRowMaxParams& p, int splits, cudaStream_t stream) {
  const size_t bytes = TcLayout<DP>::bytes;
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(tc_row_max_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (opt_in != cudaSuccess) return opt_in;
  const dim3 grid(unsigned((p.a_rows + kTcRows - 1) / kTcRows), unsigned(splits));
  tc_row_max_kernel<DP><<<grid, kTcThreads, bytes, stream>>>(p);
  return cudaGetLastError();
}

template <int DP>
cudaError_t launch_chunk_importance_tc_dim(const ChunkImportanceTcParams& p, cudaStream_t stream) {
  const int64_t n = p.end - p.begin;
  const __nv_bfloat16* keys = p.k + p.begin * p.dim;
  // Pass 1: query blocks x key splits, about four blocks per SM, at least 4 key tiles a split.
  const int64_t q_blocks = (p.T + kTcRows - 1) / kTcRows, k_tiles = (n + kTcRows - 1) / kTcRows;
  const int64_t want = (4 * int64_t(current_multiprocessors()) + q_blocks - 1) / q_blocks;
  const int64_t splits = std::clamp<int64_t>(std::min(want, k_tiles / 4), 1, 65535);
  const int64_t per = (k_tiles + splits - 1) / splits;
  TcRowMaxParams rows{p.q, keys, p.T, n, p.dim, nullptr, per, p.row_max, nullptr};
  cudaError_t status = launch_tc_row_max<DP>(rows, int((k_tiles + per - 1) / per), stream);
  if (status != cudaSuccess) return status;
  // Pass 2: a block per 64 keys over every query.
  TcRowMaxParams cols{keys, p.q, n, p.T, p.dim, p.row_max, (p.T + kTcRows - 1) / kTcRows, nullptr, p.importance};
  return launch_tc_row_max<DP>(cols, 1, stream);
}

}  // namespace

cudaError_t launch_compressed_scores(const CompressedScoreParams& p, cudaStream_t stream) {
  if (p.dim <= 0 || p.dim % 8 != 0 || p.dim > 256 || p.T < 1 || p.T > kMaxScoreQueries || p.end < p.begin) {
    return cudaErrorInvalidValue;
  }
  cudaError_t status = cudaMemsetAsync(p.row_max, 0, sizeof(unsigned int) * size_t(p.T), stream);
  if (status != cudaSuccess || p.end == p.begin) return status;
  int group = 1;
  while (group < p.dim / 8) group *= 2;
  const int64_t rows_per_block = int64_t(kThreads / 32) * (32 / group);
  const int64_t wanted = (p.end - p.begin + rows_per_block - 1) / rows_per_block;
  const int blocks = int(std::min<int64_t>(wanted, 8 * current_multiprocessors()));
  const size_t shared = sizeof(float) * size_t(p.T) * size_t(p.dim);
  if (p.T == 1) {
    compressed_scores_kernel<1><<<blocks, kThreads, shared, stream>>>(p, group);
  } else if (p.T <= 4) {
    compressed_scores_kernel<4><<<blocks, kThreads, shared, stream>>>(p, group);
  } else {
    compressed_scores_kernel<kMaxScoreQueries><<<blocks, kThreads, shared, stream>>>(p, group);
  }
  return cudaGetLastError();
}

cudaError_t launch_score_row_max(const float* scores, int rows, int64_t n, unsigned int* row_max, cudaStream_t stream) {
  if (rows < 0 || rows > 65535 || n < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  score_row_max_kernel<<<rows, kThreads, 0, stream>>>(scores, n, row_max);
  return cudaGetLastError();
}

cudaError_t launch_score_columns_importance(const float* scores, int rows, int64_t n, const unsigned int* row_max,
                                            bool accumulate, float* f, cudaStream_t stream) {
  if (rows < 1 || n < 1) return cudaErrorInvalidValue;
  score_columns_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(scores, rows, n, row_max,
                                                                                         accumulate, f);
  return cudaGetLastError();
}

cudaError_t launch_importance_pool(const ImportanceParams& p, cudaStream_t stream) {
  if (p.T < 1 || p.T > kMaxScoreQueries || p.eps < 0 || p.eps > 1024 || p.n < 0) return cudaErrorInvalidValue;
  if (p.n == 0) return cudaSuccess;
  const int blocks = int((p.n + kPoolTile - 1) / kPoolTile);
  importance_pool_kernel<<<blocks, kThreads, sizeof(float) * (kPoolTile + 2 * p.eps), stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_chunk_importance(const ChunkImportanceParams& p, cudaStream_t stream) {
  if (p.dim < 8 || p.dim % 8 != 0 || p.dim > 256 || p.T < 1 || int64_t(p.T) * p.dim > kChunkScoreFloats ||
      p.end < p.begin) {
    return cudaErrorInvalidValue;
  }
  cudaError_t status = cudaMemsetAsync(p.row_max, 0, sizeof(unsigned int) * size_t(p.T), stream);
  if (status != cudaSuccess || p.end == p.begin) return status;
  const int64_t n = p.end - p.begin, tile_rows = kChunkTileFloats / p.dim;
  const int sms = current_multiprocessors();
  const int pass1 = int(std::min<int64_t>((n + tile_rows - 1) / tile_rows, 2 * int64_t(sms)));
  chunk_row_max_kernel<<<pass1, kThreads, sizeof(float) * size_t(p.T * p.dim + tile_rows * p.dim), stream>>>(p);
  const int pass2 = int(std::min<int64_t>((n + kThreads - 1) / kThreads, 8 * int64_t(sms)));
  // + 32 floats: the unrolled loop of a register-held key may read past the last query's row.
  const size_t shared2 = sizeof(float) * size_t(p.T * p.dim + p.T + 32);
  if (p.dim <= 16) {
    chunk_importance_kernel<16><<<pass2, kThreads, shared2, stream>>>(p);
  } else if (p.dim <= 32) {
    chunk_importance_kernel<32><<<pass2, kThreads, shared2, stream>>>(p);
  } else {
    chunk_importance_kernel<0><<<pass2, kThreads, shared2, stream>>>(p);
  }
  return cudaGetLastError();
}

cudaError_t launch_chunk_importance_tc(const ChunkImportanceTcParams& p, cudaStream_t stream) {
  if (p.dim < 8 || p.dim % 8 != 0 || p.dim > 256 || p.T < 1 || p.end < p.begin || p.q == nullptr ||
      p.k == nullptr || p.row_max == nullptr || p.importance == nullptr) {
    return cudaErrorInvalidValue;
  }
  cudaError_t status = cudaMemsetAsync(p.row_max, 0, sizeof(unsigned int) * size_t(p.T), stream);
  if (status != cudaSuccess || p.end == p.begin) return status;
  if (p.dim <= 16) return launch_chunk_importance_tc_dim<16>(p, stream);
  if (p.dim <= 32) return launch_chunk_importance_tc_dim<32>(p, stream);
  if (p.dim <= 64) return launch_chunk_importance_tc_dim<64>(p, stream);
  if (p.dim <= 128) return launch_chunk_importance_tc_dim<128>(p, stream);
  return launch_chunk_importance_tc_dim<256>(p, stream);
}

}  // namespace esa::cuda
