// Scalar reference quantizers into llama.cpp's block types, byte-identical with ggml's: what `mixq
// quantize` writes when it targets a ggml type, and the oracle that makes activation blocks for kernel tests.
//
// Covers Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS (weight types) and
// Q8_K, Q8_1 (the activation side of ggml's dot products; Q8_1 is not in model files). Each one runs
// ggml's own per-block scale search (make_qx_quants, make_q3_quants, make_qkx2/qkx3_quants,
// make_qp_quants, the IQ4 non-linear search) with the same float operations in the same order, so on a
// host without FMA contraction the bytes equal those llama.cpp's llama-quantize writes.
// docs/ggml-formats.md ("Quantizers") lists which ggml function each type follows.
#pragma once

#include <cstdint>

#include "mixq/formats/ggml_blocks.h"
#include "mixq/tensor/dtype.h"

namespace mixq {

// Whether QuantizeRowGgml handles `dtype` (the types listed above).
bool HasGgmlQuantizer(DType dtype);

// Quantizes n floats (whole blocks of `dtype`) into `dtype` blocks at dst, as ggml's reference
// quantizers do. dst needs no alignment and receives StorageBytes(dtype, n) bytes.
//
// `importance` (n weights, may be null) are per-weight importances — llama.cpp's imatrix
// "quant_weights": the mean squared activation of each weight's input channel. With null the bytes equal
// llama.cpp's `quantize_<type>(..., quant_weights = NULL)`, i.e. what llama-quantize writes without an
// imatrix (for every type this is `quantize_row_<type>_ref`, except IQ4_NL, whose _ref uses a one-step
// search while quantize_iq4_nl searches 7 scales each side). With importance the bytes follow
// `quantize_<type>_impl` with those quant_weights. Q8_0, Q8_K and Q8_1 ignore importance, as ggml does.
//
// With importance, src must be exactly one tensor row and importance that row's n per-column values
// (an imatrix holds one value per input channel, shared by every row; llama.cpp passes the same vector
// for each row). The legacy types (Q4_0 ... Q5_1) also weight each value by sqrt(mean square of the row
// + value^2), with the mean taken over the n values passed. Without importance, any run of whole blocks
// (e.g. a whole tensor) gives the same bytes as row by row.
// n not a whole number of blocks or an unsupported dtype are programming errors (checked invariants).
void QuantizeRowGgml(DType dtype, const float* src, void* dst, int64_t n, const float* importance = nullptr);

}  // namespace mixq
