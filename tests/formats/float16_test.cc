// The scalar F16/BF16 codecs against independent oracles: exact binary16 arithmetic in double, the F16C
// hardware conversion where the CPU has it, and numpy's documented edge cases.
#include "mixq/formats/float16.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

namespace mixq {
namespace {

bool IsF16Nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool IsBF16Nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

// The value of a finite or infinite binary16, computed from its definition rather than by bit moves.
double F16ValueByDefinition(uint16_t h) {
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) return sign * std::numeric_limits<double>::infinity();
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

__attribute__((target("f16c"))) uint16_t HardwareF32ToF16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

TEST(Float16Test, AllHalfValuesWidenExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (IsF16Nan(static_cast<uint16_t>(h))) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000u) != 0) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), F16ValueByDefinition(static_cast<uint16_t>(h))) << std::hex << h;
    }
  }
}

TEST(Float16Test, AllHalfValuesRoundTripBitExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = F32ToF16(F16ToF32(static_cast<uint16_t>(h)));
    if (IsF16Nan(static_cast<uint16_t>(h))) {
      // NaN payloads are canonicalised to quiet NaNs (as numpy does), keeping the sign.
      EXPECT_TRUE(IsF16Nan(back)) << std::hex << h << " -> " << back;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u);
      EXPECT_NE(back & 0x200u, 0u) << "quiet bit";
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(Float16Test, RoundsTiesToEven) {
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // halfway 1 | 1+2^-10: even is 1
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);  // halfway 0x3c01 | 0x3c02: even
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01u);  // just above
  EXPECT_EQ(F32ToF16(2049.0f), 0x6800u);  // 2048 | 2050 at this exponent: even is 2048
  EXPECT_EQ(F32ToF16(2051.0f), 0x6802u);  // 2050 | 2052: even is 2052
  EXPECT_EQ(F32ToF16(-2051.0f), 0xe802u);
}

TEST(Float16Test, OverflowsToInfinity) {
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bffu);                    // largest half
  EXPECT_EQ(F32ToF16(std::nextafter(65520.0f, 0.0f)), 0x7bffu);  // below the midpoint to 65536
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00u);                    // midpoint ties to even = inf
  EXPECT_EQ(F32ToF16(1e10f), 0x7c00u);
  EXPECT_EQ(F32ToF16(-1e10f), 0xfc00u);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7c00u);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xfc00u);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::max()), 0x7c00u);
}

TEST(Float16Test, SubnormalsAndUnderflow) {
  const float tiny = std::ldexp(1.0f, -24);  // smallest positive subnormal half
  EXPECT_EQ(F32ToF16(tiny), 0x0001u);
  EXPECT_EQ(F32ToF16(-tiny), 0x8001u);
  EXPECT_EQ(F32ToF16(tiny / 2), 0x0000u);                           // tie with zero: even is zero
  EXPECT_EQ(F32ToF16(std::nextafter(tiny / 2, 1.0f)), 0x0001u);     // just above the tie
  EXPECT_EQ(F32ToF16(3 * tiny / 2), 0x0002u);                       // tie 1 | 2: even is 2
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14) - tiny / 2), 0x0400u);   // tie 0x3ff | 0x400: even
  EXPECT_EQ(F32ToF16(1023 * tiny), 0x03ffu);                        // largest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -30)), 0x0000u);
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -30)), 0x8000u);             // keeps the sign of zero
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000u);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::denorm_min()), 0x0000u);
}

TEST(Float16Test, NanStaysNan) {
  EXPECT_TRUE(IsF16Nan(F32ToF16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(IsF16Nan(F32ToF16(BitsFloat(0x7f800001u))));  // payload only in bits that are dropped
  EXPECT_TRUE(IsF16Nan(F32ToF16(BitsFloat(0xff800001u))));
  EXPECT_TRUE(IsBF16Nan(F32ToBF16(BitsFloat(0x7f800001u))));
  EXPECT_TRUE(IsBF16Nan(F32ToBF16(std::numeric_limits<float>::quiet_NaN())));
}

// Nearest-even F32 -> F16 against the CPU's own conversion on a spread of about a million floats that
// covers every exponent, plus dense runs around the rounding points of the half range.
TEST(Float16Test, MatchesF16cHardwareConversion) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "CPU without F16C";
  auto check = [](uint32_t bits) {
    const float f = BitsFloat(bits);
    if (std::isnan(f)) return;
    ASSERT_EQ(F32ToF16(f), HardwareF32ToF16(f)) << std::hex << "float bits " << bits;
  };
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 4099) check(static_cast<uint32_t>(bits));
  std::mt19937 rng(5);
  for (int i = 0; i < 200000; ++i) {
    // A random half, then the floats right around it and around the midpoint to its neighbour.
    const uint32_t base = FloatBits(F16ToF32(static_cast<uint16_t>(rng() & 0x7bffu))) | (rng() & 1u) << 31;
    for (int delta = -2; delta <= 2; ++delta) {
      check(base + static_cast<uint32_t>(delta));
      check(base + 0x1000u + static_cast<uint32_t>(delta));
    }
  }
}

TEST(BFloat16Test, AllValuesRoundTripBitExactly) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = BF16ToF32(static_cast<uint16_t>(b));
    EXPECT_EQ(FloatBits(f), b << 16);
    const uint16_t back = F32ToBF16(f);
    if (IsBF16Nan(static_cast<uint16_t>(b))) {
      EXPECT_TRUE(IsBF16Nan(back)) << std::hex << b;
    } else {
      EXPECT_EQ(back, b) << std::hex << b;
    }
  }
}

// BF16 rounding against a direct nearest-neighbour search in double, ties to the even mantissa.
TEST(BFloat16Test, RoundsToNearestEven) {
  std::mt19937 rng(11);
  for (int i = 0; i < 1000000; ++i) {
    uint32_t bits = rng();
    if (i % 4 == 0) bits = (bits & 0xffff0000u) | 0x8000u;  // exact ties are rare at random: force some
    const float f = BitsFloat(bits);
    if (std::isnan(f) || std::isinf(f)) continue;
    const uint16_t down = static_cast<uint16_t>(bits >> 16);
    const uint16_t up = static_cast<uint16_t>(down + 1);
    const double d_down = std::abs(static_cast<double>(f) - BF16ToF32(down));
    // One step past the largest finite value is 2^128 with an unbounded exponent (IEEE's overflow rule).
    const double up_value = (up & 0x7fffu) == 0x7f80u ? std::copysign(std::ldexp(1.0, 128), f)
                                                       : static_cast<double>(BF16ToF32(up));
    const double d_up = std::abs(up_value - f);
    uint16_t expected = d_down < d_up ? down : d_up < d_down ? up : ((down & 1u) ? up : down);
    ASSERT_EQ(F32ToBF16(f), expected) << std::hex << bits;
  }
  EXPECT_EQ(F32ToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3f80u);      // tie: even is 1
  EXPECT_EQ(F32ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82u);  // tie: even is 1 + 2^-6
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::max()), 0x7f80u);  // rounds past the top: inf
}

}  // namespace
}  // namespace mixq
