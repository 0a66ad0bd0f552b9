// See gathered_attention.cuh. Grid (split, KV head): a CTA streams its split's rows of one KV
// head once and serves every query head of the group (GQA) from them. A row is read by a group
// of d / 8 lanes (16-byte loads of K and V); each lane keeps the online-softmax state and the
// output for its 8 dimensions of every head; warps, row groups and splits merge by log-sum-exp.
#include "gathered_attention.cuh"

#include "device_query.cuh"

#include <algorithm>
#include <cmath>

namespace esa::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxGroup = 8;     // query heads per KV head
constexpr int kRowsPerSplit = 32;
constexpr int kMaxSplits = 1024;

// Floats of one query's scratch: every split's output [hq, splits, d], then the (m, l) pairs
// [hq, splits, 2]; rounded up to 4 so that every query's block (read as float4) is 16-byte aligned.
__host__ __device__ inline int64_t partial_query_floats(int hq, int splits, int d) {
  return (int64_t(hq) * splits * (d + 2) + 3) / 4 * 4;
}

__device__ __forceinline__ void unpack8(const uint4& raw, float* dst) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = __bfloat1622float2(pairs[j]);
    dst[2 * j] = f.x;
    dst[2 * j + 1] = f.y;
  }
}

// Rotates this lane's 8 key dimensions (columns part*8 ..) to `position`. Every lane of the warp
// calls it (the rotate-half partner lives in another lane); `rotate` says whether this row is.
template <int GROUP>
__device__ __forceinline__ void rope_key(const RopeTables& rope, int part, bool rotate, int64_t position, float* x) {
  if (rope.adjacent_pairs) {
    if (!rotate) return;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const int pair = part * 4 + t;
      if (pair < rope.half) {
        const float2 cs = rope_angle(rope, position, pair);
        const float a = x[2 * t], b = x[2 * t + 1];
        x[2 * t] = a * cs.x - b * cs.y;
        x[2 * t + 1] = b * cs.x + a * cs.y;
      }
    }
    return;
  }
  const int partner_offset = rope.half / 8;  // lanes between dimension i and i + half
  float partner[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) partner[j] = __shfl_xor_sync(0xffffffffu, x[j], partner_offset);
  if (!rotate || part >= 2 * partner_offset) return;
  const bool first_half = part < partner_offset;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int pair = (first_half ? part : part - partner_offset) * 8 + j;
    const float2 cs = rope_angle(rope, position, pair);
    x[j] = first_half ? x[j] * cs.x - partner[j] * cs.y : x[j] * cs.x + partner[j] * cs.y;
  }
}

template <int GROUP_MAX, int D, int UNROLL>
__global__ void __launch_bounds__(kWarps * 32) gathered_split_kernel(GatheredAttentionParams p, int splits) {
  constexpr int kLanesPerRow = D / 8;
  constexpr int kRowsPerStep = 32 / kLanesPerRow;
  const int split = blockIdx.x, kv = blockIdx.y, query = blockIdx.z;
  const int group = p.hq / p.hkv;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int part = lane % kLanesPerRow, slot = lane / kLanesPerRow;
  const int64_t range_end = p.range_end - (p.causal ? p.queries - 1 - query : 0);
  const int64_t n_range = range_end - p.range_begin;
  const int64_t total = int64_t(p.n_rows) + n_range;
  const int64_t per_split = (total + splits - 1) / splits;
  const int64_t first = int64_t(split) * per_split;
  const int64_t last = first + per_split < total ? first + per_split : total;
  const int64_t listed_valid = p.rows_valid != nullptr ? int64_t(__ldg(p.rows_valid)) : int64_t(p.n_rows);

  float m[GROUP_MAX], l[GROUP_MAX], acc[GROUP_MAX][8];
#pragma unroll
  for (int h = 0; h < GROUP_MAX; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[h][j] = 0.0f;
  }
  // The rows of a split are the long-branch rows first, then the range: two phases, each with its
  // query in registers.
  for (int phase = 0; phase < 2; ++phase) {
    const int64_t lo = phase == 0 ? first : (first > p.n_rows ? first : int64_t(p.n_rows));
    const int64_t hi = phase == 0 ? (last < p.n_rows ? last : int64_t(p.n_rows)) : last;
    if (lo >= hi) continue;
    const float* q = (phase == 0 ? p.q_long : p.q_local) + int64_t(query) * p.hq * D;
    float q_reg[GROUP_MAX][8];
#pragma unroll
    for (int h = 0; h < GROUP_MAX; ++h) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        q_reg[h][j] = h < group ? q[(int64_t(kv) * group + h) * D + part * 8 + j] * p.scale : 0.0f;
      }
    }
    const bool rotate = phase == 1 && p.k_rotated == nullptr && p.rope.low != nullptr;
    const bool from_rotated = phase == 1 && p.k_rotated != nullptr;
    const __nv_bfloat16* keys = from_rotated ? p.k_rotated : p.k;
    const int64_t key_row_shift = from_rotated ? p.k_rotated_first_row : 0;
    // UNROLL row steps per warp iteration: indices first, then every K and V load, then the math
    // (the loads of all steps are in flight together; one softmax rescale per iteration).
    for (int64_t base = lo + int64_t(warp) * UNROLL * kRowsPerStep; base < hi; base += kWarps * UNROLL * kRowsPerStep) {
      int64_t row[UNROLL];
      bool valid[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int64_t r = base + u * kRowsPerStep + slot;
        valid[u] = r < hi && (phase == 1 || r < listed_valid);
        row[u] = !valid[u] ? 0 : phase == 0 ? int64_t(__ldg(p.rows + r)) : p.range_begin + (r - p.n_rows);
      }
      uint4 k_raw[UNROLL], v_raw[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int64_t offset = (row[u] * p.hkv + kv) * D + part * 8;
        const int64_t key_offset = offset - key_row_shift * p.hkv * D;
        k_raw[u] = valid[u] ? __ldg(reinterpret_cast<const uint4*>(keys + key_offset)) : make_uint4(0, 0, 0, 0);
        v_raw[u] = valid[u] ? __ldg(reinterpret_cast<const uint4*>(p.v + offset)) : make_uint4(0, 0, 0, 0);
      }
      float score[UNROLL][GROUP_MAX];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        float key[8];
        unpack8(k_raw[u], key);
        if (rotate) rope_key<GROUP_MAX>(p.rope, part, valid[u], row[u], key);
#pragma unroll
        for (int h = 0; h < GROUP_MAX; ++h) {
          float sc = 0.0f;
#pragma unroll
          for (int j = 0; j < 8; ++j) sc = fmaf(q_reg[h][j], key[j], sc);
#pragma unroll
          for (int off = kLanesPerRow / 2; off > 0; off >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, off);
          score[u][h] = valid[u] && h < group ? sc : -INFINITY;
        }
      }
#pragma unroll
      for (int h = 0; h < GROUP_MAX; ++h) {
        float m_new = m[h];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) m_new = fmaxf(m_new, score[u][h]);
        if (m_new == -INFINITY) continue;  // no valid row for this slot yet
        const float correction = __expf(m[h] - m_new);  // 0 on the first rows (m = -inf)
        l[h] *= correction;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[h][j] *= correction;
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
          const float weight = __expf(score[u][h] - m_new);  // 0 for invalid rows
          l[h] += weight;
          float value[8];
          unpack8(v_raw[u], value);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[h][j] = fmaf(weight, value[j], acc[h][j]);
        }
        m[h] = m_new;
      }
    }
  }

  // Merge the row slots of the warp (lanes with the same `part`), then the warps.
#pragma unroll
  for (int off = kLanesPerRow; off < 32; off <<= 1) {
#pragma unroll
    for (int h = 0; h < GROUP_MAX; ++h) {
      const float m_other = __shfl_xor_sync(0xffffffffu, m[h], off);
      const float l_other = __shfl_xor_sync(0xffffffffu, l[h], off);
      const float m_new = fmaxf(m[h], m_other);
      const float a = m[h] == -INFINITY ? 0.0f : __expf(m[h] - m_new);
      const float b = m_other == -INFINITY ? 0.0f : __expf(m_other - m_new);
      l[h] = l[h] * a + l_other * b;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float acc_other = __shfl_xor_sync(0xffffffffu, acc[h][j], off);
        acc[h][j] = acc[h][j] * a + acc_other * b;
      }
      m[h] = m_new;
    }
  }
  __shared__ float shared_acc[kWarps][GROUP_MAX][D];
  __shared__ float shared_ml[kWarps][GROUP_MAX][2];
  if (slot == 0) {
#pragma unroll
    for (int h = 0; h < GROUP_MAX; ++h) {
#pragma unroll
      for (int j = 0; j < 8; ++j) shared_acc[warp][h][part * 8 + j] = acc[h][j];
      if (part == 0) {
        shared_ml[warp][h][0] = m[h];
        shared_ml[warp][h][1] = l[h];
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * D; i += blockDim.x) {
    const int h = i / D, dim = i % D;
    float m_all = -INFINITY;
    for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, shared_ml[w][h][0]);
    float l_all = 0.0f, o = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const float scale = shared_ml[w][h][0] == -INFINITY ? 0.0f : __expf(shared_ml[w][h][0] - m_all);
      l_all += shared_ml[w][h][1] * scale;
      o += shared_acc[w][h][dim] * scale;
    }
    const int head = kv * group + h;
    float* partial = p.partial + int64_t(query) * partial_query_floats(p.hq, splits, D);
    partial[(int64_t(head) * splits + split) * D + dim] = o;
    if (dim == 0) {
      float* ml = partial + int64_t(p.hq) * splits * D + (int64_t(head) * splits + split) * 2;
      ml[0] = m_all;
      ml[1] = l_all;
    }
  }
}

// One block per query head, 8 warps: the splits' (m, l) give the weights exp(m_s - M) (shared
// memory); then warp w sums the splits w, w + 8, ... with float4 loads (a lane per 4 dimensions)
// and the warps' sums meet in shared memory.
constexpr int kMergeWarps = 8;

__global__ void __launch_bounds__(kMergeWarps * 32) gathered_merge_kernel(GatheredAttentionParams p, int splits) {
  __shared__ float weight[kMaxSplits];
  __shared__ float warp_value[kMergeWarps];
  __shared__ float4 warp_sum[kMergeWarps][32];
  __shared__ float total_max, total_sum;
  const int head = blockIdx.x, query = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float* partial = p.partial + int64_t(query) * partial_query_floats(p.hq, splits, p.d);
  const float* out_part = partial + int64_t(head) * splits * p.d;
  const float* ml = partial + int64_t(p.hq) * splits * p.d + int64_t(head) * splits * 2;
  float v = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) v = fmaxf(v, ml[2 * s]);
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (lane == 0) warp_value[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = -INFINITY;
    for (int w = 0; w < kMergeWarps; ++w) m = fmaxf(m, warp_value[w]);
    total_max = m;
  }
  __syncthreads();
  const float m_all = total_max;
  v = 0.0f;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    const float ms = ml[2 * s];
    const float w = ms == -INFINITY ? 0.0f : __expf(ms - m_all);
    weight[s] = w;
    v += ml[2 * s + 1] * w;
  }
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  __syncthreads();
  if (lane == 0) warp_value[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float l = 0.0f;
    for (int w = 0; w < kMergeWarps; ++w) l += warp_value[w];
    total_sum = l;
  }
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (lane * 4 < p.d) {
    for (int s = warp; s < splits; s += kMergeWarps) {
      const float4 o = __ldg(reinterpret_cast<const float4*>(out_part + int64_t(s) * p.d) + lane);
      const float w = weight[s];
      acc.x = fmaf(o.x, w, acc.x);
      acc.y = fmaf(o.y, w, acc.y);
      acc.z = fmaf(o.z, w, acc.z);
      acc.w = fmaf(o.w, w, acc.w);
    }
  }
  warp_sum[warp][lane] = acc;
  __syncthreads();
  const float l_all = total_sum;
  for (int dim = threadIdx.x; dim < p.d; dim += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kMergeWarps; ++w) o += reinterpret_cast<const float*>(&warp_sum[w][0])[dim];
    p.out[(int64_t(query) * p.hq + head) * p.d + dim] = l_all > 0.0f ? o / l_all : 0.0f;
  }
  if (threadIdx.x == 0 && p.lse != nullptr) {
    p.lse[int64_t(query) * p.hq + head] = l_all > 0.0f ? m_all + logf(l_all) : -INFINITY;
  }
}

bool valid_params(const GatheredAttentionParams& p) {
  if (p.hkv <= 0 || p.hq % p.hkv != 0 || p.hq / p.hkv > kMaxGroup || (p.d != 64 && p.d != 128)) return false;
  if (p.n_rows < 0 || p.range_end < p.range_begin || p.out == nullptr || p.partial == nullptr) return false;
  if (p.queries < 1 || p.queries > 65535 || (p.causal && p.range_end - p.range_begin < p.queries - 1)) return false;
  if (p.k_rotated != nullptr && (p.k_rotated_first_row < 0 || p.k_rotated_first_row > p.range_begin)) return false;
  if (p.rope.low != nullptr) {
    const int lanes = p.rope.half / 8;
    if (p.rope.half % 8 != 0 || 2 * p.rope.half > p.d || (lanes & (lanes - 1)) != 0) return false;
  }
  return true;
}

}  // namespace

int gathered_attention_splits(int64_t total_rows, int hkv, int queries) {
  const int64_t by_rows = (total_rows + kRowsPerSplit - 1) / kRowsPerSplit;
  const int64_t ctas = int64_t(hkv > 0 ? hkv : 1) * (queries > 0 ? queries : 1);
  const int64_t by_machine = (8 * int64_t(current_multiprocessors()) + ctas - 1) / ctas;
  const int64_t splits = std::min<int64_t>(std::min(by_rows, by_machine), kMaxSplits);
  return int(splits > 0 ? splits : 1);
}

size_t gathered_attention_partial_floats(int64_t total_rows, int hq, int hkv, int d, int queries) {
  return size_t(queries) * size_t(partial_query_floats(hq, gathered_attention_splits(total_rows, hkv, queries), d));
}

cudaError_t launch_gathered_attention_splits(const GatheredAttentionParams& p, cudaStream_t stream) {
  if (!valid_params(p)) return cudaErrorInvalidValue;
  const int64_t total = int64_t(p.n_rows) + (p.range_end - p.range_begin);
  const int splits = gathered_attention_splits(total, p.hkv, p.queries);
  const dim3 grid(unsigned(splits), unsigned(p.hkv), unsigned(p.queries));
  const int group = p.hq / p.hkv;
  if (p.d == 128) {
    if (group <= 4) {
      gathered_split_kernel<4, 128, 4><<<grid, kWarps * 32, 0, stream>>>(p, splits);
    } else {
      gathered_split_kernel<8, 128, 2><<<grid, kWarps * 32, 0, stream>>>(p, splits);
    }
  } else if (group <= 4) {
    gathered_split_kernel<4, 64, 4><<<grid, kWarps * 32, 0, stream>>>(p, splits);
  } else {
    gathered_split_kernel<8, 64, 2><<<grid, kWarps * 32, 0, stream>>>(p, splits);
  }
  return cudaGetLastError();
}

cudaError_t launch_gathered_attention_merge(const GatheredAttentionParams& p, cudaStream_t stream) {
  if (!valid_params(p)) return cudaErrorInvalidValue;
  const int64_t total = int64_t(p.n_rows) + (p.range_end - p.range_begin);
  const int splits = gathered_attention_splits(total, p.hkv, p.queries);
  gathered_merge_kernel<<<dim3(unsigned(p.hq), unsigned(p.queries)), kMergeWarps * 32, 0, stream>>>(p, splits);
  return cudaGetLastError();
}

cudaError_t launch_gathered_attention(const GatheredAttentionParams& p, cudaStream_t stream) {
  const cudaError_t status = launch_gathered_attention_splits(p, stream);
  return status != cudaSuccess ? status : launch_gathered_attention_merge(p, stream);
}

}  // namespace esa::cuda
