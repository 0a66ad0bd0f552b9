#include "ops/swiglu.h"

#include "core/error.h"

namespace esa::ops {

void swiglu(Tensor& gate, const TensorView& up) {
  ESA_CHECK(gate.shape() == up.shape, "swiglu: gate {} and up {} differ", gate.shape_str(), up.shape_str());
  swiglu_cpu(gate.data(), up.data, gate.numel());
}

}  // namespace esa::ops
