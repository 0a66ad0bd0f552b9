// See top_k.cuh. Bound by memory: the three radix passes and the compaction read 4 bytes per
// element, which at 1M elements stays in L2 between passes.
#include "top_k.cuh"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "device_query.cuh"
#include "float_key.cuh"

namespace esa::cuda {
namespace {

constexpr int kThreads = 256;

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
