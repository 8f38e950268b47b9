// FP8 E4M3: the rounding conversion from float, and the scaled weight format's reference quantizer.
#include "mixq/formats/fp8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mixq/base/check.h"
#include "mixq/base/error.h"

namespace mixq {

uint8_t FloatToFp8E4M3(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const auto sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return kFp8E4M3NaN;
  // Saturation: everything from 448 up (the rounding of values in (448, 464] to 448 included) and +-inf.
  if (a >= std::bit_cast<uint32_t>(kFp8E4M3Max)) return sign | kFp8E4M3MaxCode;
  if (a < std::bit_cast<uint32_t>(0x1p-6f)) {
    // Subnormal range: the value is m * 2^-9, and |x| * 512 is exact, so the rounding is nearbyint's (ties
    // to even under the default rounding mode). m = 8 is 2^-6, whose code 0x08 is the smallest normal.
    const auto m = static_cast<uint32_t>(std::nearbyint(std::bit_cast<float>(a) * 512.0f));
    return static_cast<uint8_t>(sign | m);
  }
  // Normal range: round float32's 23 mantissa bits to 3, ties to even; a carry out of the mantissa moves
  // into the exponent, which is the next binade's first value, as it should be. Rebias 127 -> 7.
  const uint32_t rounded = (a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20;
  const uint32_t code = rounded - ((127u - 7u) << 3);
  MIXQ_CHECK(code >= 0x08u && code <= kFp8E4M3MaxCode);
  return static_cast<uint8_t>(sign | code);
}

float Fp8RowScale(const void* row) {
  float scale;
  std::memcpy(&scale, row, sizeof(scale));
  return scale;
}

void DequantizeFp8Row(const void* src, float* dst, int64_t cols) {
  const float scale = Fp8RowScale(src);
  const auto* codes = static_cast<const uint8_t*>(src) + sizeof(float);
  for (int64_t c = 0; c < cols; ++c) dst[c] = scale * Fp8E4M3ToFloat(codes[c]);
}

namespace {

// Squared error of storing x[rows, cols] with `scale` (weighted per column by `importance`), exactly as
// QuantizeFp8Matrix stores it: codes of x * (1 / scale), values scale * decode(code).
double StoredError(const float* x, int64_t rows, int64_t cols, const float* importance, float scale) {
  const float inv = 1.0f / scale;
  double err = 0.0;
  // A per-tensor search spans the whole matrix; a per-row one runs inside QuantizeFp8Matrix's row loop.
#pragma omp parallel for reduction(+ : err) schedule(static) if (rows >= 64)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float q = scale * Fp8E4M3ToFloat(FloatToFp8E4M3(xr[c] * inv));
      const double d = static_cast<double>(xr[c]) - q;
      err += (importance != nullptr ? importance[c] : 1.0) * d * d;
    }
  }
  return err;
}

void WriteRow(const float* x, int64_t cols, float scale, uint8_t* row) {
  std::memcpy(row, &scale, sizeof(scale));
  uint8_t* codes = row + sizeof(float);
  if (scale == 0.0f) {
    std::memset(codes, 0, static_cast<size_t>(cols));
    return;
  }
  const float inv = 1.0f / scale;
  for (int64_t c = 0; c < cols; ++c) codes[c] = FloatToFp8E4M3(x[c] * inv);
}

}  // namespace

float SearchFp8Scale(const float* x, int64_t rows, int64_t cols, const float* importance) {
  float absmax = 0.0f;
  for (int64_t i = 0; i < rows * cols; ++i) absmax = std::max(absmax, std::fabs(x[i]));
  MIXQ_CHECK(std::isfinite(absmax));
  if (absmax == 0.0f) return 0.0f;
  float best_scale = 0.0f;
  double best_err = std::numeric_limits<double>::infinity();
  for (const float f : kFp8ScaleFactors) {
    const float scale = absmax / kFp8E4M3Max * f;
    // A scale this small (weights near FLT_MIN) has no finite inverse; absmax / 448 always does for the
    // weights a model can hold, so candidate 1 is never skipped for a normal tensor.
    if (!std::isfinite(1.0f / scale) || scale == 0.0f) continue;
    const double err = StoredError(x, rows, cols, importance, scale);
    if (err < best_err) {
      best_err = err;
      best_scale = scale;
    }
  }
  // Only tiny subnormal weights leave no candidate: store the largest one's scale unsearched.
  return best_scale != 0.0f ? best_scale : absmax / kFp8E4M3Max;
}

void QuantizeFp8Matrix(const float* src, int64_t rows, int64_t cols, bool per_tensor, std::byte* dst,
                       const float* importance) {
  if (rows < 0 || cols < 0) Fail("QuantizeFp8Matrix: shape [{}, {}]: expected sizes >= 0", rows, cols);
  if (rows == 0 || cols == 0) return;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = src[r * cols + c];
      if (!std::isfinite(v)) Fail("QuantizeFp8Matrix: weight [{}, {}] is {}; only finite weights can be quantized", r, c, v);
    }
  }
  if (importance != nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(importance[c]) || importance[c] < 0.0f) {
        Fail("QuantizeFp8Matrix: importance of input channel {} is {}; expected a finite value >= 0", c, importance[c]);
      }
    }
  }
  auto* out = reinterpret_cast<uint8_t*>(dst);
  const size_t row_bytes = Fp8RowBytes(cols);
  const float tensor_scale = per_tensor ? SearchFp8Scale(src, rows, cols, importance) : 0.0f;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * cols;
    const float scale = per_tensor ? tensor_scale : SearchFp8Scale(x, 1, cols, importance);
    WriteRow(x, cols, scale, out + static_cast<size_t>(r) * row_bytes);
  }
}

}  // namespace mixq
