// Packed prefill GEMM for every quantized weight format: rows are decoded once per call into 8-row
// interleaved panels of signed 8-bit codes with one float scale (and offset) per block, so the inner loop
// is one int8 x int8 instruction (AVX-512 VNNI `vpdpbusd`; AVX2 `vpmaddubsw` with int16 sums) for 8 rows x 4
// weights, and the float work per block (convert, scale, accumulate) is shared by 8 rows instead of paid per row.
//
// Why: the per-row kernels (`dot`, `dot_rows`) spend about 3 float instructions per (row, token, 32-weight
// block) next to 1 integer one; prefill was 1.4-3x behind llama.cpp for that reason (docs/kernels.md). The
// panel is built per call in a per-thread scratch, never stored: the file's layout (and mmap) stays as is.
//
// A format opts in with a PackedGemmFormat (quant_kernel.h): how to cut a row into blocks of `width` (16
// or 32) values, w_i = d_b * c_i + m_b with c_i in [-128, 127], and how to read its own quantized
// activation row as the same blocks (the activations are quantized exactly as for `dot`, so a packed
// result equals `dot`'s up to the order of float additions).
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/kernels/quant_kernel.h"

namespace mixq {

struct TensorView;

// One token's activations as the GEMM reads them: block b's codes at q + b * width, zero-padded.
struct PackedActivationRow {
  const int8_t* q;
  const float* scale;   // per block
  const int32_t* corr;  // per block: -bias * sum(q), undoing the bias of the packed weight codes
  const float* msum;    // per block: the factor of the weight offset m, scale * sum(q) (a format with a
                        // scale span: sum(q), scaled with the span)
};

// Whether MatMulQuantized takes the packed path for this kernel and batch: the kernel has a packed format
// and this CPU runs a packed micro-kernel (AVX-512 VNNI or AVX2), and n_tokens reaches PackedGemmMinTokens().
bool UsePackedGemm(const QuantKernel& kernel, int64_t n_tokens);

// The batch from which the packed GEMM beats the per-row kernels on this CPU: it decodes every weight row
// once per call, which the VNNI micro-kernel pays back from 4 tokens, the AVX2 one from 8-12 tokens for
// Q4_0/Q4_K and from 32 for Q6_K, IQ4_NL and Q8_0 (slower decodes); AVX2 takes 32 so that no format is
// slower than on the per-row kernels (`ggml_dot_bench --benchmark_filter='BM_Gemm(Packed|Avx2Rows)'`).
int64_t PackedGemmMinTokens();

// y[t * rows + r] = W[r, :] . x[t, :] through packed panels (plus the salient part, if any).
// `reference` picks the scalar micro-kernel (the oracle of the SIMD ones; available on every CPU).
void PackedGemm(const QuantKernel& kernel, const TensorView& w, const float* x, int64_t n_tokens, float* y,
                bool reference = false);

// "AVX512-VNNI", "AVX2" or "none": the micro-kernel UsePackedGemm would run on this CPU.
const char* PackedGemmIsa();

}  // namespace mixq
