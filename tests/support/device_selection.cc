// See device_selection.h.
#include "support/device_selection.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

#ifdef ESA_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "attention/device_selector.h"
#include "core/cuda_check.h"
#include "core/device_buffer.h"
#include "ops/rope.h"
#endif

namespace esa::test {

#ifndef ESA_WITH_CUDA
struct SelectionRunner::Cuda {};
#else
// The device half with its own stream and handle; each call uploads the layer's keys (bf16,
// round to nearest even) and the chunk's queries before RoPE and at w.
struct SelectionRunner::Cuda {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::unique_ptr<attention::DeviceSelector> selector;
  int64_t hq = 0, hkv = 0, d = 0;
  cuda::Buffer<float> q, q_at_w;
  cuda::Buffer<__nv_bfloat16> keys;

  Cuda(attention::Policy& policy, int64_t n_layers, int64_t heads, int64_t kv_heads, int64_t dim)
      : hq(heads), hkv(kv_heads), d(dim) {
    ESA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    ESA_CUBLAS_CHECK(cublasCreate(&cublas));
    ESA_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    selector = policy.make_device_selector({stream, cublas, n_layers, hq, hkv, d});
    ESA_CHECK(selector != nullptr, "SelectionRunner: policy {} has no device half for these options",
              attention::policy_name(policy.options().kind));
  }
  ~Cuda() {
    selector.reset();
    if (cublas != nullptr) cublasDestroy(cublas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  ChosenRows select(const attention::Policy& policy, const attention::LayerInputs& in) {
    const TensorView k = in.cache->keys(in.layer);
    const int64_t S = k.shape[0], T = in.q.shape[0];
    std::vector<uint16_t> k16(size_t(k.numel()));
    for (size_t i = 0; i < k16.size(); ++i) {
      uint32_t u;
      std::memcpy(&u, k.data + i, sizeof(u));
      k16[i] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    Tensor at_w({T, hq, d}, std::vector<float>(in.q.data, in.q.data + in.q.numel()));
    ops::rope(at_w, std::vector<int64_t>(size_t(T), policy.options().query_position()), *in.rope, in.angles);
    keys.upload(reinterpret_cast<const __nv_bfloat16*>(k16.data()), k16.size(), "test keys", stream);
    q.upload(in.q.data, size_t(in.q.numel()), "test queries", stream);
    q_at_w.upload(at_w.data(), size_t(at_w.numel()), "test queries", stream);
    const attention::DeviceRows r = selector->select({in.layer, T, S - T, q.get(), q_at_w.get(), keys.get()});
    int n = int(r.n_rows);
    if (r.rows_valid != nullptr) ESA_CUDA_CHECK(cudaMemcpyAsync(&n, r.rows_valid, sizeof(int), cudaMemcpyDeviceToHost, stream));
    ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<int> rows(size_t(std::max(n, 0)));
    if (n > 0) ESA_CUDA_CHECK(cudaMemcpyAsync(rows.data(), r.rows, rows.size() * sizeof(int), cudaMemcpyDeviceToHost, stream));
    ESA_CUDA_CHECK(cudaStreamSynchronize(stream));
    return {r.local_begin, std::vector<int64_t>(rows.begin(), rows.end())};
  }
};
#endif

SelectionRunner::SelectionRunner(Device device, attention::Policy& policy, int64_t n_layers, int64_t hq, int64_t hkv,
                                 int64_t d)
    : device_(device), policy_(policy) {
  if (device == Device::cpu) return;
#ifdef ESA_WITH_CUDA
  cuda_ = std::make_unique<Cuda>(policy, n_layers, hq, hkv, d);
#else
  (void)n_layers, (void)hq, (void)hkv, (void)d;
  ESA_FAIL("SelectionRunner: this esa was built without CUDA");
#endif
}

SelectionRunner::~SelectionRunner() = default;

ChosenRows SelectionRunner::select(const attention::LayerInputs& in) {
  if (device_ == Device::cpu) {
    const attention::Selection sel = policy_.select(in);
    ESA_CHECK(sel.long_tokens.size() == 1, "SelectionRunner: {} lists (one per KV head is not on the GPU)",
              sel.long_tokens.size());
    return {sel.local_begin, sel.long_tokens[0]};
  }
#ifdef ESA_WITH_CUDA
  return cuda_->select(policy_, in);
#else
  ESA_FAIL("SelectionRunner: this esa was built without CUDA");
#endif
}

void OnDevice::SetUp() {
  std::string why;
  if (GetParam() == Device::cuda && cuda_devices(&why).empty()) GTEST_SKIP() << "no CUDA device: " << why;
}

std::string device_param_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param == Device::cpu ? "cpu" : "cuda";
}

::testing::AssertionResult is_top_k(const std::vector<double>& scores, const std::vector<int64_t>& chosen, int64_t k,
                                    double tol) {
  const int64_t n = int64_t(scores.size());
  if (int64_t(chosen.size()) != std::min(k, n)) {
    return ::testing::AssertionFailure() << chosen.size() << " chosen, expected " << std::min(k, n);
  }
  if (chosen.empty()) return ::testing::AssertionSuccess();
  std::vector<double> sorted = scores;
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
  const double kth = sorted[size_t(k - 1)];
  std::vector<bool> taken(size_t(n), false);
  for (int64_t i : chosen) {
    if (i < 0 || i >= n) return ::testing::AssertionFailure() << "index " << i << " out of [0, " << n << ")";
    if (taken[size_t(i)]) return ::testing::AssertionFailure() << "index " << i << " chosen twice";
    taken[size_t(i)] = true;
    if (scores[size_t(i)] < kth - tol) {
      return ::testing::AssertionFailure() << "chose " << i << " (score " << scores[size_t(i)] << ") below the k-th best "
                                           << kth << " - " << tol;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!taken[size_t(i)] && scores[size_t(i)] > kth + tol) {
      return ::testing::AssertionFailure() << "left out " << i << " (score " << scores[size_t(i)]
                                           << ") above the k-th best " << kth << " + " << tol;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace esa::test
