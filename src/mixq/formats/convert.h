// Row codecs between float and the stored element types: the scalar reference every kernel is tested
// against. Quantized formats add their rows here (issue: quantized weights).
#pragma once

#include <cstdint>

#include "mixq/tensor/dtype.h"

namespace mixq {

// Whether RowToFloat / RowFromFloat handle `dtype`.
bool HasFloatCodec(DType dtype);

// dst[0..n) = the n values stored at src in `dtype`; n must be whole blocks.
void RowToFloat(DType dtype, const void* src, float* dst, int64_t n);
// Stores n floats into `dtype` at dst (rounding to nearest even for F16/BF16).
void RowFromFloat(DType dtype, const float* src, void* dst, int64_t n);

}  // namespace mixq
