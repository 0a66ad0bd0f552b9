// Devices: the CPU, and CUDA GPUs when esa was built with CUDA and a driver and card are present.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace esa {

enum class Device { cpu, cuda };
const char* device_name(Device d);
/// Parses "cpu" or "cuda"; throws esa::Error otherwise, and for "cuda" in a build without CUDA.
Device parse_device(const std::string& name);

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  size_t total_memory = 0;  // bytes
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
};

/// "cpu", or "cuda: <name of the current GPU>" (what result files record).
std::string device_description(Device d);

/// Where a model runs and keeps its KV cache.
struct Placement {
  Device device = Device::cpu;
  /// cuda only (--kv-offload, the paper's one-GPU mode): keys and values in page-locked host
  /// memory that the kernels read over the bus, only the rows they attend to; weights, esa's
  /// compressed keys and the scratch stay on the GPU.
  bool kv_offload = false;
  Placement(Device d = Device::cpu, bool offload = false) : device(d), kv_offload(offload) {}  // NOLINT: from Device
};
/// parse_device, and --kv-offload checked against it (esa::Error for --kv-offload on the CPU).
Placement parse_placement(const std::string& device, bool kv_offload);
/// device_description, and ", KV cache in host memory" with kv_offload.
std::string placement_description(const Placement& p);

/// True when this binary contains the CUDA kernels (ESA_WITH_CUDA).
bool built_with_cuda();
/// The CUDA devices usable now; empty without CUDA, without a driver or without a card.
/// `why_none` (optional) receives the reason when the list is empty.
std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none = nullptr);

}  // namespace esa
