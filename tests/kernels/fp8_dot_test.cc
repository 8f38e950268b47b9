// FP8 kernel: the table entry and activation copy, the AVX2 decode exact for each of the 256 codes, AVX2 ==
// scalar on fresh random rows of odd lengths, the scalar dot against the dequantized definition, dot_rows ==
// dot bit for bit, and MatMul over FP8 weights against the dequantized product.
#include "mixq/kernels/fp8_dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "mixq/formats/fp8.h"
#include "mixq/kernels/matmul.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

// AVX2 sums in float (four 8-lane accumulators, then a pairwise reduction), the scalar reference in
// double: they agree to this fraction of sum |w_i a_i| (n <= 4097 terms: float rounding grows ~ n/32 * 2^-24).
constexpr double kSimdRelTolerance = 1e-5;
// The scalar dot is scale * sum(decode * a) in double; the definition sums float(scale * decode) * a: one
// float rounding per term apart.
constexpr double kRefRelTolerance = 1e-6;

const int64_t kLengths[] = {1, 7, 8, 31, 32, 33, 63, 64, 100, 172, 257, 1001, 4096, 4097};

uint32_t FreshSeed() { return std::random_device{}(); }

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// A row of random codes (every finite code, both signs, subnormals and +-448 included; no NaN codes) and a
// scale of either sign: what any writer could have stored.
std::vector<uint8_t> RandomRow(std::mt19937& rng, int64_t n) {
  std::vector<uint8_t> row(Fp8RowBytes(n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = sizeof(float); i < row.size(); ++i) {
    int c;
    do c = byte(rng); while ((c & 0x7F) == 0x7F);
    row[i] = static_cast<uint8_t>(c);
  }
  std::uniform_real_distribution<float> scale(1e-4f, 1e-2f);
  const float s = byte(rng) % 2 ? scale(rng) : -scale(rng);
  std::memcpy(row.data(), &s, sizeof(s));
  return row;
}

std::vector<float> Dequantized(const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  DequantizeFp8Row(row.data(), w.data(), n);
  return w;
}

TEST(Fp8Dot, KernelAndActivationLayout) {
  const QuantKernel* k = FindQuantKernel(DType::kFp8E4M3);
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k, Fp8QuantKernel(DType::kFp8E4M3));
  EXPECT_EQ(k->weight_type, DType::kFp8E4M3);
  EXPECT_EQ(Fp8QuantKernel(DType::kInt8), nullptr);
  EXPECT_EQ(Fp8QuantKernel(DType::kF32), nullptr);
  EXPECT_TRUE(HasMatMulKernel(DType::kFp8E4M3));
  EXPECT_NE(QuantKernelTypeNames().find("FP8_E4M3"), std::string::npos);
  EXPECT_EQ(k->activation_bytes(172, 0), 172u * 4u);
  const std::vector<float> x = {1.5f, -2.0f, 3e-9f, std::numeric_limits<float>::infinity()};
  std::vector<float> a(4);
  k->quantize_activation(x.data(), a.data(), 4, 0);
  EXPECT_EQ(std::memcmp(a.data(), x.data(), sizeof(float) * 4), 0);
  EXPECT_STREQ(k->isa(), Fp8DotHasAvx2() ? "AVX2" : "scalar");
}

// Every code alone in a row (scale 1, activation 1) comes back as its exact value: the FP16 decode trick
// holds for all 256 codes, at every position of a 32-code step and in the padded tail.
TEST(Fp8Dot, EveryCodeDecodesExactly) {
  const QuantKernel& k = *Fp8QuantKernel(DType::kFp8E4M3);
  for (const int64_t n : {1, 32, 45}) {
    for (int64_t pos = 0; pos < n; pos += 7) {
      for (int c = 0; c < 256; ++c) {
        std::vector<uint8_t> row(Fp8RowBytes(n), 0);
        const float one = 1.0f;
        std::memcpy(row.data(), &one, sizeof(one));
        row[sizeof(float) + pos] = static_cast<uint8_t>(c);
        std::vector<float> a(static_cast<size_t>(n), 0.0f);
        a[pos] = 1.0f;
        const float expected = Fp8E4M3ToFloat(static_cast<uint8_t>(c));
        const float got = k.dot(row.data(), a.data(), n, 0);
        SCOPED_TRACE(fmt::format("code 0x{:02x} n {} position {}", c, n, pos));
        if (std::isnan(expected)) {
          EXPECT_TRUE(std::isnan(got));
          EXPECT_TRUE(std::isnan(k.dot_ref(row.data(), a.data(), n, 0)));
        } else {
          EXPECT_EQ(got, expected);
          EXPECT_EQ(k.dot_ref(row.data(), a.data(), n, 0), expected);
        }
      }
    }
  }
}

TEST(Fp8Dot, ScalarDotMatchesDefinition) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  const QuantKernel& k = *Fp8QuantKernel(DType::kFp8E4M3);
  for (const int64_t n : kLengths) {
    const std::vector<uint8_t> row = RandomRow(rng, n);
    const std::vector<float> x = RandomFloats(rng, n, 1.0f);
    const std::vector<float> w = Dequantized(row, n);
    double exact = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(w[i]) * x[i];
      magnitude += std::fabs(static_cast<double>(w[i]) * x[i]);
    }
    EXPECT_NEAR(k.dot_ref(row.data(), x.data(), n, 0), exact, kRefRelTolerance * magnitude + 1e-30) << "n " << n;
  }
}

TEST(Fp8Dot, SimdDotEqualsScalar) {
  if (!Fp8DotHasAvx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  const QuantKernel& k = *Fp8QuantKernel(DType::kFp8E4M3);
  for (const int64_t n : kLengths) {
    for (int rep = 0; rep < 4; ++rep) {
      // The row fills its vector exactly, so a read past its last byte is caught by ASan.
      const std::vector<uint8_t> row = RandomRow(rng, n);
      const std::vector<float> x = RandomFloats(rng, n, rep == 3 ? 100.0f : 1.0f);
      const std::vector<float> w = Dequantized(row, n);
      double magnitude = 0.0;
      for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(static_cast<double>(w[i]) * x[i]);
      EXPECT_NEAR(k.dot(row.data(), x.data(), n, 0), k.dot_ref(row.data(), x.data(), n, 0),
                  kSimdRelTolerance * magnitude + 1e-30)
          << "n " << n;
    }
  }
}

// Prefill's dot_rows decodes each row once and must give exactly what `dot` gives for every (row, token).
TEST(Fp8Dot, DotRowsEqualsDotBitForBit) {
  const QuantKernel& k = *Fp8QuantKernel(DType::kFp8E4M3);
  if (k.dot_rows == nullptr) GTEST_SKIP() << "no dot_rows on this CPU (scalar kernel)";
  std::mt19937 rng(FreshSeed());
  for (const int64_t n : {33, 172, 256}) {
    const int64_t n_rows = 5, n_tokens = 3;
    std::vector<uint8_t> w;
    for (int64_t r = 0; r < n_rows; ++r) {
      const std::vector<uint8_t> row = RandomRow(rng, n);
      w.insert(w.end(), row.begin(), row.end());
    }
    const std::vector<float> x = RandomFloats(rng, n_tokens * n, 1.0f);
    const int64_t out_stride = 11;
    std::vector<float> out(static_cast<size_t>(n_tokens * out_stride), -1.0f);
    k.dot_rows(w.data(), Fp8RowBytes(n), n_rows, x.data(), n * sizeof(float), n_tokens, n, 0, out.data(), out_stride);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < n_rows; ++r) {
        EXPECT_EQ(out[t * out_stride + r], k.dot(w.data() + r * Fp8RowBytes(n), x.data() + t * n, n, 0))
            << "n " << n << " row " << r << " token " << t;
      }
      EXPECT_EQ(out[t * out_stride + n_rows], -1.0f) << "wrote past the block";
    }
  }
}

// MatMul (decode and prefill) over quantized FP8 weights against the dequantized product in double.
TEST(Fp8Dot, MatMulMatchesDequantizedProduct) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  const int64_t shapes[][2] = {{37, 172}, {64, 256}, {16, 45}, {300, 512}};
  for (const auto& [rows, cols] : shapes) {
    for (const bool per_tensor : {false, true}) {
      const std::vector<float> wf = RandomFloats(rng, rows * cols, 0.05f);
      Tensor w = Tensor::Zeros("w", DType::kFp8E4M3, {rows, cols});
      QuantizeFp8Matrix(wf.data(), rows, cols, per_tensor, w.storage.data());
      std::vector<float> deq(static_cast<size_t>(rows * cols));
      for (int64_t r = 0; r < rows; ++r) DequantizeFp8Row(w.view().row(r), deq.data() + r * cols, cols);
      for (const int64_t n_tokens : {1, 7}) {
        SCOPED_TRACE(fmt::format("[{}, {}] {} tokens {}", rows, cols, per_tensor ? "pt" : "pc", n_tokens));
        const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
        std::vector<float> y(static_cast<size_t>(n_tokens * rows)), y_ref(y.size());
        MatMul(w.view(), x.data(), n_tokens, y.data());
        MatMulRef(w.view(), x.data(), n_tokens, y_ref.data());
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            double exact = 0.0, magnitude = 0.0;
            for (int64_t i = 0; i < cols; ++i) {
              exact += static_cast<double>(deq[r * cols + i]) * x[t * cols + i];
              magnitude += std::fabs(static_cast<double>(deq[r * cols + i]) * x[t * cols + i]);
            }
            ASSERT_NEAR(y[t * rows + r], exact, kSimdRelTolerance * magnitude) << "row " << r << " token " << t;
            ASSERT_NEAR(y_ref[t * rows + r], exact, kSimdRelTolerance * magnitude) << "row " << r << " token " << t;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace mixq
