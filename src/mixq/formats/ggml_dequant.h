// Scalar reference dequantization of llama.cpp's quantized block types, bit-exact with ggml's
// `dequantize_row_*`: the oracle every later SIMD kernel and every quantizer is tested against.
//
// Covers Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS and Q8_K (layouts in
// ggml_blocks.h and docs/ggml-formats.md). Each value is computed with the same float operations in the
// same order as ggml's reference, so results match it bit for bit on a host without FMA contraction.
#pragma once

#include <cstdint>

#include "mixq/tensor/dtype.h"

namespace mixq {

// Whether DequantizeRow handles `dtype` (the quantized types above; not F32/F16/BF16).
bool HasDequantizer(DType dtype);

// dst[0..n) = the n weights stored at src in the quantized `dtype`. `src` needs no alignment beyond 2
// bytes (4 for Q8_K). n must be a whole number of blocks and HasDequantizer(dtype) true: both are
// checked as invariants, since callers validate file shapes (ReadGguf) before they get here.
void DequantizeRow(DType dtype, const void* src, float* dst, int64_t n);

}  // namespace mixq
