// The AVX2 and AVX-512 VNNI entry points of the W8A8 kernels (w8a8_dot_avx2.cc), for w8a8_dot.cc: compiled
// with per-function target attributes, called only after the CPU check for their level.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mixq::w8a8_avx2 {

// Same bytes as QuantizeW8A8ActivationRef.
void QuantizeActivation(const float* x, int64_t n, float static_scale, void* dst);

// Exact sum_i (c_i - 128) q_i (activation: a W8A8 activation row).
int64_t DotInt(const uint8_t* codes, const void* activation, int64_t n);
int64_t DotIntVnni(const uint8_t* codes, const void* activation, int64_t n);

// W8A8DotRows with a register tile of rows x tokens.
void DotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t activation_bytes,
             int64_t n_tokens, int64_t n, float* out, int64_t out_stride);
void DotRowsVnni(const void* w, size_t row_bytes, int64_t n_rows, const void* activations,
                 size_t activation_bytes, int64_t n_tokens, int64_t n, float* out, int64_t out_stride);

}  // namespace mixq::w8a8_avx2
