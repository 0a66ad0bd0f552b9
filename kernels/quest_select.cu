// See quest_select.cuh.
#include "quest_select.cuh"

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

// A thread per (page, channel): the page's rows are read down a column, coalesced across the
// warp's consecutive channels.
__global__ void page_bounds_kernel(PageBoundsParams p) {
  const int64_t n = (p.page_to - p.page_from) * p.width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t page = p.page_from + i / p.width, c = i % p.width;
    const int64_t r0 = p.begin + page * p.page;
    const int64_t r1 = r0 + p.page < p.end ? r0 + p.page : p.end;
    float hi = -INFINITY, lo = INFINITY;
    for (int64_t r = r0; r < r1; ++r) {
      const float v = __bfloat162float(p.keys[r * p.width + c]);
      hi = fmaxf(hi, v);
      lo = fminf(lo, v);
    }
    p.bounds[(page * 2) * p.width + c] = hi;
    p.bounds[(page * 2 + 1) * p.width + c] = lo;
  }
}

__global__ void gqa_fold_signed_kernel(const float* q, int T, int hq, int hkv, int d, float* out) {
  const int group = hq / hkv;
  const int64_t width = int64_t(hkv) * d, n = int64_t(T) * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / width, gc = i % width;
    const int g = int(gc / d), c = int(gc % d);
    float pos = 0.0f, neg = 0.0f;
    for (int h = 0; h < group; ++h) {
      const float v = q[(t * hq + g * group + h) * d + c];
      pos += fmaxf(v, 0.0f);
      neg += fminf(v, 0.0f);
    }
    out[t * 2 * width + gc] = pos;
    out[t * 2 * width + width + gc] = neg;
  }
}

}  // namespace

cudaError_t launch_page_bounds(const PageBoundsParams& p, cudaStream_t stream) {
  if (p.keys == nullptr || p.bounds == nullptr || p.width <= 0 || p.page <= 0 || p.begin < 0 || p.end < p.begin ||
      p.page_from < 0 || p.page_to < p.page_from) {
    return cudaErrorInvalidValue;
  }
  if (p.page_to == p.page_from) return cudaSuccess;
  if (p.begin + (p.page_to - 1) * p.page >= p.end) return cudaErrorInvalidValue;  // an empty page
  page_bounds_kernel<<<element_blocks((p.page_to - p.page_from) * p.width), kElementThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_gqa_fold_signed(const float* q, int T, int hq, int hkv, int d, float* out, cudaStream_t stream) {
  if (T <= 0 || hkv <= 0 || hq % hkv != 0 || d <= 0 || q == nullptr || out == nullptr) return cudaErrorInvalidValue;
  gqa_fold_signed_kernel<<<element_blocks(int64_t(T) * hkv * d), kElementThreads, 0, stream>>>(q, T, hq, hkv, d, out);
  return cudaGetLastError();
}

}  // namespace esa::cuda
