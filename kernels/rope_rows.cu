// See rope_rows.cuh.
#include "rope_rows.cuh"

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

// A thread per (row, head, pair), then the unrotated tail.
__global__ void rope_rows_kernel(const __nv_bfloat16* keys, int64_t begin, int64_t n, int heads, int d,
                                 RopeTables rope, bool inverse, __nv_bfloat16* out) {
  const int64_t pairs = n * heads * rope.half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pairs; i += int64_t(gridDim.x) * blockDim.x) {
    const int pair = int(i % rope.half);
    const int64_t row_head = i / rope.half;  // local row * heads + head
    const int64_t position = begin + row_head / heads;
    float2 cs = rope_angle(rope, position, pair);
    if (inverse) {  // the transpose over the squared scale: exact also with YaRN's attention factor
      const float scale2 = cs.x * cs.x + cs.y * cs.y;
      cs = make_float2(cs.x / scale2, -cs.y / scale2);
    }
    const int a = rope.adjacent_pairs ? 2 * pair : pair;
    const int b = rope.adjacent_pairs ? 2 * pair + 1 : pair + rope.half;
    const __nv_bfloat16* src = keys + (begin * heads + row_head) * d;
    const float x1 = __bfloat162float(src[a]), x2 = __bfloat162float(src[b]);
    out[row_head * d + a] = __float2bfloat16_rn(x1 * cs.x - x2 * cs.y);
    out[row_head * d + b] = __float2bfloat16_rn(x2 * cs.x + x1 * cs.y);
  }
  const int tail = d - 2 * rope.half;
  const int64_t rest = n * heads * tail;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rest; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row_head = i / tail;
    const int c = 2 * rope.half + int(i % tail);
    out[row_head * d + c] = keys[(begin * heads + row_head) * d + c];
  }
}

}  // namespace

cudaError_t launch_rope_rows(const __nv_bfloat16* keys, int64_t begin, int64_t end, int heads, int d,
                             const RopeTables& rope, __nv_bfloat16* out, cudaStream_t stream, RopeTurn turn) {
  if (end < begin || begin < 0 || heads <= 0 || rope.half <= 0 || 2 * rope.half > d) return cudaErrorInvalidValue;
  if (end == begin) return cudaSuccess;
  rope_rows_kernel<<<element_blocks((end - begin) * heads * rope.half), kElementThreads, 0, stream>>>(
      keys, begin, end - begin, heads, d, rope, turn == RopeTurn::from_position, out);
  return cudaGetLastError();
}

}  // namespace esa::cuda
