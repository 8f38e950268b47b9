// The QuantKernel for FP8 E4M3 weights (formats/fp8.h): float activations against rows of E4M3 codes.
//
// Activation layout: the float32 values themselves (4 bytes a value; quantize_activation copies). FP8
// weights span 2^-9..448 times their scale, so an int8 activation block could not be multiplied with them
// in integers anyway; keeping activations float loses nothing and costs 4 bytes per input value, which the
// GEMV reads from cache, not memory.
//
// Dot: scale * sum_i decode(c_i) * a_i. The scalar reference reads the 256-entry table and sums in
// double. The AVX2 path decodes in registers without a table: the magnitude bits EEEE.MMM of a code,
// placed at bits 13..7 of an FP16 word, are an FP16 number worth exactly decode(c) * 2^-8 -- FP16's
// subnormals (exponent 0) line up with E4M3's, and E4M3's bias 7 is FP16's 15 less 8 -- so F16C's
// vcvtph2ps widens 8 codes at a time exactly, the sign goes to bit 15, the NaN codes get FP16's all-ones
// exponent, and 2^8 is folded into the row scale at the end. 32 codes per step into four FMA
// accumulators; a row's last n % 32 codes (and activations) are run as one zero-padded step.
// dot_rows (prefill) decodes a block of rows into floats once and runs every token over them in the same
// order, so it returns exactly what `dot` returns, pair by pair.
#pragma once

#include <cstdint>

#include "mixq/kernels/quant_kernel.h"

namespace mixq {

// The kernel of kFp8E4M3, or nullptr for any other type.
const QuantKernel* Fp8QuantKernel(DType dtype);

// Whether this CPU runs the AVX2 path (AVX2, FMA and F16C).
bool Fp8DotHasAvx2();

}  // namespace mixq
