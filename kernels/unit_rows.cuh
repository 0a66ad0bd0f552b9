// The rows of chosen units (quest's pages, infllm's blocks) for the long branch, written on the
// device; a row count that depends on the chosen units stays there (the attention kernels take
// it as `rows_valid`: no host synchronisation). Reference: QuestPolicy / InfllmPolicy's lists
// (lib/attention/quest.cc, infllm.cc); compared in tests/unit/test_quest.cc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

/// The long branch's rows of k chosen units (pages or blocks; ascending unit indices, relative to
/// `begin`): rows[i * unit + j] = begin + units[i] * unit + j, for i < k, j < unit; a row at or
/// past `end` (the last page of the middle may be partial) is written as `begin` and not counted.
/// *rows_valid = base + the number of real rows (base: the rows before these, the initial tokens).
struct ExpandUnitsParams {
  const int* units = nullptr;
  int k = 0;
  int unit = 16;
  int64_t begin = 0, end = 0;
  int base = 0;
  int* rows = nullptr;        // out: [k * unit]
  int* rows_valid = nullptr;  // out: [1], optional
};
cudaError_t launch_expand_units(const ExpandUnitsParams& p, cudaStream_t stream);

}  // namespace esa::cuda
