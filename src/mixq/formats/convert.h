// Row codecs between float and the stored element types: the scalar reference every kernel is tested
// against. Quantizing into ggml's and mixq's formats is quant/'s work (it searches scales); this file
// only reads them.
#pragma once

#include <cstdint>

#include "mixq/tensor/dtype.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

// Whether RowToFloat / RowFromFloat handle `dtype`.
bool HasFloatCodec(DType dtype);

// Whether RowToFloat reads `dtype`: the float types, ggml's quantized types, mixq's INT types.
bool CanReadAsFloat(DType dtype);

// dst[0..n) = the n values of one row stored at src in `dtype`; n must be whole blocks. `group` is the
// group size of a mixq INT row (TensorView::group), ignored for other types.
void RowToFloat(DType dtype, const void* src, float* dst, int64_t n, int64_t group = 0);
// Row r of `tensor` as float, its sparse salient part (TensorView::salient) added: the weights it stands for.
void TensorRowToFloat(const TensorView& tensor, int64_t r, float* dst);
// Every row of `tensor` (any type CanReadAsFloat reads) into dst, [rows, cols] row-major; rows in parallel
// for matrices large enough to pay for the threads.
void TensorToFloat(const TensorView& tensor, float* dst);  // salient part included

// Stores n floats into `dtype` at dst (rounding to nearest even for F16/BF16).
void RowFromFloat(DType dtype, const float* src, void* dst, int64_t n);

}  // namespace mixq
