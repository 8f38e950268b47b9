// W8A8 kernels: the activation layout, every SIMD level == the scalar reference exactly (integers, and the
// float result bit for bit) on odd lengths, no int32 overflow on long rows, the dot against dequantize-then-
// multiply within the activation rounding bound, and MatMul's dispatch of W8A8 tensors.
#include "mixq/kernels/w8a8_dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mixq/base/aligned_buffer.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/matmul.h"

namespace mixq {
namespace {

// Lengths: single values, odd tails, stories260K's 172, 7B's 4096 and 11008, one past a 2^16 segment.
const int64_t kLengths[] = {1, 7, 31, 32, 33, 63, 172, 4096, 4097, 11008, 65537};

uint32_t FreshSeed() { return std::random_device{}(); }

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// A stored kInt8Sym group-0 row: FP16 scale, then n random codes.
std::vector<uint8_t> RandomRow(std::mt19937& rng, int64_t n) {
  std::vector<uint8_t> row(static_cast<size_t>(n) + 2);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : row) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  const uint16_t bits = F32ToF16(byte(rng) % 2 ? scale(rng) : -scale(rng));
  std::memcpy(row.data(), &bits, 2);
  return row;
}

std::vector<uint8_t> Quantized(const std::vector<float>& x, float static_scale) {
  std::vector<uint8_t> act(W8A8ActivationBytes(static_cast<int64_t>(x.size())), 0xAB);
  QuantizeW8A8ActivationRef(x.data(), static_cast<int64_t>(x.size()), static_scale, act.data());
  return act;
}

const int8_t* Q(const std::vector<uint8_t>& act) { return reinterpret_cast<const int8_t*>(act.data() + 32); }

// Runs `body` once per SIMD level this CPU has (scalar first), restoring the best level after.
template <typename Body>
void ForEachIsa(Body body) {
  for (const char* isa : {"scalar", "AVX2", "AVX512-VNNI"}) {
    const std::string used = ForceW8A8Isa(isa);
    if (used != isa) continue;
    SCOPED_TRACE(used);
    body();
  }
  ForceW8A8Isa("");
}

TEST(W8A8Dot, ActivationLayoutDynamic) {
  const std::vector<float> x = {0.5f, -2.54f, 1.0f, 0.0f, 2.54f};
  const std::vector<uint8_t> act = Quantized(x, 0.0f);
  ASSERT_EQ(act.size(), 32u + 32u);
  const auto& header = *reinterpret_cast<const W8A8ActivationHeader*>(act.data());
  EXPECT_FLOAT_EQ(header.scale, 2.54f / 127.0f);
  const int8_t* q = Q(act);
  EXPECT_EQ(q[0], 25);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[2], 50);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(q[4], 127);
  EXPECT_EQ(header.sum, 25 - 127 + 50 + 0 + 127);
  for (size_t i = 5; i < 32; ++i) EXPECT_EQ(q[i], 0) << "padding at " << i;
  for (size_t i = 8; i < 32; ++i) EXPECT_EQ(act[i], 0) << "reserved header byte " << i;
}

TEST(W8A8Dot, ActivationStaticScaleClamps) {
  // Static scale 0.01: 1.0 -> 100, 5.0 would be 500 -> clamps to 127, -3.0 -> -127.
  const std::vector<uint8_t> act = Quantized({1.0f, 5.0f, -3.0f, 0.004f, 0.006f}, 0.01f);
  EXPECT_EQ(reinterpret_cast<const W8A8ActivationHeader*>(act.data())->scale, 0.01f);
  const int8_t* q = Q(act);
  EXPECT_EQ(q[0], 100);
  EXPECT_EQ(q[1], 127);
  EXPECT_EQ(q[2], -127);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(q[4], 1);
}

TEST(W8A8Dot, SimdActivationQuantizationEqualsReference) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  ForEachIsa([&] {
    for (int64_t n : kLengths) {
      std::vector<float> x = RandomFloats(rng, n, 3.0f);
      if (n > 5) {
        x[3] = std::numeric_limits<float>::quiet_NaN();
        x[4] = 1e-30f;
      }
      for (float static_scale : {0.0f, 0.02f}) {
        const std::vector<uint8_t> ref = Quantized(x, static_scale);
        std::vector<uint8_t> got(ref.size(), 0xCD);
        QuantizeW8A8Activation(x.data(), n, static_scale, got.data());
        EXPECT_EQ(got, ref) << "n " << n << " static scale " << static_scale;
      }
    }
  });
}

TEST(W8A8Dot, SimdDotEqualsReferenceExactly) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  ForEachIsa([&] {
    for (int64_t n : kLengths) {
      const std::vector<uint8_t> row = RandomRow(rng, n);
      const std::vector<uint8_t> act = Quantized(RandomFloats(rng, n, 1.0f), 0.0f);
      EXPECT_EQ(W8A8DotInt(row.data() + 2, act.data(), n), W8A8DotIntRef(row.data() + 2, act.data(), n)) << "n " << n;
      const float ref = W8A8DotRef(row.data(), act.data(), n);
      const float got = W8A8Dot(row.data(), act.data(), n);
      EXPECT_EQ(std::memcmp(&ref, &got, sizeof(float)), 0) << "n " << n << ": " << got << " vs " << ref;
    }
  });
}

TEST(W8A8Dot, LongRowsDoNotOverflowInt32) {
  // Every term is (0 - 128) * -127 = 16256: 200,000 of them are 3.25e9, past int32.
  const int64_t n = 200000;
  std::vector<uint8_t> row(static_cast<size_t>(n) + 2, 0);
  const std::vector<float> x(static_cast<size_t>(n), -1.0f);
  const std::vector<uint8_t> act = Quantized(x, 0.0f);
  const int64_t expected = int64_t{16256} * n;
  EXPECT_EQ(W8A8DotIntRef(row.data() + 2, act.data(), n), expected);
  ForEachIsa([&] { EXPECT_EQ(W8A8DotInt(row.data() + 2, act.data(), n), expected); });
}

TEST(W8A8Dot, DotRowsEqualsDotPerPair) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  ForEachIsa([&] {
    for (int64_t n : {int64_t{33}, int64_t{172}, int64_t{256}}) {
      const int64_t rows = 11, tokens = 9;
      std::vector<uint8_t> w;
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<uint8_t> row = RandomRow(rng, n);
        w.insert(w.end(), row.begin(), row.end());
      }
      const size_t act_bytes = W8A8ActivationBytes(n);
      std::vector<uint8_t> acts;
      for (int64_t t = 0; t < tokens; ++t) {
        const std::vector<uint8_t> a = Quantized(RandomFloats(rng, n, 1.0f), t % 2 ? 0.0f : 0.05f);
        acts.insert(acts.end(), a.begin(), a.end());
      }
      const int64_t stride = rows + 3;
      std::vector<float> out(static_cast<size_t>(tokens * stride), -1.0f);
      W8A8DotRows(w.data(), static_cast<size_t>(n) + 2, rows, acts.data(), act_bytes, tokens, n, out.data(), stride);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const float ref = W8A8DotRef(w.data() + r * (n + 2), acts.data() + t * act_bytes, n);
          EXPECT_EQ(out[static_cast<size_t>(t * stride + r)], ref) << "n " << n << " row " << r << " token " << t;
        }
        for (int64_t r = rows; r < stride; ++r) EXPECT_EQ(out[static_cast<size_t>(t * stride + r)], -1.0f);
      }
    }
  });
}

// Against the float definition: with weights w_i = s_w (c_i - 128) and activations rounded to d q_i, where
// |d q_i - x_i| <= d / 2 (dynamic scale: nothing clamps), the error is at most s_w * d / 2 * sum |c_i - 128|,
// plus float rounding of the final products (kFloatRel of the bound's scale).
TEST(W8A8Dot, MatchesDequantizedProductWithinActivationRounding) {
  constexpr double kFloatRel = 1e-5;
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (int64_t n : kLengths) {
    const std::vector<uint8_t> row = RandomRow(rng, n);
    const std::vector<float> x = RandomFloats(rng, n, 2.0f);
    const std::vector<uint8_t> act = Quantized(x, 0.0f);
    const float d = reinterpret_cast<const W8A8ActivationHeader*>(act.data())->scale;
    uint16_t bits;
    std::memcpy(&bits, row.data(), 2);
    const double s_w = F16ToF32(bits);
    double exact = 0.0, abs_codes = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double w = s_w * (row[static_cast<size_t>(i) + 2] - 128);
      exact += w * x[static_cast<size_t>(i)];
      abs_codes += std::abs(row[static_cast<size_t>(i) + 2] - 128);
      magnitude += std::abs(w * x[static_cast<size_t>(i)]);
    }
    const double bound = std::abs(s_w) * d / 2 * abs_codes + kFloatRel * (magnitude + std::abs(exact));
    EXPECT_NEAR(W8A8Dot(row.data(), act.data(), n), exact, bound) << "n " << n;
  }
}

// A W8A8 tensor through MatMul: equals the per-pair reference for one token (decode) and a batch (prefill).
TEST(W8A8Dot, MatMulDispatchesW8A8Tensors) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int64_t rows = 300, cols = 172;
  std::vector<uint8_t> w;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = RandomRow(rng, cols);
    w.insert(w.end(), row.begin(), row.end());
  }
  TensorView view;
  view.name = "blk.0.ffn_down.weight";
  view.dtype = DType::kInt8Sym;
  view.shape = {rows, cols};
  view.data = reinterpret_cast<const std::byte*>(w.data());
  view.bytes = w.size();
  for (ActivationQuant mode : {ActivationQuant::kInt8Token, ActivationQuant::kInt8Tensor}) {
    view.activation = mode;
    view.activation_scale = mode == ActivationQuant::kInt8Tensor ? 0.03f : 0.0f;
    for (int64_t tokens : {int64_t{1}, int64_t{9}}) {
      const std::vector<float> x = RandomFloats(rng, tokens * cols, 1.0f);
      std::vector<float> y(static_cast<size_t>(tokens * rows));
      MatMul(view, x.data(), tokens, y.data());
      for (int64_t t = 0; t < tokens; ++t) {
        const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
        const std::vector<uint8_t> act = Quantized(xt, view.activation_scale);
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_EQ(y[static_cast<size_t>(t * rows + r)], W8A8DotRef(w.data() + r * (cols + 2), act.data(), cols))
              << "mode " << static_cast<int>(mode) << " token " << t << " row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace mixq
