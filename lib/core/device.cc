#include "core/device.h"

#include "core/error.h"

#ifdef ESA_WITH_CUDA
#include "device_query.cuh"
#endif

namespace esa {

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") {
    ESA_CHECK(built_with_cuda(), "--device cuda: this esa was built without CUDA (configure with ESA_WITH_CUDA=ON)");
    return Device::cuda;
  }
  ESA_FAIL("unknown device '{}' (expected cpu or cuda)", name);
}

Placement parse_placement(const std::string& device, bool kv_offload) {
  const Device d = parse_device(device);
  ESA_CHECK(!kv_offload || d == Device::cuda, "--kv-offload keeps the GPU's KV cache in host memory: it needs --device cuda");
  return Placement(d, kv_offload);
}

std::string placement_description(const Placement& p) {
  return device_description(p.device) + (p.kv_offload ? ", KV cache in host memory" : "");
}

std::string device_description(Device d) {
  if (d == Device::cpu) return "cpu";
  const std::vector<CudaDeviceInfo> devices = cuda_devices();
  return devices.empty() ? std::string("cuda") : "cuda: " + devices.front().name;
}

bool built_with_cuda() {
#ifdef ESA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none) {
  std::vector<CudaDeviceInfo> out;
#ifdef ESA_WITH_CUDA
  int count = 0;
  char error[256] = {0};
  if (cuda::device_count(&count, error, sizeof(error)) != 0 || count == 0) {
    if (why_none != nullptr) *why_none = count == 0 && error[0] == '\0' ? "no CUDA device" : error;
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cuda::DeviceProps props{};
    if (cuda::device_props(i, &props) != 0) continue;
    CudaDeviceInfo info;
    info.index = i;
    info.name = props.name;
    info.total_memory = props.total_memory;
    info.compute_major = props.major;
    info.compute_minor = props.minor;
    info.multiprocessors = props.multiprocessors;
    out.push_back(info);
  }
#else
  if (why_none != nullptr) *why_none = "built without CUDA";
#endif
  return out;
}

}  // namespace esa
