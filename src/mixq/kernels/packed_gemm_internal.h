// The packed GEMM's panel layout and micro-kernels, shared by packed_gemm.cc (driver, packing, scalar
// micro-kernel), packed_gemm_vnni.cc (AVX-512 VNNI) and packed_gemm_avx2.cc (AVX2).
//
// Panel: 8 rows ("a row group") x all blocks of the row, block after block. One block of width W:
//   uint8  codes[W / 4][8][4]   code c + bias of row r, values 4s..4s+3, at [s][r]: one 32-byte load feeds
//                               8 rows x 4 values to `vpdpbusd` (or `vpmaddubsw`)
//   float  d[8]                 the rows' block scales
//   float  m[8]                 the rows' block offsets (w = d c + m)
// so kPanelBlockBytes(W) = 8 W + 64. Rows past the matrix end are zero (d = m = 0, codes c = 0).
// The bias is what the micro-kernel's integer instruction needs: 128 for `vpdpbusd` (any unsigned byte),
// the format's code_bias for AVX2 (the smallest unsigned bytes; 128 for 8-bit codes).
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/kernels/packed_gemm.h"

namespace mixq::packed_gemm {

constexpr int kRowsPerGroup = 8;
constexpr int kMaxRowGroups = 2;  // a tile: 16 rows
constexpr int kMaxTokens = 4;

constexpr size_t PanelBlockBytes(int width) { return static_cast<size_t>(8 * width + 64); }

// out[t * 16 + g * 8 + r] = sum over blocks [b0, b1) of row group g's row r times token t's activations:
//   acc = corr_t[b] + sum_j (c + bias) q_tj  (int32, exact: = sum_j c q_tj)
//   f = fma(float(acc), d * scale_t[b], f); with offsets also f = fma(m, msum_t[b], f)
// in this order, so every micro-kernel agrees with the scalar one bit for bit. For a format with a
// scale_span S > 1 (b0 and b1 multiples of S), each span of S blocks is summed before its one scale:
//   p = 0; per block p = fma(float(acc), d, p); with offsets p = fma(m, msum_t[b], p) (msum_t: the code sum)
//   then f = fma(p, scale_t[first block of the span], f).
// `panel` points at row group 0's block 0; row group g starts rowgroup_stride bytes further. The format
// gives width, offset, code_bits (the AVX2 kernel's int16 steps depend on them) and scale_span.
using MicroKernel = void (*)(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups,
                             const PackedActivationRow* acts, int n_tokens, int64_t b0, int64_t b1,
                             const PackedGemmFormat& format, float* out);

void MicroKernelRef(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                    int n_tokens, int64_t b0, int64_t b1, const PackedGemmFormat& format, float* out);

// Defined only on x86-64 builds; callable only where CpuHasAvx512Vnni(). Panel bias 128.
void MicroKernelVnni(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                     int n_tokens, int64_t b0, int64_t b1, const PackedGemmFormat& format, float* out);

// Defined only on x86-64 builds; callable only where CpuHasAvx2(). Panel bias: the format's code_bias;
// activation codes must lie in [-127, 127] (every mixq activation quantizer's range).
void MicroKernelAvx2(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                     int n_tokens, int64_t b0, int64_t b1, const PackedGemmFormat& format, float* out);

}  // namespace mixq::packed_gemm
