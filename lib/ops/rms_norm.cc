#include "ops/rms_norm.h"

#include "core/error.h"

namespace esa::ops {

void rms_norm(const TensorView& x, const TensorView& w, float eps, Tensor& y) {
  ESA_CHECK(x.shape.size() == 2, "rms_norm: x {} must be 2-D", x.shape_str());
  ESA_CHECK(w.shape.size() == 1 && w.shape[0] == x.shape[1], "rms_norm: weight {} does not match x {}", w.shape_str(),
            x.shape_str());
  ESA_CHECK(eps > 0.0f, "rms_norm: eps must be positive, got {}", eps);
  if (y.shape() != x.shape) y = Tensor(x.shape);
  ESA_CHECK(y.data() != x.data, "rms_norm: output may not alias the input");
  rms_norm_cpu(x.data, w.data, eps, y.data(), x.shape[0], x.shape[1]);
}

}  // namespace esa::ops
