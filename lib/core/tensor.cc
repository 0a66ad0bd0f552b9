#include "core/tensor.h"

#include <fmt/format.h>

#include "core/error.h"

namespace esa {

const char* dtype_name(DType) { return "f32"; }

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return s + "]";
}

static int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    ESA_CHECK(d >= 0, "negative dimension in shape {}", shape_to_string(shape));
    n *= d;
  }
  return n;
}

int64_t TensorView::numel() const { return product(shape); }
std::string TensorView::shape_str() const { return shape_to_string(shape); }

Tensor::Tensor(std::vector<int64_t> shape) : shape_(std::move(shape)), values_(size_t(product(shape_)), 0.0f) {}

Tensor::Tensor(std::vector<int64_t> shape, std::vector<float> values)
    : shape_(std::move(shape)), values_(std::move(values)) {
  ESA_CHECK(int64_t(values_.size()) == product(shape_), "tensor of shape {} given {} values",
            shape_to_string(shape_), values_.size());
}

void Tensor::reshape(std::vector<int64_t> shape) {
  ESA_CHECK(product(shape) == numel(), "cannot reshape {} to {}", shape_str(), shape_to_string(shape));
  shape_ = std::move(shape);
}

}  // namespace esa
