// RTN into mixq INT formats: round-trip error bounds for every (bits, symmetry, grouping) on random and
// real weights, the scale search against plain max scaling, importance weighting, odd shapes, degenerate
// groups and bad input.
#include "mixq/formats/int_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/int_dequant.h"
#include "mixq/model/model.h"
#include "mixq/tensor/int_layout.h"
#include "test_paths.h"

namespace mixq {
namespace {

// The search rounds x / scale with a float reciprocal, so a value within an ulp-sized sliver of a rounding
// tie may go to the farther code: the bound |x - deq| <= |scale| / 2 gets this relative slack.
constexpr double kTieSlack = 1e-4;

const DType kAllIntTypes[] = {DType::kInt2,    DType::kInt3,    DType::kInt4,    DType::kInt5,    DType::kInt6,
                              DType::kInt7,    DType::kInt8,    DType::kInt2Sym, DType::kInt3Sym, DType::kInt4Sym,
                              DType::kInt5Sym, DType::kInt6Sym, DType::kInt7Sym, DType::kInt8Sym};

struct Grouping {
  int64_t group;
  bool per_tensor;
  std::string Name() const { return per_tensor ? "pt" : group == 0 ? "pc" : fmt::format("g{}", group); }
};
const Grouping kGroupings[] = {{32, false}, {64, false}, {128, false}, {0, false}, {0, true}};

// A quantized matrix and what it dequantizes to.
struct Quantized {
  DType dtype;
  int64_t rows, cols, group;
  std::vector<std::byte> bytes;
  std::vector<float> deq;
  size_t row_bytes;

  const uint8_t* Row(int64_t r) const { return reinterpret_cast<const uint8_t*>(bytes.data()) + r * row_bytes; }
  IntGroupParams Params(int64_t r, int64_t k) const {
    const IntRowLayout layout(dtype, cols, group);
    uint16_t bits;
    std::memcpy(&bits, Row(r) + 2 * k, sizeof(bits));
    const int zero = layout.symmetric ? layout.SymmetricZero()
                                      : static_cast<int>(ReadPackedCode(Row(r) + layout.zeros_offset, k, layout.bits));
    return {F16ToF32(bits), zero};
  }
};

Quantized Quantize(DType dtype, const std::vector<float>& x, int64_t rows, int64_t cols, Grouping g,
                   const float* importance = nullptr) {
  Quantized q{dtype, rows, cols, g.group, {}, {}, *RowBytes(dtype, cols, g.group)};
  // Canary bytes past the end catch a quantizer that writes beyond its rows.
  q.bytes.assign(q.row_bytes * rows + 64, std::byte{0xa5});
  QuantizeIntMatrix(dtype, x.data(), rows, cols, g.group, g.per_tensor, q.bytes.data(), importance);
  for (size_t i = q.row_bytes * rows; i < q.bytes.size(); ++i) EXPECT_EQ(q.bytes[i], std::byte{0xa5}) << "overrun";
  q.deq.resize(x.size());
  for (int64_t r = 0; r < rows; ++r) DequantizeIntRow(dtype, q.Row(r), q.deq.data() + r * cols, cols, g.group);
  return q;
}

// Checks every weight against its group's clipping range: inside it, |x - deq| <= |scale| / 2; outside,
// deq is the range's nearer end. Returns the RMS error.
double CheckBoundsAndRms(const Quantized& q, const std::vector<float>& x) {
  const IntRowLayout layout(q.dtype, q.cols, q.group);
  const int qmax = (1 << layout.bits) - 1;
  double sq = 0.0;
  int failures = 0;
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t k = 0; k < layout.n_groups; ++k) {
      const IntGroupParams p = q.Params(r, k);
      EXPECT_TRUE(std::isfinite(p.scale));
      const double a = static_cast<double>(p.scale) * (0 - p.zero);
      const double b = static_cast<double>(p.scale) * (qmax - p.zero);
      const double lo = std::min(a, b), hi = std::max(a, b);
      const double half = std::fabs(p.scale) * (0.5 + kTieSlack);
      for (int64_t i = layout.GroupStart(k); i < layout.GroupStart(k) + layout.GroupLength(k); ++i) {
        const double xv = x[r * q.cols + i], dv = q.deq[r * q.cols + i];
        sq += (xv - dv) * (xv - dv);
        const double target = std::clamp(xv, lo, hi);
        const double allowed = xv == target ? half : std::fabs(p.scale) * kTieSlack + 1e-30;
        if (std::fabs(target - dv) > allowed && ++failures <= 5) {
          ADD_FAILURE() << DTypeName(q.dtype) << " row " << r << " col " << i << ": x=" << xv << " deq=" << dv
                        << " scale=" << p.scale << " zero=" << p.zero << " range [" << lo << ", " << hi << "]";
        }
      }
    }
  }
  return std::sqrt(sq / static_cast<double>(x.size()));
}

std::vector<float> Normal(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Heavy-tailed like real weights: Student-t with 3 degrees of freedom.
std::vector<float> StudentT(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> dist(3.0f);
  std::vector<float> v(n);
  for (float& f : v) f = 0.02f * dist(rng);
  return v;
}

TEST(IntQuant, RandomRoundTripWithinBoundAndRmsFallsWithBits) {
  const int64_t rows = 6, cols = 256;
  const std::vector<float> x = Normal(rows * cols, 7);
  for (const bool sym : {false, true}) {
    for (const Grouping& g : kGroupings) {
      double previous_rms = INFINITY;
      for (int bits = 2; bits <= 8; ++bits) {
        const DType dtype = *IntDType(bits, sym);
        SCOPED_TRACE(fmt::format("{} {}", DTypeName(dtype), g.Name()));
        const double rms = CheckBoundsAndRms(Quantize(dtype, x, rows, cols, g), x);
        EXPECT_LT(rms, previous_rms);
        // Each extra bit should roughly halve the error (step halves); 0.7 leaves room for clipping changes.
        if (bits > 2) {
          EXPECT_LT(rms, 0.7 * previous_rms);
        }
        previous_rms = rms;
      }
      EXPECT_LT(previous_rms, 0.02) << "8-bit RMS error on N(0,1) data";
    }
  }
}

TEST(IntQuant, RealWeightsStories260K) {
  LoadOptions options;
  options.require_tokenizer = false;
  const Model model = LoadModel(testing::Stories260KPath(), options);
  const TensorView& w = model.weights.layers[0].w_down;  // [64, 172]: rows of 172 = groups of 128 and 44
  ASSERT_EQ(w.dtype, DType::kF32);
  ASSERT_EQ(w.cols(), 172);
  const std::vector<float> x(w.as<float>(), w.as<float>() + w.elements());
  double mean_sq = 0.0;
  for (float v : x) mean_sq += static_cast<double>(v) * v;
  const double rms_weight = std::sqrt(mean_sq / static_cast<double>(x.size()));
  for (const bool sym : {false, true}) {
    for (const Grouping& g : kGroupings) {
      double previous_rms = INFINITY;
      for (int bits = 2; bits <= 8; ++bits) {
        const DType dtype = *IntDType(bits, sym);
        SCOPED_TRACE(fmt::format("{} {}", DTypeName(dtype), g.Name()));
        const double rms = CheckBoundsAndRms(Quantize(dtype, x, w.rows(), w.cols(), g), x);
        EXPECT_LT(rms, previous_rms);
        previous_rms = rms;
        // Relative RMS error: per-tensor scales are set by the largest weight of all rows, so they get more.
        if (bits == 8) {
          EXPECT_LT(rms / rms_weight, g.per_tensor ? 0.02 : 0.01);
        }
        if (bits == 4 && !g.per_tensor) {
          EXPECT_LT(rms / rms_weight, 0.15);
        }
      }
    }
  }
}

// Plain max scaling, the baseline without a search: symmetric s = max|x| / (2^(b-1) - 1); asymmetric
// s = (max - min) / (2^b - 1) over the range widened to hold 0, z = round(-min / s).
double PlainMaxScalingError(const float* x, int64_t n, int bits, bool sym) {
  const int qmax = (1 << bits) - 1;
  float lo = 0.0f, hi = 0.0f, amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    amax = std::max(amax, std::fabs(x[i]));
  }
  IntGroupParams p;
  if (sym) {
    p = {F16ToF32(F32ToF16(amax / static_cast<float>((1 << (bits - 1)) - 1))), 1 << (bits - 1)};
  } else {
    const float s = F16ToF32(F32ToF16((hi - lo) / static_cast<float>(qmax)));
    p = {s, static_cast<int>(std::clamp(std::nearbyint(-lo / s), 0.0f, static_cast<float>(qmax)))};
  }
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - p.scale * static_cast<float>(IntCode(x[i], p, bits) - p.zero);
    err += d * d;
  }
  return err;
}

TEST(IntQuant, ScaleSearchBeatsPlainMaxScalingOnHeavyTails) {
  const int64_t group = 128, n_groups = 200;
  const std::vector<float> x = StudentT(group * n_groups, 11);
  for (const bool sym : {false, true}) {
    for (int bits = 2; bits <= 8; ++bits) {
      const DType dtype = *IntDType(bits, sym);
      const Quantized q = Quantize(dtype, x, n_groups, group, {0, false});
      double searched = 0.0, plain = 0.0;
      for (size_t i = 0; i < x.size(); ++i) searched += (x[i] - q.deq[i]) * static_cast<double>(x[i] - q.deq[i]);
      for (int64_t k = 0; k < n_groups; ++k) plain += PlainMaxScalingError(x.data() + k * group, group, bits, sym);
      SCOPED_TRACE(fmt::format("{}: searched/plain squared error {:.3f}", DTypeName(dtype), searched / plain));
      // Always better; at 2 and 3 bits, where clipping the tails pays most, by a clear margin (measured:
      // 0.66 / 0.76 asymmetric, 0.41 / 0.49 symmetric; a 20x20 grid of independent clips gains < 1% more).
      EXPECT_LT(searched, plain);
      if (bits <= 3) {
        EXPECT_LT(searched, 0.85 * plain);
      }
    }
  }
}

double WeightedError(const std::vector<float>& x, const std::vector<float>& deq, const std::vector<float>& imp,
                     int64_t cols) {
  double err = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = x[i] - deq[i];
    err += imp[i % static_cast<size_t>(cols)] * d * d;
  }
  return err;
}

TEST(IntQuant, ImportanceLowersWeightedError) {
  const int64_t rows = 32, cols = 256;
  const std::vector<float> x = StudentT(rows * cols, 5);
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> log_imp(-3.0f, 3.0f);
  std::vector<float> imp(cols);
  for (float& v : imp) v = std::pow(10.0f, log_imp(rng));  // activations span six decades, as in real models
  for (const DType dtype : {DType::kInt3, DType::kInt4, DType::kInt3Sym, DType::kInt4Sym}) {
    for (const Grouping g : {Grouping{128, false}, Grouping{0, false}, Grouping{0, true}}) {
      SCOPED_TRACE(fmt::format("{} {}", DTypeName(dtype), g.Name()));
      const Quantized plain = Quantize(dtype, x, rows, cols, g);
      const Quantized weighted = Quantize(dtype, x, rows, cols, g, imp.data());
      CheckBoundsAndRms(weighted, x);
      const double e_plain = WeightedError(x, plain.deq, imp, cols);
      const double e_weighted = WeightedError(x, weighted.deq, imp, cols);
      EXPECT_LT(e_weighted, e_plain);
      EXPECT_NE(plain.bytes, weighted.bytes);
    }
  }
  // All-zero importance leaves nothing to weigh by: the plain search decides.
  const std::vector<float> zeros(cols, 0.0f);
  const Quantized a = Quantize(DType::kInt4, x, rows, cols, {64, false});
  const Quantized b = Quantize(DType::kInt4, x, rows, cols, {64, false}, zeros.data());
  EXPECT_EQ(a.bytes, b.bytes);
}

TEST(IntQuant, OddRowsAndGroups) {
  const int64_t shapes[][2] = {{172, 128}, {172, 44}, {172, 7}, {44, 0}, {44, 32}, {1, 0}, {1, 32},
                               {33, 0},    {33, 32},  {33, 7},  {97, 64}, {5, 1}};
  for (const auto& [cols, group] : shapes) {
    const int64_t rows = 3;
    const std::vector<float> x = Normal(rows * cols, static_cast<uint32_t>(cols * 1000 + group));
    for (const DType dtype : kAllIntTypes) {
      SCOPED_TRACE(fmt::format("{} cols {} group {}", DTypeName(dtype), cols, group));
      const Quantized q = Quantize(dtype, x, rows, cols, {group, false});
      EXPECT_EQ(q.row_bytes, IntRowLayout(dtype, cols, group).row_bytes);
      CheckBoundsAndRms(q, x);
    }
  }
}

TEST(IntQuant, PerTensorStoresOneScaleEverywhere) {
  const int64_t rows = 9, cols = 172;
  std::vector<float> x = Normal(rows * cols, 3);
  for (int64_t c = 0; c < cols; ++c) x[4 * cols + c] *= 10.0f;  // one row far larger: its scale must not win
  for (const DType dtype : kAllIntTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    const Quantized q = Quantize(dtype, x, rows, cols, {0, true});
    const IntRowLayout layout(dtype, cols, 0);
    const IntGroupParams first = q.Params(0, 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < layout.n_groups; ++k) {
        EXPECT_EQ(q.Params(r, k).scale, first.scale);
        EXPECT_EQ(q.Params(r, k).zero, first.zero);
      }
    }
    CheckBoundsAndRms(q, x);
  }
}

TEST(IntQuant, DegenerateGroups) {
  const int64_t cols = 64;
  for (const DType dtype : kAllIntTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    // Rows: zeros, a positive constant, a negative constant, tiny values, values past FP16's range.
    std::vector<float> x(5 * cols, 0.0f);
    std::fill(x.begin() + cols, x.begin() + 2 * cols, 0.37f);
    std::fill(x.begin() + 2 * cols, x.begin() + 3 * cols, -1234.5f);
    for (int64_t i = 0; i < cols; ++i) x[3 * cols + i] = (i % 3 - 1) * 1e-9f;
    for (int64_t i = 0; i < cols; ++i) x[4 * cols + i] = (i % 2 ? 1.0f : -1.0f) * 1e12f;
    const Quantized q = Quantize(dtype, x, 5, cols, {32, false});
    for (float v : q.deq) EXPECT_TRUE(std::isfinite(v));
    for (int64_t i = 0; i < cols; ++i) {
      EXPECT_EQ(q.deq[i], 0.0f);
      // A constant is one code times an FP16 scale: exact up to FP16's relative precision.
      EXPECT_NEAR(q.deq[cols + i], 0.37f, 0.37f * 1e-3f);
      EXPECT_NEAR(q.deq[2 * cols + i], -1234.5f, 1234.5f * 1e-3f);
      EXPECT_LE(std::fabs(q.deq[3 * cols + i] - x[3 * cols + i]), 1e-9f);
    }
  }
}

TEST(IntQuant, BadInputThrows) {
  std::vector<float> x(64, 1.0f);
  std::vector<std::byte> dst(1024);
  EXPECT_THROW(QuantizeIntMatrix(DType::kQ4_0, x.data(), 1, 64, 32, false, dst.data()), Error);
  EXPECT_THROW(QuantizeIntMatrix(DType::kInt4, x.data(), 1, 64, 32, true, dst.data()), Error);
  EXPECT_THROW(QuantizeIntMatrix(DType::kInt4, x.data(), -1, 64, 32, false, dst.data()), Error);
  x[17] = NAN;
  try {
    QuantizeIntMatrix(DType::kInt4, x.data(), 1, 64, 32, false, dst.data());
    ADD_FAILURE() << "NaN weight accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[0, 17]"), std::string::npos) << e.what();
  }
  x[17] = 1.0f;
  std::vector<float> imp(64, 1.0f);
  imp[3] = -1.0f;
  EXPECT_THROW(QuantizeIntMatrix(DType::kInt4, x.data(), 1, 64, 32, false, dst.data(), imp.data()), Error);
}

}  // namespace
}  // namespace mixq
