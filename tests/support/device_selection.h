// Runs a policy's selection on either device, so that each policy's test (tests/unit/test_<p>.cc)
// checks both halves against the same reference: on the CPU, Policy::select(); on CUDA, the
// policy's device half (Policy::make_device_selector) on the same keys and queries, uploaded
// (keys as bf16: PolicyScene::append_bf16 makes them bf16-exact, so both halves score the same
// numbers). Tests are TEST_P over OnDevice's parameter; the CUDA case skips without a GPU.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "attention/policy.h"
#include "core/device.h"

namespace esa::test {

/// One long-branch list and the local branch's start (what the attention consumes).
struct ChosenRows {
  int64_t local_begin = 0;
  std::vector<int64_t> rows;
};

class SelectionRunner {
 public:
  /// For CUDA: makes the policy's device half (throws esa::Error when it has none, or without
  /// CUDA). The runner keeps one device half for the policy's whole sequence, as the forward does.
  SelectionRunner(Device device, attention::Policy& policy, int64_t n_layers, int64_t hq, int64_t hkv, int64_t d);
  ~SelectionRunner();
  SelectionRunner(const SelectionRunner&) = delete;
  SelectionRunner& operator=(const SelectionRunner&) = delete;

  /// The policy's choice for one layer and chunk (in.cache holds the chunk's keys).
  ChosenRows select(const attention::LayerInputs& in);

 private:
  Device device_;
  attention::Policy& policy_;
  struct Cuda;
  std::unique_ptr<Cuda> cuda_;
};

/// One call's choice on `device` for a scene's shape (a fresh device half: tests of one chunk).
template <class Scene>
attention::Selection select_on(Device device, attention::Policy& policy, const Scene& sc,
                               const attention::LayerInputs& in) {
  if (device == Device::cpu) return policy.select(in);
  SelectionRunner runner(device, policy, sc.layers, sc.hq, sc.hkv, sc.d);
  ChosenRows chosen = runner.select(in);
  return {chosen.local_begin, {std::move(chosen.rows)}};
}

/// Fixture of the policy tests: GetParam() is the device; CUDA skips cleanly without a GPU.
class OnDevice : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override;
};

/// "cpu" / "cuda" for test names.
std::string device_param_name(const ::testing::TestParamInfo<Device>& info);

/// Whether `chosen` are k of the candidates with the best `scores` (ties and near-ties within
/// `tol` of the k-th best score go either way; top-k compared as a set, faiss-style): every chosen
/// index scores >= kth - tol and every other scores <= kth + tol. `what` names the check in failures.
::testing::AssertionResult is_top_k(const std::vector<double>& scores, const std::vector<int64_t>& chosen, int64_t k,
                                    double tol);

}  // namespace esa::test

/// INSTANTIATE_TEST_SUITE_P of a policy suite over {cpu, cuda}.
#define ESA_ON_DEVICES(suite)                                                                            \
  INSTANTIATE_TEST_SUITE_P(Devices, suite, ::testing::Values(::esa::Device::cpu, ::esa::Device::cuda), \
                           ::esa::test::device_param_name)
