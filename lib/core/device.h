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

/// True when this binary contains the CUDA kernels (ESA_WITH_CUDA).
bool built_with_cuda();
/// The CUDA devices usable now; empty without CUDA, without a driver or without a card.
/// `why_none` (optional) receives the reason when the list is empty.
std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none = nullptr);

}  // namespace esa
