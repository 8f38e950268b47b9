// Matrix products of a weight matrix in its stored type with float activations: GEMV for decode (one
// token) and GEMM for prefill (many tokens), both multi-threaded over rows.
#pragma once

#include <cstdint>
#include <span>

#include "mixq/tensor/tensor.h"

namespace mixq {

// Whether MatMul can run weights stored in `dtype`.
bool HasMatMulKernel(DType dtype);

// y[t * w.rows() + r] = sum_c W[r, c] * x[t * w.cols() + c] for t < n_tokens.
// W stays in its stored type (F16/BF16 are widened inside the kernel, never expanded in memory; quantized
// types run integer kernels on their packed blocks, quant_kernel.h).
void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y);

// One product of MatMulSameInput: y = W x, laid out as MatMul writes it.
struct MatMulProduct {
  const TensorView* w = nullptr;
  float* y = nullptr;
};

// MatMul of several matrices with the same input (attention's Q, K and V; the FFN's gate and up). Where
// all are one quantized type on rows interleaved for decode, with the same columns, the input is quantized
// once and the threads walk the rows of all of them in one parallel region: one barrier instead of one
// per matrix. Otherwise one MatMul each. Outputs must not overlap the input.
void MatMulSameInput(std::span<const MatMulProduct> products, const float* x, int64_t n_tokens);

// The Highway target MatMul dispatches to on this CPU ("AVX3", "AVX2", "SSE4", "EMU128", ...); tests
// and benchmarks print it, and it follows hwy::SetSupportedTargetsForTest.
const char* MatMulTargetName();

// Plain scalar reference (double accumulation), single-threaded: the oracle for MatMul's tests.
void MatMulRef(const TensorView& w, const float* x, int64_t n_tokens, float* y);

}  // namespace mixq
