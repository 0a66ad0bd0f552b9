// See esa_select.cuh. All three stages are bound by memory: the scores read k' (d' bf16 per
// token) once with 16-byte loads, a group of lanes per row; the importance and the top-k passes
// read 4 bytes per token, which at 1M tokens stays in L2 between passes.
#include "esa_select.cuh"

#include "device_query.cuh"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cmath>

namespace esa::cuda {
namespace {

constexpr int kThreads = 256;

// Order-preserving bits of a float: a > b  <=>  key(a) > key(b); NaN ranks as -inf (as
// top_k_indices ranks it: tied with -inf, the lower index first), -0 as +0 (they compare equal).
__device__ __forceinline__ unsigned int float_key(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;
  const unsigned int u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_float(unsigned int key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

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

// ---- top-k: radix select + ordered compaction --------------------------------------------------

constexpr int kBins = 2048;       // 11-bit digits: bits 31..21, 20..10, then 9..0 (10 bits)
constexpr int kItems = 8;         // consecutive elements per thread in the compaction
constexpr int kCompactTile = kThreads * kItems;

struct TopKState {
  unsigned int prefix;     // the threshold's bits fixed so far
  unsigned int mask;       // which bits of prefix are fixed
  int remaining;           // how many of the elements matching prefix are still to take
  unsigned int ticket;     // blocks done in the current pass
  unsigned int compact_ticket;
};

struct TopKWorkspace {
  unsigned int* hist;      // [kBins]
  TopKState* state;
  int* gt;                 // [blocks] elements > threshold per compaction tile (then exclusive scan)
  int* eq;                 // [blocks] elements == threshold per tile (then exclusive scan)
};

int64_t compact_blocks(int64_t n) { return (n + kCompactTile - 1) / kCompactTile; }

__host__ __device__ TopKWorkspace carve(void* base, int64_t n) {
  char* p = static_cast<char*>(base);
  TopKWorkspace ws;
  ws.hist = reinterpret_cast<unsigned int*>(p);
  p += kBins * sizeof(unsigned int);
  ws.state = reinterpret_cast<TopKState*>(p);
  p += 64;
  ws.gt = reinterpret_cast<int*>(p);
  p += ((n + kCompactTile - 1) / kCompactTile) * sizeof(int);
  ws.eq = reinterpret_cast<int*>(p);
  return ws;
}

// One histogram pass of the digit at `shift` (`bits` wide) over the elements whose fixed bits
// match; the last block to finish picks the digit holding the k-th largest and prepares the
// next pass (no host round trip).
__global__ void __launch_bounds__(kThreads) radix_pass_kernel(TopKParams p, int pass, int shift, int bits) {
  __shared__ unsigned int hist[kBins];
  __shared__ bool last;
  const TopKWorkspace ws = carve(p.workspace, p.n);
  const int bins = 1 << bits;
  for (int b = threadIdx.x; b < bins; b += blockDim.x) hist[b] = 0;
  __syncthreads();
  const unsigned int prefix = pass == 0 ? 0u : ws.state->prefix;
  const unsigned int mask = pass == 0 ? 0u : ws.state->mask;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * blockDim.x) {
    const unsigned int key = float_key(__ldg(p.values + i));
    if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & (bins - 1)], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < bins; b += blockDim.x) {
    if (hist[b] != 0) atomicAdd(ws.hist + b, hist[b]);
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&ws.state->ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;

  // Counts from the largest digit down: the digit where the running count reaches `remaining`.
  using Scan = cub::BlockScan<unsigned int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  constexpr int kPer = kBins / kThreads;
  unsigned int counts[kPer];
  volatile unsigned int* global_hist = ws.hist;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int b = bins - 1 - (threadIdx.x * kPer + j);
    counts[j] = b >= 0 ? global_hist[b] : 0u;
  }
  unsigned int inclusive[kPer];
  Scan(scan_storage).InclusiveSum(counts, inclusive);
  const int remaining = pass == 0 ? p.k : ws.state->remaining;
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const unsigned int before = inclusive[j] - counts[j];
    if (counts[j] != 0 && before < unsigned(remaining) && unsigned(remaining) <= inclusive[j]) {
      const unsigned int digit = unsigned(bins - 1 - (threadIdx.x * kPer + j));
      ws.state->prefix = prefix | (digit << shift);
      ws.state->mask = mask | (unsigned(bins - 1) << shift);
      ws.state->remaining = remaining - int(before);
    }
  }
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) ws.hist[b] = 0;
  if (threadIdx.x == 0) ws.state->ticket = 0;
}

// Per tile: how many elements are above the threshold and how many equal it; the last block
// turns both into exclusive prefix sums over the tiles.
__global__ void __launch_bounds__(kThreads) compact_count_kernel(TopKParams p) {
  const TopKWorkspace ws = carve(p.workspace, p.n);
  const unsigned int threshold = ws.state->prefix;
  using Reduce = cub::BlockReduce<int, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  __shared__ bool last;
  const int64_t first = int64_t(blockIdx.x) * kCompactTile + int64_t(threadIdx.x) * kItems;
  int gt = 0, eq = 0;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    if (first + j < p.n) {
      const unsigned int key = float_key(p.values[first + j]);
      gt += key > threshold;
      eq += key == threshold;
    }
  }
  gt = Reduce(reduce_storage).Sum(gt);
  __syncthreads();
  eq = Reduce(reduce_storage).Sum(eq);
  if (threadIdx.x == 0) {
    ws.gt[blockIdx.x] = gt;
    ws.eq[blockIdx.x] = eq;
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&ws.state->compact_ticket, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int carry_gt, carry_eq;
  if (threadIdx.x == 0) carry_gt = carry_eq = 0;
  __syncthreads();
  volatile int* vgt = ws.gt;
  volatile int* veq = ws.eq;
  for (int64_t b0 = 0; b0 < gridDim.x; b0 += kThreads) {
    const int64_t b = b0 + threadIdx.x;
    const int g = b < gridDim.x ? vgt[b] : 0;
    const int e = b < gridDim.x ? veq[b] : 0;
    int g_before, e_before, g_total, e_total;
    Scan(scan_storage).ExclusiveSum(g, g_before, g_total);
    __syncthreads();
    Scan(scan_storage).ExclusiveSum(e, e_before, e_total);
    if (b < gridDim.x) {
      ws.gt[b] = carry_gt + g_before;
      ws.eq[b] = carry_eq + e_before;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      carry_gt += g_total;
      carry_eq += e_total;
      ws.state->compact_ticket = 0;
    }
    __syncthreads();
  }
}

// Writes the chosen indices in index order: every element above the threshold, and the first
// `remaining` elements equal to it (ties go to the lower index).
__global__ void __launch_bounds__(kThreads) compact_write_kernel(TopKParams p) {
  const TopKWorkspace ws = carve(p.workspace, p.n);
  const unsigned int threshold = ws.state->prefix;
  const int ties_to_take = ws.state->remaining;
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  const int64_t first = int64_t(blockIdx.x) * kCompactTile + int64_t(threadIdx.x) * kItems;
  bool gt[kItems], eq[kItems];
  int n_eq = 0;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    const unsigned int key = first + j < p.n ? float_key(p.values[first + j]) : 0u;
    gt[j] = first + j < p.n && key > threshold;
    eq[j] = first + j < p.n && key == threshold;
    n_eq += eq[j];
  }
  int eq_before = 0;
  Scan(scan_storage).ExclusiveSum(n_eq, eq_before);
  __syncthreads();
  int rank = ws.eq[blockIdx.x] + eq_before;  // tie rank of this thread's first tie
  bool take[kItems];
  int n_take = 0;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    take[j] = gt[j] || (eq[j] && rank < ties_to_take);
    rank += eq[j];
    n_take += take[j];
  }
  int take_before = 0;
  Scan(scan_storage).ExclusiveSum(n_take, take_before);
  const int tile_ties = ws.eq[blockIdx.x] < ties_to_take ? ws.eq[blockIdx.x] : ties_to_take;
  int pos = ws.gt[blockIdx.x] + tile_ties + take_before;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    if (take[j]) p.indices[pos++] = int(first + j) + p.index_offset;
  }
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

size_t top_k_workspace_bytes(int64_t n) {
  return kBins * sizeof(unsigned int) + 64 + 2 * sizeof(int) * size_t(compact_blocks(n));
}

cudaError_t launch_top_k(const TopKParams& p, cudaStream_t stream) {
  if (p.n < 1 || p.k < 1 || p.k > p.n || p.n > (int64_t(1) << 31) - 1) return cudaErrorInvalidValue;
  const int64_t wanted = (p.n + kThreads * 4 - 1) / (kThreads * 4);
  const int pass_blocks = int(std::min<int64_t>(wanted, 4 * current_multiprocessors()));
  radix_pass_kernel<<<pass_blocks, kThreads, 0, stream>>>(p, 0, 21, 11);
  radix_pass_kernel<<<pass_blocks, kThreads, 0, stream>>>(p, 1, 10, 11);
  radix_pass_kernel<<<pass_blocks, kThreads, 0, stream>>>(p, 2, 0, 10);
  const int blocks = int(compact_blocks(p.n));
  compact_count_kernel<<<blocks, kThreads, 0, stream>>>(p);
  compact_write_kernel<<<blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace esa::cuda
