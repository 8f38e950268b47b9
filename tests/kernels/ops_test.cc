// Softmax and SwiGLU (Highway SIMD with its Exp) against double-precision references, on every Highway
// target this CPU runs: every length up to a few vectors (the tails), a long row, and extreme inputs.
#include "mixq/kernels/ops.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace mixq {
namespace {

std::vector<float> RandomValues(int64_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Runs `check` once per Highway target this CPU supports (and this build compiled), then restores dispatch.
template <typename Check>
void ForEachTarget(const Check& check) {
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    check();
  }
  hwy::SetSupportedTargetsForTest(0);
}

// Each probability within 1e-6 relative of exp(x - max) / sum in double (Exp's 1 ulp, the float sum's
// rounding over at most 70000 terms, the final multiply), plus what rounding x - max to float costs (half
// an ulp of the difference, |x - max| * 2^-24 relative after exp; std::exp on floats paid the same), and
// the row sums to 1 within 1e-5.
void ExpectSoftmaxMatches(const std::vector<float>& x) {
  std::vector<float> p = x;
  Softmax(p.data(), static_cast<int64_t>(p.size()));
  double max_value = x[0], sum = 0.0;
  for (float v : x) max_value = std::max<double>(max_value, v);
  for (float v : x) sum += std::exp(v - max_value);
  double total = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(x[i] - max_value) / sum;
    const double shift_rounding = std::abs(x[i] - max_value) * 0x1p-24;
    ASSERT_NEAR(p[i], want, (1e-6 + shift_rounding) * want + 1e-30) << "i=" << i << " of " << x.size();
    total += p[i];
  }
  EXPECT_NEAR(total, 1.0, 1e-5) << x.size();
}

TEST(Softmax, MatchesDoubleReferenceAtEveryLengthAndTarget) {
  ForEachTarget([] {
    for (int64_t n = 1; n <= 70; ++n) ExpectSoftmaxMatches(RandomValues(n, 3.0f, static_cast<uint32_t>(n)));
    ExpectSoftmaxMatches(RandomValues(70000, 3.0f, 7));
  });
}

TEST(Softmax, HandlesExtremeScores) {
  ForEachTarget([] {
    // Spread far beyond exp's range: everything below the max by more than ~104 becomes 0, never NaN.
    std::vector<float> x = {0.0f, -1000.0f, 50.0f, -3e38f, 49.0f, 88.0f, 120.0f, -120.0f, 3e38f, 1.0f, 2.0f};
    Softmax(x.data(), static_cast<int64_t>(x.size()));
    for (float p : x) ASSERT_TRUE(std::isfinite(p) && p >= 0.0f && p <= 1.0f) << p;
    EXPECT_FLOAT_EQ(x[8], 1.0f);
    // Equal scores: uniform, whatever the length's tail.
    for (int64_t n : {1, 7, 17, 33}) {
      std::vector<float> same(static_cast<size_t>(n), -5.5f);
      Softmax(same.data(), n);
      for (float p : same) ASSERT_FLOAT_EQ(p, 1.0f / static_cast<float>(n));
    }
  });
}

// silu(g) * u within 4 float ulps (relative 5e-7) of the double formula, plus a 1e-30 floor for the
// results that underflow; large negative gates (exp's argument held to 88) give ~0 like the formula.
void ExpectSwiGluMatches(const std::vector<float>& gate, const std::vector<float>& up) {
  std::vector<float> out = gate;
  SwiGlu(out.data(), up.data(), static_cast<int64_t>(out.size()));
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    const double want = g / (1.0 + std::exp(-g)) * up[i];
    ASSERT_NEAR(out[i], want, 5e-7 * std::abs(want) + 1e-30) << "i=" << i << " g=" << g << " of " << gate.size();
  }
}

TEST(SwiGlu, MatchesDoubleReferenceAtEveryLengthAndTarget) {
  ForEachTarget([] {
    for (int64_t n = 1; n <= 70; ++n) {
      ExpectSwiGluMatches(RandomValues(n, 4.0f, static_cast<uint32_t>(n)), RandomValues(n, 1.0f, 1000u + n));
    }
    // A prefill batch's size: split across threads in chunks, the last one partial.
    const int64_t n = (int64_t{1} << 16) + 4 * 16384 + 13;
    ExpectSwiGluMatches(RandomValues(n, 4.0f, 3), RandomValues(n, 1.0f, 4));
  });
}

TEST(SwiGlu, LargeGatesStayFinite) {
  ForEachTarget([] {
    const std::vector<float> gate = {-200.0f, -100.0f, -89.0f, -88.0f, -87.0f, 87.0f, 100.0f, 200.0f, 0.0f, -0.0f};
    const std::vector<float> up(gate.size(), 2.0f);
    std::vector<float> out = gate;
    SwiGlu(out.data(), up.data(), static_cast<int64_t>(out.size()));
    for (size_t i = 0; i < gate.size(); ++i) {
      ASSERT_TRUE(std::isfinite(out[i])) << gate[i];
      const double g = gate[i];
      EXPECT_NEAR(out[i], g / (1.0 + std::exp(-g)) * 2.0, 1e-6 * std::abs(g) + 1e-30) << g;
    }
  });
}

}  // namespace
}  // namespace mixq
