// The tensor vocabulary of esa: an owning Tensor and a non-owning TensorView, both row-major
// (the last dimension is contiguous), shapes in the PyTorch order ([rows, cols], [T, heads, d]).
// The CPU engine computes in float32; dtype and device are carried so that the CUDA path and
// lower-precision storage can use the same types.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/device.h"

namespace esa {

enum class DType { f32 };
const char* dtype_name(DType d);

/// Non-owning view of a dense row-major float32 array.
struct TensorView {
  const float* data = nullptr;
  std::vector<int64_t> shape;
  DType dtype = DType::f32;
  Device device = Device::cpu;

  int64_t numel() const;
  int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
  std::string shape_str() const;
};

/// Owning dense row-major float32 array on the host.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape);  // zero-filled
  Tensor(std::vector<int64_t> shape, std::vector<float> values);

  float* data() { return values_.data(); }
  const float* data() const { return values_.data(); }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const { return int64_t(values_.size()); }
  bool empty() const { return values_.empty(); }
  size_t bytes() const { return values_.size() * sizeof(float); }
  TensorView view() const { return {values_.data(), shape_, DType::f32, Device::cpu}; }
  std::string shape_str() const { return view().shape_str(); }
  /// Same data, new shape with the same element count (throws esa::Error otherwise).
  void reshape(std::vector<int64_t> shape);

 private:
  std::vector<int64_t> shape_;
  std::vector<float> values_;
};

/// "[a, b, c]".
std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace esa
