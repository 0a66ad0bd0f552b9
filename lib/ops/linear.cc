#include "ops/linear.h"

#include "core/error.h"

namespace esa::ops {

void linear(const TensorView& x, const TensorView& w, const TensorView& bias, Tensor& y) {
  ESA_CHECK(x.shape.size() == 2 && w.shape.size() == 2, "linear: x {} and w {} must be 2-D", x.shape_str(), w.shape_str());
  ESA_CHECK(x.shape[1] == w.shape[1], "linear: x {} does not match weight {} (inner dimension)", x.shape_str(),
            w.shape_str());
  ESA_CHECK(bias.data == nullptr || (bias.shape.size() == 1 && bias.shape[0] == w.shape[0]),
            "linear: bias {} does not match weight {}", bias.shape_str(), w.shape_str());
  if (y.shape() != std::vector<int64_t>{x.shape[0], w.shape[0]}) y = Tensor({x.shape[0], w.shape[0]});
  linear_cpu(x.data, w.data, bias.data, y.data(), x.shape[0], x.shape[1], w.shape[0]);
}

}  // namespace esa::ops
