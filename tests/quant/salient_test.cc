// Salient weights: each criterion's selection on hand-made matrices, impact against a direct inverse of
// the damped Hessian, the counts and the option parsing, the masked INT quantizer (exact zeros, a scale
// search blind to the salient values, unchanged bytes without a mask), and GPTQ with a salient mask.
#include "mixq/quant/salient.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "mixq/base/error.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/int_dequant.h"
#include "mixq/formats/int_quant.h"
#include "mixq/formats/weight_format.h"
#include "mixq/quant/gptq.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

using Positions = std::set<std::pair<int64_t, int64_t>>;

Positions PositionsOf(const SalientSelection& s) {
  Positions p;
  for (int64_t r = 0; r < s.rows; ++r) {
    for (uint32_t i = s.row_ptr[r]; i < s.row_ptr[r + 1]; ++i) p.insert({r, s.col[i]});
  }
  return p;
}

SalientOptions Options(const char* criterion, double fraction, SalientScope scope) {
  SalientOptions o;
  o.criterion = FindSalientCriterion(criterion);
  EXPECT_NE(o.criterion, nullptr) << criterion;
  o.fraction = fraction;
  o.scope = scope;
  return o;
}

WeightFormat Format(const std::string& name) {
  const auto f = ParseWeightFormat(name);
  EXPECT_TRUE(f.has_value()) << name;
  return *f;
}

std::vector<float> Dequantize(const WeightFormat& f, const std::vector<std::byte>& data, int64_t rows, int64_t cols) {
  const size_t row_bytes = *RowBytes(f.dtype, cols, f.group);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeIntRow(f.dtype, data.data() + r * row_bytes, out.data() + r * cols, cols, f.group);
  }
  return out;
}

std::vector<std::byte> QuantizeInt(const WeightFormat& f, const std::vector<float>& w, int64_t rows, int64_t cols,
                                   const uint8_t* exclude, const float* importance = nullptr) {
  std::vector<std::byte> bytes(rows * *RowBytes(f.dtype, cols, f.group));
  QuantizeIntMatrix(f.dtype, w.data(), rows, cols, f.group, f.per_tensor, bytes.data(), importance, exclude);
  return bytes;
}

// A 3 x 4 matrix whose magnitude ranking the activation norms reverse, and the Hessian's inverse diagonal
// reverses again.
const std::vector<float> kHand = {0.9f, -0.1f, 0.5f, 0.2f,   //
                                  -0.3f, 0.8f, 0.05f, -0.7f,  //
                                  0.1f, 0.2f, -0.6f, 0.4f};

TEST(Salient, MagnitudePicksTheLargestWeights) {
  SalientScoreInputs in{kHand.data(), 3, 4};
  // tensor, 25% of 12 = 3: 0.9, 0.8, -0.7.
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("magnitude", 0.25, SalientScope::kTensor), "t")),
            (Positions{{0, 0}, {1, 1}, {1, 3}}));
  // row, 25% of 4 = 1 per row: 0.9 / 0.8 / -0.6.
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("magnitude", 0.25, SalientScope::kRow), "t")),
            (Positions{{0, 0}, {1, 1}, {2, 2}}));
  // 2 per row.
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("magnitude", 0.5 - 1e-9, SalientScope::kRow), "t")),
            (Positions{{0, 0}, {0, 2}, {1, 1}, {1, 3}, {2, 2}, {2, 3}}));
}

TEST(Salient, ActivationWeighsByChannelNorm) {
  const std::vector<float> norm = {0.1f, 1.0f, 1.0f, 10.0f};
  SalientScoreInputs in{kHand.data(), 3, 4, norm.data()};
  // Scores: row0 .09 .1 .5 2; row1 .03 .8 .05 7; row2 .01 .2 .6 4.
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("activation", 0.25, SalientScope::kTensor), "t")),
            (Positions{{0, 3}, {1, 3}, {2, 3}}));
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("activation", 0.5 - 1e-9, SalientScope::kRow), "t")),
            (Positions{{0, 2}, {0, 3}, {1, 1}, {1, 3}, {2, 2}, {2, 3}}));
  SalientScoreInputs missing{kHand.data(), 3, 4};
  EXPECT_THROW(SelectSalient(missing, Options("activation", 0.25, SalientScope::kTensor), "t"), Error);
}

TEST(Salient, ImpactDividesByTheInverseHessianDiagonal) {
  // w^2 / d: row0 .81/.01 = 81 dominates; channel 3 has d = inf (dead): never chosen.
  const std::vector<double> d = {0.01, 1.0, 0.1, std::numeric_limits<double>::infinity()};
  SalientScoreInputs in{kHand.data(), 3, 4, nullptr, d.data()};
  // Scores: row0 81 .01 2.5 0; row1 9 .64 .025 0; row2 1 .04 3.6 0.
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("impact", 0.25, SalientScope::kTensor), "t")),
            (Positions{{0, 0}, {1, 0}, {2, 2}}));
  SalientScoreInputs missing{kHand.data(), 3, 4};
  EXPECT_THROW(SelectSalient(missing, Options("impact", 0.25, SalientScope::kTensor), "t"), Error);
}

TEST(Salient, TiesGoToTheLowerIndex) {
  const std::vector<float> w(12, 1.0f);
  SalientScoreInputs in{w.data(), 3, 4};
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("magnitude", 0.25, SalientScope::kTensor), "t")),
            (Positions{{0, 0}, {0, 1}, {0, 2}}));
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("magnitude", 0.25, SalientScope::kRow), "t")),
            (Positions{{0, 0}, {1, 0}, {2, 0}}));
}

// The impact criterion against a direct computation: H from random correlated inputs, damped as GPTQ
// damps it, inverted by Gauss-Jordan in double (O(n^3)), w^2 / [H^-1]_jj ranked by a full sort.
TEST(Salient, ImpactMatchesADirectInverse) {
  const int64_t rows = 16, cols = 24, tokens = 200;
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> x(tokens * cols), w(rows * cols);
  for (int64_t t = 0; t < tokens; ++t) {
    const double common = normal(rng);
    for (int64_t c = 0; c < cols; ++c) x[t * cols + c] = static_cast<float>((1.0 + c % 5) * normal(rng) + 0.7 * common);
  }
  for (float& v : w) v = static_cast<float>(normal(rng));
  HessianAccumulator acc(cols, "t");
  acc.Add(x.data(), tokens, cols);
  const std::vector<float> h = acc.Matrix();
  GptqOptions options;
  options.damp = 0.01;
  const std::vector<double> diag = HessianInverseDiagonal(acc.data(), cols, options, "t");

  // Direct: [H + lambda I]^-1 by Gauss-Jordan with partial pivoting.
  double mean = 0.0;
  for (int64_t j = 0; j < cols; ++j) mean += h[j * cols + j];
  mean /= cols;
  std::vector<double> a(cols * 2 * cols, 0.0);
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j < cols; ++j) a[i * 2 * cols + j] = h[i * cols + j] + (i == j ? 0.01 * mean : 0.0);
    a[i * 2 * cols + cols + i] = 1.0;
  }
  for (int64_t k = 0; k < cols; ++k) {
    int64_t piv = k;
    for (int64_t i = k + 1; i < cols; ++i) {
      if (std::fabs(a[i * 2 * cols + k]) > std::fabs(a[piv * 2 * cols + k])) piv = i;
    }
    for (int64_t j = 0; j < 2 * cols; ++j) std::swap(a[k * 2 * cols + j], a[piv * 2 * cols + j]);
    const double p = a[k * 2 * cols + k];
    for (int64_t j = 0; j < 2 * cols; ++j) a[k * 2 * cols + j] /= p;
    for (int64_t i = 0; i < cols; ++i) {
      if (i == k) continue;
      const double f = a[i * 2 * cols + k];
      for (int64_t j = 0; j < 2 * cols; ++j) a[i * 2 * cols + j] -= f * a[k * 2 * cols + j];
    }
  }
  std::vector<double> direct(cols);
  for (int64_t j = 0; j < cols; ++j) {
    direct[j] = a[j * 2 * cols + cols + j];
    EXPECT_NEAR(diag[j], direct[j], 1e-4 * direct[j]) << j;  // U is kept in float
  }
  // The top 10% of w^2 / direct by a full sort, per tensor and per row.
  std::vector<int64_t> order(rows * cols);
  std::iota(order.begin(), order.end(), 0);
  auto score = [&](int64_t i) { return static_cast<double>(w[i]) * w[i] / direct[i % cols]; };
  std::sort(order.begin(), order.end(), [&](int64_t p, int64_t q) { return score(p) > score(q); });
  const int64_t count = SalientCount(0.1, rows, cols, SalientScope::kTensor);
  ASSERT_EQ(count, 38);
  Positions expected;
  for (int64_t i = 0; i < count; ++i) expected.insert({order[i] / cols, order[i] % cols});
  SalientScoreInputs in{w.data(), rows, cols, nullptr, diag.data()};
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("impact", 0.1, SalientScope::kTensor), "t")), expected);
  Positions expected_rows;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> ro(cols);
    std::iota(ro.begin(), ro.end(), r * cols);
    std::sort(ro.begin(), ro.end(), [&](int64_t p, int64_t q) { return score(p) > score(q); });
    for (int64_t i = 0; i < 2; ++i) expected_rows.insert({r, ro[i] % cols});  // round(0.1 * 24) = 2
  }
  EXPECT_EQ(PositionsOf(SelectSalient(in, Options("impact", 0.1, SalientScope::kRow), "t")), expected_rows);
  // And the ranking is not magnitude's: the Hessian matters on this input.
  SalientScoreInputs mag{w.data(), rows, cols};
  EXPECT_NE(PositionsOf(SelectSalient(mag, Options("magnitude", 0.1, SalientScope::kTensor), "t")), expected);
}

TEST(Salient, DeadInputsHaveInfiniteInverseDiagonal) {
  const int64_t cols = 4;
  std::vector<float> h = {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1};  // input 1 never active
  const std::vector<double> d = HessianInverseDiagonal(h.data(), cols, GptqOptions{}, "t");
  EXPECT_TRUE(std::isinf(d[1]));
  EXPECT_TRUE(std::isfinite(d[0]) && d[0] > 0.0);
}

TEST(Salient, CountsAndParsing) {
  EXPECT_DOUBLE_EQ(ParseSalientFraction("0.5%"), 0.005);
  EXPECT_DOUBLE_EQ(ParseSalientFraction("0.005"), 0.005);
  EXPECT_DOUBLE_EQ(ParseSalientFraction("1%"), 0.01);
  EXPECT_DOUBLE_EQ(ParseSalientFraction("0"), 0.0);
  for (const char* bad : {"", "%", "abc", "1%%", "-0.1%", "50%", "0.5", "0.7", "nan", "inf", "1e400"}) {
    try {
      ParseSalientFraction(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--salient"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(SalientCount(0.005, 4096, 4096, SalientScope::kTensor), 83886);
  EXPECT_EQ(SalientCount(0.005, 4096, 4096, SalientScope::kRow), 4096 * 20);
  EXPECT_EQ(SalientCount(0.005, 64, 64, SalientScope::kTensor), 20);  // 20.48
  EXPECT_EQ(SalientCount(0.005, 64, 64, SalientScope::kRow), 0);      // 0.32 per row rounds to 0
  EXPECT_EQ(SalientCount(0.01, 64, 64, SalientScope::kRow), 64);      // 0.64 -> 1
  EXPECT_EQ(SalientCount(0.0, 64, 64, SalientScope::kTensor), 0);
  EXPECT_EQ(ParseSalientScope("row"), SalientScope::kRow);
  EXPECT_EQ(ParseSalientScope("tensor"), SalientScope::kTensor);
  EXPECT_FALSE(ParseSalientScope("column").has_value());
  EXPECT_EQ(FindSalientCriterion("fisher"), nullptr);
  EXPECT_EQ(SalientCriterionNames(), "magnitude, activation, impact");
}

TEST(Salient, TooManyColumnsForUint16) {
  const int64_t cols = 70000;
  std::vector<float> scores(cols, 1.0f);
  EXPECT_THROW(SelectTopScores(scores.data(), 1, cols, 0.01, SalientScope::kTensor, "wide"), Error);
}

std::vector<float> RandomWeights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(3.0f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = 0.02f * heavy(rng);
  return w;
}

// At every salient position the dense part reads exactly 0 and dense + FP16(w) is exactly FP16(w), for
// asymmetric and symmetric, grouped, per-channel and per-tensor formats of 2..8 bits.
TEST(SalientQuantize, DenseIsExactlyZeroAtSalientPositions) {
  const int64_t rows = 16, cols = 200;
  const std::vector<float> w = RandomWeights(rows, cols, 1);
  SalientScoreInputs in{w.data(), rows, cols};
  const SalientSelection s = SelectSalient(in, Options("magnitude", 0.02, SalientScope::kTensor), "t");
  const std::vector<uint8_t> mask = s.Mask();
  ASSERT_EQ(s.nnz(), 64);
  for (const char* name : {"int4-g128", "int3-g64", "int2-g32", "int8-g32", "int4-g64-sym", "int3-pc", "int4-pt",
                           "int3-pt-sym", "int5-g48"}) {
    SCOPED_TRACE(name);
    const WeightFormat f = Format(name);
    const std::vector<float> dense = Dequantize(f, QuantizeInt(f, w, rows, cols, mask.data()), rows, cols);
    for (int64_t i = 0; i < rows * cols; ++i) {
      if (!mask[i]) continue;
      EXPECT_EQ(dense[i], 0.0f) << i;  // +-0 exactly (a symmetric scale may be negative)
      const float sparse = F16ToF32(F32ToF16(w[i]));
      EXPECT_EQ(dense[i] + sparse, sparse);
    }
  }
}

// A group of 32 with one huge outlier: with the outlier salient, the other 31 weights' error is what the
// 31 of them get quantized alone, far below what they get when the outlier sets the scale.
TEST(SalientQuantize, ScaleSearchIgnoresSalientValues) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::vector<float> w(32);
  for (float& v : w) v = normal(rng);
  w[7] = 0.5f;
  std::vector<uint8_t> mask(32, 0);
  mask[7] = 1;
  std::vector<float> rest;
  for (int i = 0; i < 32; ++i) {
    if (i != 7) rest.push_back(w[i]);
  }
  for (const char* name : {"int4-g32", "int3-g32", "int4-g32-sym", "int2-g32"}) {
    SCOPED_TRACE(name);
    const WeightFormat f = Format(name);
    const std::vector<float> with_mask = Dequantize(f, QuantizeInt(f, w, 1, 32, mask.data()), 1, 32);
    const std::vector<float> without = Dequantize(f, QuantizeInt(f, w, 1, 32, nullptr), 1, 32);
    const std::vector<float> alone = Dequantize(f, QuantizeInt(f, rest, 1, 31, nullptr), 1, 31);
    double e_mask = 0, e_without = 0, e_alone = 0;
    for (int i = 0, k = 0; i < 32; ++i) {
      if (i == 7) continue;
      e_mask += std::pow(w[i] - with_mask[i], 2.0);
      e_without += std::pow(w[i] - without[i], 2.0);
      e_alone += std::pow(rest[k] - alone[k], 2.0);
      ++k;
    }
    std::printf("%-13s rest's squared error: outlier salient %.3g, alone %.3g, outlier in the search %.3g\n", name,
                e_mask, e_alone, e_without);
    EXPECT_LE(e_mask, 1.02 * e_alone);
    EXPECT_LT(e_mask, 0.2 * e_without);
    // And the search's own view: the masked search equals the search over the 31 values with weight 1.
    const IntGroupParams masked = SearchIntGroupParams(w.data(), 32, nullptr, Traits(f.dtype).bits,
                                                       Traits(f.dtype).symmetric, mask.data());
    EXPECT_LT(std::fabs(masked.scale), 0.5f / ((1 << Traits(f.dtype).bits) - 1)) << "the outlier set the scale";
  }
}

// Without a mask, and with a mask that excludes nothing, the bytes are exactly the unmasked quantizer's;
// a mask in one group changes no other group's bytes.
TEST(SalientQuantize, NoMaskBytesUnchanged) {
  const int64_t rows = 8, cols = 256;
  const std::vector<float> w = RandomWeights(rows, cols, 2);
  std::vector<float> importance(cols);
  for (int64_t c = 0; c < cols; ++c) importance[c] = 0.1f + static_cast<float>(c % 7);
  const std::vector<uint8_t> none(rows * cols, 0);
  for (const char* name : {"int4-g128", "int3-g64-sym", "int4-pt", "int2-pc"}) {
    for (const float* imp : {static_cast<const float*>(nullptr), static_cast<const float*>(importance.data())}) {
      SCOPED_TRACE(fmt::format("{} importance {}", name, imp != nullptr));
      const WeightFormat f = Format(name);
      EXPECT_EQ(QuantizeInt(f, w, rows, cols, nullptr, imp), QuantizeInt(f, w, rows, cols, none.data(), imp));
    }
  }
  const WeightFormat f = Format("int4-g64");
  std::vector<uint8_t> one(rows * cols, 0);
  one[3 * cols + 70] = 1;  // row 3, group 1
  const std::vector<std::byte> a = QuantizeInt(f, w, rows, cols, nullptr), b = QuantizeInt(f, w, rows, cols, one.data());
  const IntRowLayout layout(f.dtype, cols, f.group);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < layout.n_groups; ++k) {
      const bool same_scale = std::memcmp(&a[r * layout.row_bytes + 2 * k], &b[r * layout.row_bytes + 2 * k], 2) == 0;
      const bool same_codes = std::memcmp(&a[r * layout.row_bytes + layout.GroupCodesOffset(k)],
                                          &b[r * layout.row_bytes + layout.GroupCodesOffset(k)],
                                          layout.group_code_bytes) == 0;
      if (r == 3 && k == 1) {
        EXPECT_FALSE(same_codes);
      } else {
        EXPECT_TRUE(same_scale && same_codes) << r << " " << k;
      }
    }
  }
}

// Inputs whose Hessian couples the columns, so GPTQ's feedback matters.
struct Problem {
  int64_t rows, cols, tokens;
  std::vector<float> w, x;
};

Problem MakeProblem(int64_t rows, int64_t cols, int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Problem p{rows, cols, tokens, RandomWeights(rows, cols, seed + 1), std::vector<float>(tokens * cols)};
  for (int64_t t = 0; t < tokens; ++t) {
    const double common = normal(rng);
    for (int64_t c = 0; c < cols; ++c) {
      p.x[t * cols + c] = static_cast<float>((0.5 + c % 9) * normal(rng) + common * (c % 3));
    }
  }
  return p;
}

double OutputError(const Problem& p, const std::vector<float>& q) {
  double err = 0.0;
  for (int64_t t = 0; t < p.tokens; ++t) {
    for (int64_t r = 0; r < p.rows; ++r) {
      double d = 0.0;
      for (int64_t c = 0; c < p.cols; ++c) d += (static_cast<double>(p.w[r * p.cols + c]) - q[r * p.cols + c]) * p.x[t * p.cols + c];
      err += d * d;
    }
  }
  return err;
}

// GPTQ with a salient mask: codes at the zero-point there, the dequantized result is dense + the returned
// FP16 values, the output error falls below GPTQ without salient weights; with a diagonal Hessian (no
// feedback) it is exactly RTN with the same mask and the salient values the FP16 originals.
TEST(SalientGptq, KeepsSalientWeightsAndLowersTheError) {
  const Problem p = MakeProblem(32, 192, 400, 4);
  HessianAccumulator h(p.cols, "t");
  h.Add(p.x.data(), p.tokens, p.cols);
  const std::vector<double> hinv = HessianInverseDiagonal(h.data(), p.cols, GptqOptions{}, "t");
  SalientScoreInputs in{p.w.data(), p.rows, p.cols, nullptr, hinv.data()};
  const SalientSelection s = SelectSalient(in, Options("impact", 0.01, SalientScope::kTensor), "t");
  const std::vector<uint8_t> mask = s.Mask();
  for (const char* name : {"int3-g64", "int4-g64-sym", "int3-pt"}) {
    for (const bool act_order : {false, true}) {
      SCOPED_TRACE(fmt::format("{} act_order {}", name, act_order));
      const WeightFormat f = Format(name);
      GptqOptions options;
      options.keep_dequantized = true;
      options.act_order = act_order;
      const GptqResult plain = GptqQuantizeMatrix(p.w.data(), p.rows, p.cols, h, f, options, "t");
      const GptqResult sal = GptqQuantizeMatrix(p.w.data(), p.rows, p.cols, h, f, options, "t", mask.data());
      ASSERT_EQ(static_cast<int64_t>(sal.salient_values.size()), s.nnz());
      EXPECT_TRUE(plain.salient_values.empty());
      const std::vector<float> dense = Dequantize(f, sal.data, p.rows, p.cols);
      int64_t k = 0;
      for (int64_t i = 0; i < p.rows * p.cols; ++i) {
        if (mask[i]) {
          EXPECT_EQ(dense[i], 0.0f);
          const float v = sal.salient_values[k++];
          EXPECT_EQ(F16ToF32(F32ToF16(v)), v);  // FP16-exact
          EXPECT_EQ(sal.dequantized[i], v);
        } else {
          EXPECT_EQ(sal.dequantized[i], dense[i]);
        }
      }
      const double e_plain = OutputError(p, plain.dequantized), e_sal = OutputError(p, sal.dequantized);
      std::printf("%-13s act_order %d: output error GPTQ %.4g, GPTQ + 1%% impact-salient %.4g (%.3f)\n", name,
                  act_order, e_plain, e_sal, e_sal / e_plain);
      EXPECT_LT(e_sal, 0.95 * e_plain);
    }
  }
  // No feedback under a diagonal Hessian: GPTQ + mask is RTN + mask, weighted by the diagonal.
  std::vector<float> diagonal(p.cols * p.cols, 0.0f), diag(p.cols);
  for (int64_t c = 0; c < p.cols; ++c) diagonal[c * p.cols + c] = diag[c] = 1.0f + static_cast<float>(c % 4);
  for (const char* name : {"int4-g64", "int3-pc", "int4-pt-sym"}) {
    SCOPED_TRACE(name);
    const WeightFormat f = Format(name);
    GptqOptions options;
    options.damp = 0.0;
    const GptqResult g = GptqQuantizeMatrix(p.w.data(), p.rows, p.cols, diagonal.data(), f, options, "t", mask.data());
    EXPECT_EQ(g.data, QuantizeInt(f, p.w, p.rows, p.cols, mask.data(), diag.data()));
    int64_t k = 0;
    for (int64_t i = 0; i < p.rows * p.cols; ++i) {
      if (mask[i]) {
        EXPECT_EQ(g.salient_values[k++], F16ToF32(F32ToF16(p.w[i])));
      }
    }
  }
}

}  // namespace
}  // namespace mixq
