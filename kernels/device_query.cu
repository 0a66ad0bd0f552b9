#include "device_query.cuh"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

namespace esa::cuda {

int device_count(int* count, char* error, size_t error_size) {
  *count = 0;
  const cudaError_t status = cudaGetDeviceCount(count);
  if (status != cudaSuccess) {
    std::snprintf(error, error_size, "%s", cudaGetErrorString(status));
    *count = 0;
    return 1;
  }
  return 0;
}

int device_props(int index, DeviceProps* props) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) return 1;
  std::snprintf(props->name, sizeof(props->name), "%s", p.name);
  props->total_memory = p.totalGlobalMem;
  props->major = p.major;
  props->minor = p.minor;
  props->multiprocessors = p.multiProcessorCount;
  return 0;
}

int current_multiprocessors() {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);  // a cached attribute query
  return sms > 0 ? sms : 1;
}

}  // namespace esa::cuda
