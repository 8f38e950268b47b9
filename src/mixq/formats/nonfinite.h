// Finding NaN/Inf in stored weights without widening them: float values for the float types, the FP16
// scales (and mins) of every block for ggml's quantized types and every group for mixq's INT types —
// the only places a quantized tensor can hold a non-finite number.
#pragma once

#include <cstdint>

#include "mixq/tensor/tensor.h"

namespace mixq {

// How many stored values (floats, or block/group scales) of `t` are NaN or Inf; 0 for types that
// cannot hold one (integers). Reads every scale, so it touches each page of a quantized tensor once.
int64_t CountNonFinite(const TensorView& t);

}  // namespace mixq
