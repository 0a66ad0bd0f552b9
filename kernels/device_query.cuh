// Device discovery through the CUDA runtime, behind a plain C++ interface (no CUDA types), so
// that lib/ can ask about GPUs without including CUDA headers.
#pragma once

#include <cstddef>

namespace esa::cuda {

struct DeviceProps {
  char name[256];
  size_t total_memory;
  int major, minor;
  int multiprocessors;
};

/// 0 on success; otherwise non-zero with the runtime's message in `error` (e.g. no driver).
int device_count(int* count, char* error, size_t error_size);
int device_props(int index, DeviceProps* props);
/// Multiprocessors of the current device (at least 1), for sizing grids; cheap to call per launch.
int current_multiprocessors();

}  // namespace esa::cuda
