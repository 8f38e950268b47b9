// The AVX2 entry points of the INT kernels (int_dot_avx2.cc), for int_dot.cc's table: compiled with
// per-function target attributes, called only after IntDotHasAvx2().
#pragma once

#include <cstddef>
#include <cstdint>

namespace mixq::int_dot_avx2 {

using DotFn = float (*)(const void* w_row, const void* activation, int64_t n, int64_t group);

// The dot product for codes of `bits` (2..8) bits, symmetric or not.
DotFn Dot(int bits, bool symmetric);

// Same bytes as the scalar reference activation quantization (int_dot.h), full blocks in AVX2.
void QuantizeActivation(const float* x, void* dst, int64_t n, int64_t group);

// QuantKernel::interleaved's dot_groups for INT2..INT8 rows (bits 2 to 8) interleaved 8 at a time (int_dot.h).
using DotGroupsFn = void (*)(const void* groups, size_t group_bytes, int64_t n_groups, const void* activations,
                             size_t activation_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,
                             int64_t out_stride);
DotGroupsFn DotGroups(int bits, bool symmetric);

// QuantKernel::interleaved's unpack_panel for the same layouts: the packed GEMM's panel blocks, the bytes
// IntUnpackRows gives laid out so.
using UnpackPanelFn = void (*)(const void* src, int64_t n, int64_t group, int bias, uint8_t* panel);
UnpackPanelFn UnpackPanel(int bits, bool symmetric);

}  // namespace mixq::int_dot_avx2
