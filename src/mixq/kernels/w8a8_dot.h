// W8A8 kernels (docs/w8a8.md): int8 weights times int8 activations with ONE scale per weight row and ONE
// per token row, the shape of a real int8 x int8 GEMM: a whole-row integer sum, then one float multiply.
//
// Weights: mixq kInt8Sym with group 0 (tensor/int_layout.h): per row an FP16 scale s_w, then n codes c in
// 0..255 standing for c - 128 (per-tensor quantization stores the same scale in every row).
//
// Activation row layout (one token of n values), W8A8ActivationBytes(n) bytes:
//   float   scale   d: the static scale (kInt8Tensor, from calibration) or max|x| / 127 (kInt8Token; 0
//                   for an all-zero row)
//   int32   sum     sum of the codes q (what an unsigned-times-signed kernel subtracts 128 times)
//   24 bytes of zeros, so q starts 32 bytes in
//   int8    q[n]    round-half-to-even(x / d) clamped to [-127, 127] (a NaN becomes -127), then zeros up
//                   to a multiple of 32, so a kernel may read whole 32-byte vectors
//
// Dot: y = s_w * d * sum_i (c_i - 128) q_i with the sum exact in integers (int64; |term| <= 16256) and
// the product s_w * d formed in float, so every path returns the same float bit for bit. The AVX2 path
// multiplies with _mm256_maddubs_epi16 using the sign trick (|c - 128| as the unsigned operand, q with
// c - 128's sign as the signed one: a pair sums to at most 2 * 128 * 127 = 32512, no int16 saturation)
// and widens with _mm256_madd_epi16; the AVX-512 VNNI path multiplies the unsigned codes directly
// (vpdpbusd, no saturation) and subtracts 128 * sum.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mixq/tensor/tensor.h"

namespace mixq {

inline constexpr int64_t kW8A8Pad = 32;  // q is padded to a multiple of this many bytes

struct W8A8ActivationHeader {
  float scale;
  int32_t sum;
  uint8_t reserved[24];
};
static_assert(sizeof(W8A8ActivationHeader) == 32, "the activation layout promises q at byte 32");

// Bytes of one quantized activation row of n values.
size_t W8A8ActivationBytes(int64_t n);

// x[0..n) into the layout above. static_scale > 0: kInt8Tensor with that scale (values beyond 127 * scale
// clamp); static_scale == 0: kInt8Token (dynamic). The fast path writes the same bytes as the reference.
void QuantizeW8A8ActivationRef(const float* x, int64_t n, float static_scale, void* dst);
void QuantizeW8A8Activation(const float* x, int64_t n, float static_scale, void* dst);

// sum_i (c_i - 128) q_i of n codes with a quantized activation row (exact).
int64_t W8A8DotIntRef(const uint8_t* codes, const void* activation, int64_t n);
int64_t W8A8DotInt(const uint8_t* codes, const void* activation, int64_t n);

// One stored weight row (FP16 scale + n codes) with one activation row: s_w * d * W8A8DotInt.
float W8A8DotRef(const void* w_row, const void* activation, int64_t n);
float W8A8Dot(const void* w_row, const void* activation, int64_t n);

// out[t * out_stride + r] = W8A8Dot(w + r * row_bytes, activations + t * activation_bytes, n) for
// r < n_rows, t < n_tokens: a register tile of rows x tokens shares each weight load among tokens.
void W8A8DotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t activation_bytes,
                 int64_t n_tokens, int64_t n, float* out, int64_t out_stride);

// Which path W8A8Dot runs on this CPU: "AVX512-VNNI", "AVX2" or "scalar". The Force* call (tests and
// benchmarks) restricts it to at most `isa` ("scalar", "AVX2", or "" for the best); returns the name used.
const char* W8A8Isa();
const char* ForceW8A8Isa(const char* isa);

// y[t * w.rows() + r] = W[r, :] . x[t, :] for a tensor with w.activation != kFormat: each token row is
// quantized once (static or dynamic per w.activation), rows split across threads. The loader guarantees
// dtype kInt8Sym with group 0 (and a positive finite activation_scale for kInt8Tensor); a tensor that
// breaks that is a programming error (MIXQ_CHECK).
void MatMulW8A8(const TensorView& w, const float* x, int64_t n_tokens, float* y);

}  // namespace mixq
