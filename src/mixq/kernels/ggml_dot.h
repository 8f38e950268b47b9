// The integer dot-product kernels of ggml's weight types (QuantKernel rows for Q4_0 ... IQ4_XS), with
// the activation blocks they pair with: Q8_0, Q8_1 (for Q4_1/Q5_1) and Q8_K (for the k-quants, IQ4_XS).
#pragma once

#include <cstdint>

#include "mixq/formats/ggml_blocks.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/dtype.h"

namespace mixq {

// The kernels for ggml weight type `dtype` (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS), or nullptr for any other type. `dot` is the best this CPU has, chosen once: AVX-512
// VNNI for the 32-weight types (which also get `dot_rows`), else AVX2 (+FMA, F16C), else scalar;
// `dot_ref` and `quantize_activation_ref` are the scalar oracles. `group` is ignored.
// Rows must be whole blocks (32 weights, 256 for the k-quants and IQ4_XS): an invariant, since model
// loading validates tensor shapes first.
const QuantKernel* GgmlQuantKernel(DType dtype);

// The activation type the kernel of `weight_type` quantizes to (kQ8_0, kQ8_1 or kQ8_K). Only for types
// GgmlQuantKernel covers (aborts otherwise).
DType GgmlActivationType(DType weight_type);

}  // namespace mixq
