// Scalar reference dequantization of mixq's integer formats (layout in tensor/int_layout.h): the oracle
// the INT quantizer and kernels are tested against.
#pragma once

#include <cstdint>

#include "mixq/tensor/dtype.h"

namespace mixq {

// dst[0..n) = the n weights of one row stored at src in the mixq INT `dtype` with `group` weights per
// scale (0: the whole row). IsIntFormat(dtype) is an invariant.
void DequantizeIntRow(DType dtype, const void* src, float* dst, int64_t n, int64_t group);

}  // namespace mixq
