// FP8 E4M3: the codec on all 256 codes against the bit-field definition, round trips, ties to even at every
// midpoint, saturation and underflow, nearest-code rounding against an exhaustive search; the weight format's
// sizes and names, the scale search, per-tensor scales, importance weighting, RowToFloat, CountNonFinite
// and bad input.
#include "mixq/formats/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/nonfinite.h"
#include "mixq/formats/weight_format.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

// The value of code c from its bit fields alone (OCP OFP8 v1.0, E4M3), written independently of fp8.h.
double DefinitionValue(int c) {
  const int sign = c >> 7;
  const int e = (c >> 3) & 15;
  const int m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double magnitude = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 7 - 3);
  return sign ? -magnitude : magnitude;
}

bool IsNaNCode(int c) { return (c & 0x7F) == 0x7F; }

TEST(Fp8Codec, EveryCodeMatchesTheBitFieldDefinition) {
  for (int c = 0; c < 256; ++c) {
    const float v = Fp8E4M3ToFloat(static_cast<uint8_t>(c));
    const double expected = DefinitionValue(c);
    if (IsNaNCode(c)) {
      EXPECT_TRUE(std::isnan(v)) << c;
      continue;
    }
    EXPECT_EQ(static_cast<double>(v), expected) << fmt::format("code 0x{:02x}", c);
    EXPECT_EQ(std::signbit(v), c >= 0x80) << fmt::format("code 0x{:02x}", c);  // -0 included
  }
  EXPECT_EQ(Fp8E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0xFE), -448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), 0x1p-9f);   // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x07), 7 * 0x1p-9f);  // largest subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), 0x1p-6f);   // smallest normal
  EXPECT_EQ(Fp8E4M3ToFloat(0x38), 1.0f);
}

TEST(Fp8Codec, EveryCodeEncodesBackToItself) {
  for (int c = 0; c < 256; ++c) {
    const uint8_t back = FloatToFp8E4M3(Fp8E4M3ToFloat(static_cast<uint8_t>(c)));
    EXPECT_EQ(back, IsNaNCode(c) ? kFp8E4M3NaN : c) << fmt::format("code 0x{:02x}", c);
  }
}

// Between consecutive codes of one sign (subnormals, the subnormal/normal boundary and every binade
// boundary included), the midpoint goes to the code with the even mantissa, and the floats just either
// side of it go to the nearer code.
TEST(Fp8Codec, MidpointsTieToEven) {
  for (const int sign : {0, 0x80}) {
    for (int c = 0; c < 0x7E; ++c) {
      const float lo = Fp8E4M3ToFloat(static_cast<uint8_t>(sign | c));
      const float hi = Fp8E4M3ToFloat(static_cast<uint8_t>(sign | (c + 1)));
      const float mid = (lo + hi) / 2;  // exact: both have at most 4 significant bits
      ASSERT_EQ(static_cast<double>(mid), (DefinitionValue(sign | c) + DefinitionValue(sign | (c + 1))) / 2);
      const int even = (c % 2 == 0) ? c : c + 1;
      SCOPED_TRACE(fmt::format("between codes 0x{:02x} and 0x{:02x}", sign | c, sign | (c + 1)));
      EXPECT_EQ(FloatToFp8E4M3(mid), sign | even);
      EXPECT_EQ(FloatToFp8E4M3(std::nextafter(mid, lo)), sign | c);
      EXPECT_EQ(FloatToFp8E4M3(std::nextafter(mid, hi)), sign | (c + 1));
    }
  }
}

// satfinite: nothing finite rounds past 448; 464 (the midpoint to the would-be 480) and beyond saturate.
TEST(Fp8Codec, SaturatesAt448) {
  const float inf = std::numeric_limits<float>::infinity();
  for (const float v : {448.0f, std::nextafter(448.0f, inf), 456.0f, 464.0f, std::nextafter(464.0f, inf), 480.0f,
                        1e6f, std::numeric_limits<float>::max(), inf}) {
    EXPECT_EQ(FloatToFp8E4M3(v), kFp8E4M3MaxCode) << v;
    EXPECT_EQ(FloatToFp8E4M3(-v), 0xFE) << -v;
  }
  // Just below: 432, midway between 416 (0x7D, odd mantissa) and 448 (0x7E), ties to 448.
  EXPECT_EQ(FloatToFp8E4M3(432.0f), 0x7E);
  EXPECT_EQ(FloatToFp8E4M3(std::nextafter(432.0f, 0.0f)), 0x7D);
}

TEST(Fp8Codec, NaNZeroAndUnderflow) {
  EXPECT_EQ(FloatToFp8E4M3(std::numeric_limits<float>::quiet_NaN()), kFp8E4M3NaN);
  EXPECT_EQ(FloatToFp8E4M3(-std::numeric_limits<float>::quiet_NaN()), kFp8E4M3NaN);
  EXPECT_EQ(FloatToFp8E4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(-0.0f), 0x80);
  // Half the smallest subnormal ties to the even code 0; anything below goes to (signed) zero.
  EXPECT_EQ(FloatToFp8E4M3(0x1p-10f), 0x00);
  EXPECT_EQ(FloatToFp8E4M3(-0x1p-10f), 0x80);
  EXPECT_EQ(FloatToFp8E4M3(std::nextafter(0x1p-10f, 1.0f)), 0x01);
  for (const float v : {std::nextafter(0x1p-10f, 0.0f), 1e-5f, 1e-30f, std::numeric_limits<float>::denorm_min()}) {
    EXPECT_EQ(FloatToFp8E4M3(v), 0x00) << v;
    EXPECT_EQ(FloatToFp8E4M3(-v), 0x80) << -v;
  }
}

// The nearest finite code by exhaustive search over the definition (ties: even mantissa; beyond 448: 448).
int NearestCode(float x) {
  int best = -1;
  double best_distance = std::numeric_limits<double>::infinity();
  for (int c = 0; c < 256; ++c) {
    if (IsNaNCode(c) || (c & 0x7F) == 0 || std::signbit(x) != (c >= 0x80)) continue;  // zeros handled below
    const double d = std::fabs(DefinitionValue(c) - x);
    if (d < best_distance || (d == best_distance && c % 2 == 0)) {
      best = c;
      best_distance = d;
    }
  }
  const int zero = std::signbit(x) ? 0x80 : 0x00;
  if (std::fabs(x) < best_distance || (std::fabs(x) == best_distance && best % 2 == 1)) return zero;
  return best;
}

TEST(Fp8Codec, RandomValuesRoundToTheNearestCode) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  // Magnitudes log-uniform over 2^-12..2^10: below the smallest subnormal's half up to past saturation.
  std::uniform_real_distribution<float> log2_magnitude(-12.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) {
    float x = std::exp2(log2_magnitude(rng));
    if (i % 2) x = -x;
    ASSERT_EQ(FloatToFp8E4M3(x), NearestCode(x)) << x;
  }
}

TEST(Fp8Format, SizesNamesAndTraits) {
  EXPECT_EQ(*RowBytes(DType::kFp8E4M3, 172), 176u);
  EXPECT_EQ(*RowBytes(DType::kFp8E4M3, 1), 5u);
  EXPECT_EQ(*RowBytes(DType::kFp8E4M3, 172, 32), 176u);  // no groups: the group is ignored
  EXPECT_FALSE(RowBytes(DType::kFp8E4M3, -1).has_value());
  EXPECT_FALSE(StorageBytes(DType::kFp8E4M3, 172).has_value());  // sized per row: RowBytes
  EXPECT_EQ(*TensorBytes(DType::kFp8E4M3, {64, 172}), 64u * 176u);
  EXPECT_EQ(DTypeFromGgmlId(1056), DType::kFp8E4M3);
  EXPECT_EQ(DTypeFromName("fp8_e4m3"), DType::kFp8E4M3);
  EXPECT_STREQ(DTypeName(DType::kFp8E4M3), "FP8_E4M3");
  EXPECT_FALSE(IsIntFormat(DType::kFp8E4M3));
  EXPECT_TRUE(CanReadAsFloat(DType::kFp8E4M3));
  EXPECT_FALSE(HasFloatCodec(DType::kFp8E4M3));

  const WeightFormat pc{DType::kFp8E4M3, 0, false};
  const WeightFormat pt{DType::kFp8E4M3, 0, true};
  EXPECT_EQ(ParseWeightFormat("fp8"), pc);
  EXPECT_EQ(ParseWeightFormat("FP8-PC"), pc);
  EXPECT_EQ(ParseWeightFormat("fp8-pt"), pt);
  EXPECT_FALSE(ParseWeightFormat("fp8-g128").has_value());
  EXPECT_FALSE(ParseWeightFormat("fp8-pc-sym").has_value());
  EXPECT_EQ(WeightFormatName(pc), "fp8");
  EXPECT_EQ(WeightFormatName(pt), "fp8-pt");
  EXPECT_EQ(ParseWeightFormat(WeightFormatName(pt)), pt);
  EXPECT_NE(WeightFormatNames().find("fp8-pt"), std::string::npos);
  EXPECT_FALSE(IsLlamaCppCompatible(pc));
  for (const int64_t cols : {1, 33, 172, 4097}) EXPECT_EQ(WhyCannotStore(pc, cols), "") << cols;
  EXPECT_NE(WhyCannotStore(pc, 0), "");
}

std::vector<float> Gaussian(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

double WeightedError(const float* x, const float* deq, int64_t rows, int64_t cols, const float* importance) {
  double err = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double d = static_cast<double>(x[r * cols + c]) - deq[r * cols + c];
      err += (importance ? importance[c] : 1.0) * d * d;
    }
  }
  return err;
}

// What a row stores with `scale`, as the layout defines it: codes of x / scale, values scale * decode.
std::vector<float> StoredWith(const float* x, int64_t cols, float scale) {
  std::vector<float> out(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) out[c] = scale * Fp8E4M3ToFloat(FloatToFp8E4M3(x[c] * (1.0f / scale)));
  return out;
}

struct Quantized {
  int64_t rows, cols;
  std::vector<std::byte> bytes;
  std::vector<float> deq;
  float Scale(int64_t r) const { return Fp8RowScale(bytes.data() + r * Fp8RowBytes(cols)); }
};

Quantized Quantize(const std::vector<float>& x, int64_t rows, int64_t cols, bool per_tensor,
                   const float* importance = nullptr) {
  Quantized q{rows, cols, std::vector<std::byte>(static_cast<size_t>(rows) * Fp8RowBytes(cols)), {}};
  QuantizeFp8Matrix(x.data(), rows, cols, per_tensor, q.bytes.data(), importance);
  q.deq.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    RowToFloat(DType::kFp8E4M3, q.bytes.data() + r * Fp8RowBytes(cols), q.deq.data() + r * cols, cols);
  }
  return q;
}

// Per row: the stored scale is the best candidate of the grid (checked against every candidate here), so
// never worse than plain absmax / 448; each value is within half a code step of its weight; and the
// relative RMS error on Gaussian weights is what 3 mantissa bits give (2^-4 / sqrt(3) ~ 3.6% at most).
TEST(Fp8Quantize, PerRowScaleIsTheBestCandidate) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  const int64_t rows = 24, cols = 173;
  std::vector<float> x = Gaussian(rng, rows * cols, 0.02f);
  x[5 * cols + 3] = 0.5f;  // an outlier row
  std::fill(x.begin() + 7 * cols, x.begin() + 8 * cols, 0.0f);  // an all-zero row
  const Quantized q = Quantize(x, rows, cols, false);
  double err = 0.0, ref = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    float absmax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) absmax = std::max(absmax, std::fabs(xr[c]));
    const float scale = q.Scale(r);
    if (absmax == 0.0f) {
      EXPECT_EQ(scale, 0.0f);
      for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(q.deq[r * cols + c], 0.0f);
      continue;
    }
    const std::vector<float> stored = StoredWith(xr, cols, scale);
    EXPECT_EQ(std::memcmp(stored.data(), q.deq.data() + r * cols, cols * sizeof(float)), 0) << "row " << r;
    const double chosen = WeightedError(xr, stored.data(), 1, cols, nullptr);
    bool is_candidate = false;
    for (const float f : kFp8ScaleFactors) {
      const float candidate = absmax / kFp8E4M3Max * f;
      is_candidate |= candidate == scale;
      const std::vector<float> other = StoredWith(xr, cols, candidate);
      EXPECT_LE(chosen, WeightedError(xr, other.data(), 1, cols, nullptr)) << "row " << r << " factor " << f;
    }
    EXPECT_TRUE(is_candidate) << "row " << r << " scale " << scale;
    for (int64_t c = 0; c < cols; ++c) {
      const double v = std::fabs(xr[c]) / scale;
      // Code step at v: 2^(floor(log2 v) - 3) for normals, 2^-9 for subnormals; saturation clips past 448.
      const double step = v < 0x1p-6 ? 0x1p-9 : std::ldexp(1.0, static_cast<int>(std::floor(std::log2(v))) - 3);
      const double bound = v > 448.0 ? v - 448.0 : step / 2;
      // Slack: x * (1 / scale) is a rounded product, and so is scale * decode.
      EXPECT_LE(std::fabs(xr[c] - q.deq[r * cols + c]), scale * bound * (1 + 1e-5) + 1e-6 * std::fabs(xr[c]))
          << r << ", " << c;
      err += std::pow(xr[c] - q.deq[r * cols + c], 2);
      ref += static_cast<double>(xr[c]) * xr[c];
    }
  }
  EXPECT_LT(std::sqrt(err / ref), 0.036);
}

TEST(Fp8Quantize, PerTensorRepeatsOneScale) {
  std::mt19937 rng(7);
  const int64_t rows = 16, cols = 64;
  std::vector<float> x = Gaussian(rng, rows * cols, 1.0f);
  x[3 * cols + 9] = -20.0f;
  const Quantized q = Quantize(x, rows, cols, true);
  const float scale = SearchFp8Scale(x.data(), rows, cols, nullptr);
  ASSERT_GT(scale, 0.0f);
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(q.Scale(r), scale) << r;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> stored = StoredWith(x.data() + r * cols, cols, scale);
    EXPECT_EQ(std::memcmp(stored.data(), q.deq.data() + r * cols, cols * sizeof(float)), 0) << "row " << r;
  }
  // Per tensor shares the outlier's scale with every row: per channel can only be as good or better.
  const Quantized pc = Quantize(x, rows, cols, false);
  EXPECT_LE(WeightedError(x.data(), pc.deq.data(), rows, cols, nullptr),
            WeightedError(x.data(), q.deq.data(), rows, cols, nullptr));
}

// With importance, the search minimises the weighted error: it beats (or ties) every other candidate under
// that weighting, and on a row where the weighting matters picks differently from the plain search.
TEST(Fp8Quantize, ImportanceWeightsTheSearch) {
  std::mt19937 rng(11);
  const int64_t rows = 32, cols = 96;
  const std::vector<float> x = Gaussian(rng, rows * cols, 1.0f);
  std::vector<float> importance(static_cast<size_t>(cols));
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : importance) v = std::pow(u(rng), 4.0f) * 100.0f;
  const Quantized weighted = Quantize(x, rows, cols, false, importance.data());
  const Quantized plain = Quantize(x, rows, cols, false);
  int differ = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    const double chosen = WeightedError(xr, weighted.deq.data() + r * cols, 1, cols, importance.data());
    EXPECT_LE(chosen, WeightedError(xr, plain.deq.data() + r * cols, 1, cols, importance.data())) << r;
    differ += weighted.Scale(r) != plain.Scale(r);
  }
  EXPECT_GT(differ, 0);
}

TEST(Fp8Quantize, BadInputThrows) {
  std::vector<float> x(8, 1.0f);
  std::vector<std::byte> out(2 * Fp8RowBytes(4));
  x[6] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(QuantizeFp8Matrix(x.data(), 2, 4, false, out.data()), Error);
  x[6] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(QuantizeFp8Matrix(x.data(), 2, 4, true, out.data()), Error);
  x[6] = 1.0f;
  std::vector<float> importance(4, 1.0f);
  importance[2] = -1.0f;
  EXPECT_THROW(QuantizeFp8Matrix(x.data(), 2, 4, false, out.data(), importance.data()), Error);
  EXPECT_THROW(QuantizeFp8Matrix(x.data(), -1, 4, false, out.data()), Error);
  EXPECT_NO_THROW(QuantizeFp8Matrix(x.data(), 0, 4, false, out.data()));
}

TEST(Fp8Format, CountNonFiniteReadsScalesAndNaNCodes) {
  Tensor t = Tensor::Zeros("w", DType::kFp8E4M3, {3, 5});
  std::vector<float> x(15, 0.25f);
  QuantizeFp8Matrix(x.data(), 3, 5, false, t.storage.data());
  EXPECT_EQ(CountNonFinite(t.view()), 0);
  auto* bytes = reinterpret_cast<uint8_t*>(t.storage.data());
  bytes[Fp8RowBytes(5) + 4 + 2] = 0x7F;   // row 1, code 2: +NaN
  bytes[Fp8RowBytes(5) + 4 + 3] = 0xFF;   // row 1, code 3: -NaN
  bytes[2 * Fp8RowBytes(5) + 4 + 4] = 0x7E;  // 448: finite
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(bytes + 2 * Fp8RowBytes(5), &inf, sizeof(inf));  // row 2's scale
  EXPECT_EQ(CountNonFinite(t.view()), 3);
}

}  // namespace
}  // namespace mixq
