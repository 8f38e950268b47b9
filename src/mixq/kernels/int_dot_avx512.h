// The AVX-512 VNNI dot products of the INT kernels (int_dot_avx512.cc), for int_dot.cc's table: compiled
// with per-function target attributes, called only after CpuHasAvx512Vnni().
#pragma once

#include <cstdint>

#include "mixq/kernels/int_dot_avx2.h"

namespace mixq::int_dot_avx512 {

// The dot product for codes of `bits` (2..8) bits, symmetric or not.
int_dot_avx2::DotFn Dot(int bits, bool symmetric);

// QuantKernel::interleaved's dot_groups where VNNI beats the AVX2 kernel on the same layout (INT4; the
// narrower codes' AVX2 kernels already sum in int16 cheaply); nullptr for the other widths.
int_dot_avx2::DotGroupsFn DotGroups(int bits, bool symmetric);

}  // namespace mixq::int_dot_avx512
