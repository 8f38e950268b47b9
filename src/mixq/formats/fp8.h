// FP8 E4M3 (OCP OFP8 v1.0 "E4M3FN"): the 8-bit float codec and mixq's scaled FP8 weight format built on it.
//
// Codec. A code is S.EEEE.MMM: 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits.
//   E = 1..15: (-1)^S * (1 + M/8) * 2^(E-7)       (normals: 2^-6 .. 448)
//   E = 0:     (-1)^S * (M/8) * 2^-6              (subnormals: 2^-9 .. 7 * 2^-9; M = 0 is +-0)
//   S.1111.111 (0x7F, 0xFF) is NaN; there are no infinities, so S.1111.110 = +-448 is the largest value.
// FloatToFp8E4M3 rounds to nearest, ties to even, and saturates (OCP's saturation mode, as CUDA's
// __NV_SATFINITE): every finite value beyond +-448 -- including those past 464, which unsaturated rounding
// would send to the missing next binade -- and +-inf become +-448. Weight quantization never feeds it an
// infinity (non-finite weights are an error), so the choice only matters to direct callers: a weight
// file never gains a NaN from an overflow. NaN becomes 0x7F whatever its sign; -0 stays -0 (0x80).
//
// Weight format (DType::kFp8E4M3). Layout of one row of `cols` weights, `Fp8RowBytes(cols)` bytes:
//   float32 scale (little-endian, 4 bytes; need not be aligned)
//   cols    E4M3 codes, one byte each, in column order
// weight[c] = scale * Fp8E4M3ToFloat(code[c]). Per output channel ("fp8", "fp8-pc") each row has its own
// scale; per tensor ("fp8-pt") the one scale is repeated in every row, so both read the same way. Any
// row length works (no blocks).
//
// Quantizer: for the values sharing a scale, candidates scale = absmax / 448 * f for f in
// kFp8ScaleFactors; each is measured as stored (codes rounded against the float32 scale) and the one with
// the smallest squared error -- weighted per input channel when an importance vector is given -- wins.
// docs/fp8.md gives the measurements behind the candidate grid.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace mixq {

constexpr float kFp8E4M3Max = 448.0f;
constexpr uint8_t kFp8E4M3MaxCode = 0x7E;  // +448; 0xFE is -448
constexpr uint8_t kFp8E4M3NaN = 0x7F;

// The value of every code, built from the bit fields (subnormals by multiplication, normals by placing
// the fields into a float32): the table the scalar paths and tests read.
constexpr std::array<float, 256> MakeFp8E4M3Table() {
  std::array<float, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) {
    const uint32_t sign = (c & 0x80u) << 24;
    const uint32_t e = (c >> 3) & 0xFu;
    const uint32_t m = c & 0x7u;
    float v;
    if (e == 15 && m == 7) {
      v = std::bit_cast<float>(sign | 0x7FC00000u);
    } else if (e == 0) {
      v = std::bit_cast<float>(sign | std::bit_cast<uint32_t>(static_cast<float>(m) * 0x1p-9f));
    } else {
      v = std::bit_cast<float>(sign | ((e - 7 + 127) << 23) | (m << 20));
    }
    t[c] = v;
  }
  return t;
}
inline constexpr std::array<float, 256> kFp8E4M3Values = MakeFp8E4M3Table();

inline float Fp8E4M3ToFloat(uint8_t code) { return kFp8E4M3Values[code]; }

// Round to nearest even with saturation to +-448; see the file comment for NaN, infinities and -0.
uint8_t FloatToFp8E4M3(float x);

// Bytes of one weight row of `cols` values: the float32 scale and one code per value.
constexpr size_t Fp8RowBytes(int64_t cols) { return sizeof(float) + static_cast<size_t>(cols); }

// The factors the scale search tries: scale = absmax / 448 * f for f = 1, 1 + 1/16, ..., 1 + 15/16. A float
// grid is the same, up to subnormals and saturation, under a scale change of 2, so these cover every
// alignment of the weights to the code grid within one octave without clipping the largest weight (f >= 1
// maps it to 448 / f <= 448). Shrinking (f < 1, as the INT search does) saturates the largest weights
// instead and measured worse: docs/fp8.md.
constexpr std::array<float, 16> MakeFp8ScaleFactors() {
  std::array<float, 16> f{};
  for (size_t k = 0; k < f.size(); ++k) f[k] = 1.0f + static_cast<float>(k) / 16.0f;
  return f;
}
inline constexpr std::array<float, 16> kFp8ScaleFactors = MakeFp8ScaleFactors();

// Quantizes a row-major [rows, cols] float matrix into kFp8E4M3 rows (Fp8RowBytes(cols) bytes each at
// dst). per_tensor: one scale for the whole matrix, stored in every row. importance: optional [cols]
// per-input-channel weights of the squared error. Throws mixq::Error for negative sizes, a non-finite
// weight, or a negative or non-finite importance. Rows are quantized in parallel (OpenMP).
void QuantizeFp8Matrix(const float* src, int64_t rows, int64_t cols, bool per_tensor, std::byte* dst,
                       const float* importance = nullptr);

// The scale search for `n` values sharing one scale (rows of `stride` values apart: a span of `rows` rows
// of `cols`), exposed for tests: returns the chosen scale (0 for all-zero values). Finite inputs are an
// invariant.
float SearchFp8Scale(const float* x, int64_t rows, int64_t cols, const float* importance);

// dst[0..cols) = the weights of one kFp8E4M3 row at src.
void DequantizeFp8Row(const void* src, float* dst, int64_t cols);

// The float32 scale at the head of a row (an unaligned read).
float Fp8RowScale(const void* row);

}  // namespace mixq
