// Warp-level bf16 tensor-core primitives (sm_80 and up: cp.async, ldmatrix, mma.sync m16n8k16),
// shared by the kernels that multiply tiles staged in shared memory: flash_attention.cu and the
// score-free chunk importance of esa_select.cu.
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"): lane = 4 * group + quad; an A tile (16 x 16, row
// major) is 4 registers of bf16 pairs, a B tile (16 x 8, column major) 2, an accumulator (16 x 8
// floats) 4: rows group and group + 8, columns 2 * quad and 2 * quad + 1.
#pragma once

#include <cuda_bf16.h>

namespace esa::cuda::tc {

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zeros where !valid (nothing is read then).
__device__ __forceinline__ void copy_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// Four 8 x 8 bf16 matrices; lane i names row i % 8 of matrix i / 8 and receives, of each matrix,
// row lane / 4, columns 2 (lane % 4) and + 1 (transposed: rows 2 (lane % 4) and + 1, column lane / 4).
__device__ __forceinline__ void load_matrix_x4(unsigned (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}
__device__ __forceinline__ void load_matrix_x4_transposed(unsigned (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

// The A operand rows [0, 16) x columns [c0, c0 + 16) of a row-major tile with `ld` elements a row.
__device__ __forceinline__ void load_a(unsigned (&a)[4], const __nv_bfloat16* tile, int ld, int c0, int lane) {
  load_matrix_x4(a, tile + (lane % 16) * ld + c0 + (lane / 16) * 8);
}
// B operands of two n-tiles (columns n0 ... n0 + 7 and n0 + 8 ... n0 + 15) over k = [c0, c0 + 16),
// from a tile stored [n][k] row-major (keys by rows: the K of Q K^T): b[0..1] and b[2..3].
__device__ __forceinline__ void load_b_pair(unsigned (&b)[4], const __nv_bfloat16* tile, int ld, int n0, int c0,
                                            int lane) {
  load_matrix_x4(b, tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + c0 + ((lane >> 3) & 1) * 8);
}
// The same from a tile stored [k][n] row-major (the V of P V), transposed on the way.
__device__ __forceinline__ void load_b_pair_transposed(unsigned (&b)[4], const __nv_bfloat16* tile, int ld, int k0,
                                                       int n0, int lane) {
  load_matrix_x4_transposed(b, tile + (k0 + (lane & 15)) * ld + n0 + (lane >> 4) * 8);
}

// c += a b for one 16 x 8 x 16 tile.
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (the lower column) in the low half
  return *reinterpret_cast<const unsigned*>(&v);
}

}  // namespace esa::cuda::tc
