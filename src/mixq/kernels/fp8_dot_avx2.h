// The AVX2 entry points of the FP8 kernel (fp8_dot_avx2.cc), for fp8_dot.cc's table: compiled with
// per-function target attributes, called only after Fp8DotHasAvx2().
#pragma once

#include <cstddef>
#include <cstdint>

namespace mixq::fp8_dot_avx2 {

float Dot(const void* w_row, const void* activation, int64_t n, int64_t group);

void DotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t activation_bytes,
             int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride);

}  // namespace mixq::fp8_dot_avx2
