// SwiGLU gate: out = silu(gate) * up, elementwise (the Llama MLP's nonlinearity).
#pragma once

#include "core/tensor.h"

namespace esa::ops {

/// gate [T, F] is overwritten with silu(gate) * up; up has the same shape.
void swiglu(Tensor& gate, const TensorView& up);
void swiglu_cpu(float* gate, const float* up, int64_t n);

}  // namespace esa::ops
