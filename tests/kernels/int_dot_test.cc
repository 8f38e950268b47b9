// INT kernels: the activation layout, AVX2 and AVX-512 VNNI == scalar for every type on fresh random rows of odd lengths and
// groups, the scalar dot against the float definition, and MatMulQuantized against dequantized weights.
#include "mixq/kernels/int_dot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "mixq/formats/float16.h"
#include "mixq/kernels/cpu_features.h"
#include "mixq/kernels/int_dot_avx2.h"
#include "mixq/kernels/int_dot_avx512.h"
#include "mixq/formats/int_dequant.h"
#include "mixq/kernels/packed_gemm.h"
#include "kernels/interleaved_check.h"
#include "mixq/formats/int_quant.h"
#include "mixq/tensor/int_layout.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

// The SIMD dots and the scalar one sum the same exact per-block integers in a different float order: they agree to this
// fraction of sum |w_i| |a_i| (w, a the dequantized weight and activation).
constexpr double kSimdRelTolerance = 1e-5;
// The scalar dot accumulates in double: it matches the float definition this closely.
constexpr double kRefRelTolerance = 1e-6;

const DType kAllIntTypes[] = {DType::kInt2,    DType::kInt3,    DType::kInt4,    DType::kInt5,    DType::kInt6,
                              DType::kInt7,    DType::kInt8,    DType::kInt2Sym, DType::kInt3Sym, DType::kInt4Sym,
                              DType::kInt5Sym, DType::kInt6Sym, DType::kInt7Sym, DType::kInt8Sym};

// (n, group): aligned groups, odd rows (stories260K's 172), odd groups, single values.
// Besides odd lengths and groups: more than 8 groups with a remainder (the AVX2 walk converts scales and
// zero-points eight groups at a time), and a short last group.
const int64_t kShapes[][2] = {{256, 32}, {256, 64}, {4096, 128}, {172, 128}, {172, 0},  {172, 44},  {44, 7},
                              {33, 0},   {33, 32},  {1, 0},      {97, 33},   {300, 64}, {1000, 32}, {4100, 128}};

uint32_t FreshSeed() { return std::random_device{}(); }

// Every SIMD dot this CPU runs for `dtype`, by level name: the table picks the best, the others are
// called directly so each stays checked on a CPU that has several.
struct SimdDot {
  const char* isa;
  int_dot_avx2::DotFn dot;
};
std::vector<SimdDot> SimdDots(DType dtype) {
  const DTypeTraits& t = Traits(dtype);
  std::vector<SimdDot> dots;
  if (CpuHasAvx2()) dots.push_back({"AVX2", int_dot_avx2::Dot(t.bits, t.symmetric)});
  if (CpuHasAvx512Vnni()) dots.push_back({"AVX512-VNNI", int_dot_avx512::Dot(t.bits, t.symmetric)});
  return dots;
}

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// A weight row of random bytes (every code, zero-point and padding bit random), with sane FP16 scales of
// either sign: what any writer could have stored.
std::vector<uint8_t> RandomWeightRow(std::mt19937& rng, DType dtype, int64_t n, int64_t group) {
  const IntRowLayout layout(dtype, n, group);
  std::vector<uint8_t> row(layout.row_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : row) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    const uint16_t bits = F32ToF16(byte(rng) % 2 ? scale(rng) : -scale(rng));
    std::memcpy(row.data() + 2 * k, &bits, sizeof(bits));
  }
  return row;
}

// The activation row as the values it stands for: d * q per position.
std::vector<float> DequantizedActivation(const void* act, int64_t n, int64_t group) {
  const auto* block = static_cast<const IntActivationBlock*>(act);
  const int64_t g = (group == 0 || group > n) ? n : group;
  std::vector<float> a;
  for (int64_t start = 0; start < n; start += g) {
    const int64_t len = std::min(g, n - start);
    for (int64_t i = 0; i < len; i += kIntActivationBlockSize, ++block) {
      for (int64_t j = 0; j < std::min(kIntActivationBlockSize, len - i); ++j) a.push_back(block->scale * block->q[j]);
    }
  }
  return a;
}

// The size of the terms a SIMD dot adds, for its float-rounding bound: the AVX2 walk sums s d c q over the
// blocks and subtracts the group's s z G separately (int_dot_avx2.cc), so where c is near z the two cancel
// and the rounding scales with sum_i |s| (|c_i| + |z|) |a_i| (codes and zero-points as that kernel reads
// them: 8-bit ones less 128), not with sum_i |w_i a_i|.
double FactoredTermMagnitude(DType dtype, const uint8_t* row, const std::vector<float>& a, int64_t n, int64_t group) {
  const IntRowLayout layout(dtype, n, group);
  const int bias = layout.bits == 8 ? 128 : 0;
  double magnitude = 0.0;
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    uint16_t scale_bits;
    std::memcpy(&scale_bits, row + 2 * k, sizeof(scale_bits));
    const double scale = std::fabs(F16ToF32(scale_bits));
    const int zero = layout.symmetric ? layout.SymmetricZero()
                                      : static_cast<int>(ReadPackedCode(row + layout.zeros_offset, k, layout.bits));
    const uint8_t* codes = row + layout.GroupCodesOffset(k);
    for (int64_t i = 0; i < layout.GroupLength(k); ++i) {
      const int code = static_cast<int>(ReadPackedCode(codes, i, layout.bits));
      magnitude += scale * (std::abs(code - bias) + std::abs(zero - bias)) * std::fabs(a[layout.GroupStart(k) + i]);
    }
  }
  return magnitude;
}

TEST(IntDot, KernelForEveryIntTypeOnly) {
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel* k = IntQuantKernel(dtype);
    ASSERT_NE(k, nullptr) << DTypeName(dtype);
    EXPECT_EQ(k->weight_type, dtype);
  }
  EXPECT_EQ(IntQuantKernel(DType::kF32), nullptr);
  EXPECT_EQ(IntQuantKernel(DType::kQ4_0), nullptr);
}

TEST(IntDot, ActivationLayout) {
  EXPECT_EQ(IntActivationBlockCount(172, 128), 6);  // 4 blocks of 32, then 32 + 12
  EXPECT_EQ(IntActivationBlockCount(44, 7), 7);     // six groups of 7 and one of 2: one block each
  EXPECT_EQ(IntActivationBlockCount(33, 0), 2);
  EXPECT_EQ(IntActivationBlockCount(1, 0), 1);
  EXPECT_EQ(IntActivationBlockCount(0, 0), 0);
  EXPECT_EQ(IntActivationGroupCount(172, 128), 2);
  EXPECT_EQ(IntActivationGroupCount(44, 7), 7);
  EXPECT_EQ(IntActivationGroupCount(33, 0), 1);
  EXPECT_EQ(IntActivationGroupCount(0, 0), 0);
  EXPECT_EQ(IntActivationBytes(4096, 128), 128u * 40u + 32u * 4u);  // blocks, then a float per group

  std::mt19937 rng(FreshSeed());
  const int64_t n = 172, group = 128;
  std::vector<float> x = RandomFloats(rng, n, 2.0f);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
  std::vector<std::byte> act(IntActivationBytes(n, group));
  IntQuantKernel(DType::kInt4)->quantize_activation_ref(x.data(), act.data(), n, group);
  std::vector<IntActivationBlock> blocks(static_cast<size_t>(IntActivationBlockCount(n, group)));
  std::memcpy(blocks.data(), act.data(), blocks.size() * sizeof(IntActivationBlock));
  const int64_t starts[] = {0, 32, 64, 96, 128, 160};
  const int64_t lengths[] = {32, 32, 32, 32, 32, 12};
  for (size_t b = 0; b < blocks.size(); ++b) {
    float amax = 0.0f;
    for (int64_t i = 0; i < lengths[b]; ++i) amax = std::max(amax, std::fabs(x[starts[b] + i]));
    EXPECT_EQ(blocks[b].scale, amax / 127.0f);
    int32_t sum = 0;
    for (int64_t i = 0; i < kIntActivationBlockSize; ++i) {
      const int8_t q = blocks[b].q[i];
      sum += q;
      EXPECT_GE(q, -127);
      if (i >= lengths[b]) {
        EXPECT_EQ(q, 0) << "padding";
      } else {
        EXPECT_LE(std::fabs(x[starts[b] + i] - blocks[b].scale * q), blocks[b].scale * 0.5f * (1 + 1e-5f));
      }
    }
    EXPECT_EQ(blocks[b].sum, sum);
  }
  EXPECT_EQ(blocks[2].scale, 0.0f);
  // The group sums after the blocks: G_k = sum over group k's blocks of scale * sum, in float, in order.
  float group_sums[2];
  std::memcpy(group_sums, act.data() + blocks.size() * sizeof(IntActivationBlock), sizeof(group_sums));
  float g0 = 0.0f, g1 = 0.0f;
  for (size_t b = 0; b < 4; ++b) g0 += blocks[b].scale * static_cast<float>(blocks[b].sum);
  for (size_t b = 4; b < 6; ++b) g1 += blocks[b].scale * static_cast<float>(blocks[b].sum);
  EXPECT_EQ(group_sums[0], g0);
  EXPECT_EQ(group_sums[1], g1);
}

TEST(IntDot, QuantizeActivationFastEqualsRef) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  for (const auto& [n, group] : kShapes) {
    std::vector<float> x = RandomFloats(rng, n, 3.0f);
    if (n > 40) x[37] = 0.5f * 127.0f / 127.0f;  // values landing on rounding ties are likely with round inputs
    const size_t bytes = IntActivationBytes(n, group);
    std::vector<std::byte> fast(bytes), ref(bytes);
    const QuantKernel& k = *IntQuantKernel(DType::kInt4);
    k.quantize_activation(x.data(), fast.data(), n, group);
    k.quantize_activation_ref(x.data(), ref.data(), n, group);
    EXPECT_EQ(fast, ref) << "n " << n << " group " << group;
  }
}

// The scalar dot against its definition: sum of dequantized weight times dequantized activation.
TEST(IntDot, ScalarDotMatchesDefinition) {
  std::mt19937 rng(FreshSeed());
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel& k = *IntQuantKernel(dtype);
    for (const auto& [n, group] : kShapes) {
      SCOPED_TRACE(fmt::format("{} n {} group {}", DTypeName(dtype), n, group));
      const std::vector<uint8_t> w = RandomWeightRow(rng, dtype, n, group);
      const std::vector<float> x = RandomFloats(rng, n, 1.0f);
      std::vector<std::byte> act(k.activation_bytes(n, group));
      k.quantize_activation_ref(x.data(), act.data(), n, group);
      std::vector<float> wf(static_cast<size_t>(n));
      DequantizeIntRow(dtype, w.data(), wf.data(), n, group);
      const std::vector<float> a = DequantizedActivation(act.data(), n, group);
      double exact = 0.0, magnitude = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        exact += static_cast<double>(wf[i]) * a[i];
        magnitude += std::fabs(static_cast<double>(wf[i]) * a[i]);
      }
      EXPECT_NEAR(k.dot_ref(w.data(), act.data(), n, group), exact, kRefRelTolerance * magnitude + 1e-30);
    }
  }
}

TEST(IntDot, SimdDotEqualsScalar) {
  if (!IntDotHasAvx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel& k = *IntQuantKernel(dtype);
    const std::vector<SimdDot> dots = SimdDots(dtype);
    EXPECT_STREQ(k.isa(), dots.back().isa);
    EXPECT_EQ(k.dot, dots.back().dot);
    for (const auto& [n, group] : kShapes) {
      for (int rep = 0; rep < 3; ++rep) {
        const std::vector<uint8_t> w = RandomWeightRow(rng, dtype, n, group);
        // The row sits at the very end of its buffer, so a read past its last byte is caught by ASan.
        std::vector<uint8_t> exact_fit(w);
        std::vector<float> x = RandomFloats(rng, n, 1.0f);
        if (rep == 2) std::fill(x.begin(), x.begin() + std::min<int64_t>(n, 40), 100.0f);  // codes at +127
        std::vector<std::byte> act(k.activation_bytes(n, group));
        k.quantize_activation(x.data(), act.data(), n, group);
        std::vector<float> wf(static_cast<size_t>(n));
        DequantizeIntRow(dtype, w.data(), wf.data(), n, group);
        const std::vector<float> a = DequantizedActivation(act.data(), n, group);
        const double magnitude = FactoredTermMagnitude(dtype, w.data(), a, n, group);
        const float ref = k.dot_ref(w.data(), act.data(), n, group);
        for (const SimdDot& simd : dots) {
          SCOPED_TRACE(fmt::format("{} {} n {} group {}", simd.isa, DTypeName(dtype), n, group));
          EXPECT_NEAR(simd.dot(exact_fit.data(), act.data(), n, group), ref, kSimdRelTolerance * magnitude + 1e-30);
        }
      }
    }
  }
}

// A row of no weights (a zero-width matrix) is an empty sum on every level, for any group size.
TEST(IntDot, EmptyRowIsZero) {
  const uint8_t row[1] = {0};
  const IntActivationBlock act{};
  for (const DType dtype : kAllIntTypes) {
    for (const int64_t group : {0, 32, 128}) {
      EXPECT_EQ(IntQuantKernel(dtype)->dot_ref(row, &act, 0, group), 0.0f);
      for (const SimdDot& simd : SimdDots(dtype)) EXPECT_EQ(simd.dot(row, &act, 0, group), 0.0f) << simd.isa;
    }
  }
}

// Codes at the extremes: 8-bit codes 0 and 255 against activations of -127 and 127 would saturate a
// naive maddubs (AVX2 keeps them exact with the sign trick; vpdpbusd sums in int32). Small integers
// throughout, so every level's float sums are exact and equal the reference's.
TEST(IntDot, ExtremeCodesDoNotSaturate) {
  if (!IntDotHasAvx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel& k = *IntQuantKernel(dtype);
    const int bits = Traits(dtype).bits;
    const int64_t n = 64;
    const IntRowLayout layout(dtype, n, 0);
    std::vector<uint8_t> w(layout.row_bytes, 0);
    const uint16_t one = F32ToF16(1.0f);
    std::memcpy(w.data(), &one, 2);
    for (int64_t i = 0; i < n; ++i) WritePackedCode(w.data() + layout.codes_offset, i, bits, i % 4 < 2 ? (1u << bits) - 1 : 0);
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = i % 2 ? 127.0f : -127.0f;
    x[0] = 127.0f;
    std::vector<std::byte> act(k.activation_bytes(n, 0));
    k.quantize_activation(x.data(), act.data(), n, 0);
    for (const SimdDot& simd : SimdDots(dtype)) {
      EXPECT_EQ(simd.dot(w.data(), act.data(), n, 0), k.dot_ref(w.data(), act.data(), n, 0))
          << simd.isa << " " << DTypeName(dtype);
    }
  }
}

TEST(IntDot, MatMulQuantizedMatchesDequantizedProduct) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  const int64_t shapes[][3] = {{37, 172, 128}, {64, 256, 32}, {16, 44, 7}, {40, 512, 0}};
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel& k = *IntQuantKernel(dtype);
    for (const auto& [rows, cols, group] : shapes) {
      const std::vector<float> wf = RandomFloats(rng, rows * cols, 0.05f);
      Tensor w = Tensor::Zeros("w", dtype, {rows, cols}, group);
      QuantizeIntMatrix(dtype, wf.data(), rows, cols, group, false, w.storage.data());
      std::vector<float> deq(static_cast<size_t>(rows * cols));
      for (int64_t r = 0; r < rows; ++r) DequantizeIntRow(dtype, w.view().row(r), deq.data() + r * cols, cols, group);
      for (const int64_t n_tokens : {1, 5}) {
        SCOPED_TRACE(fmt::format("{} [{}, {}] group {} tokens {}", DTypeName(dtype), rows, cols, group, n_tokens));
        const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
        std::vector<float> y(static_cast<size_t>(n_tokens * rows));
        MatMulQuantized(k, w.view(), x.data(), n_tokens, y.data());
        // Tolerance: each activation is off by at most half its block's step d_b = max|x|/127 after
        // rounding, so |y - exact| <= sum_i |w_i| d_b(i) / 2, plus float rounding of sum |w_i x_i|.
        const int64_t g = group == 0 ? cols : group;
        for (int64_t t = 0; t < n_tokens; ++t) {
          const float* xt = x.data() + t * cols;
          std::vector<float> step(static_cast<size_t>(cols));
          for (int64_t s = 0; s < cols; s += g) {
            for (int64_t b = s; b < std::min(cols, s + g); b += kIntActivationBlockSize) {
              const int64_t e = std::min({cols, s + g, b + kIntActivationBlockSize});
              float amax = 0.0f;
              for (int64_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(xt[i]));
              for (int64_t i = b; i < e; ++i) step[i] = amax / 127.0f;
            }
          }
          for (int64_t r = 0; r < rows; ++r) {
            double exact = 0.0, bound = 0.0, magnitude = 0.0;
            for (int64_t i = 0; i < cols; ++i) {
              const double wi = deq[r * cols + i];
              exact += wi * xt[i];
              bound += std::fabs(wi) * step[i] * 0.5;
              magnitude += std::fabs(wi * xt[i]);
            }
            ASSERT_NEAR(y[t * rows + r], exact, bound + 1e-5 * magnitude) << "row " << r;
          }
        }
      }
    }
  }
}

// INT4 to INT8 rows interleaved 8 at a time (QuantKernel::interleaved, the AVX2 level): which shapes have the
// layout; groups of 8 random rows (64 bytes apart beyond their length) interleave and extract back to the
// same bytes and unpack for the packed GEMM as the rows do; dot_groups over 1..3 groups x 1..3 tokens equals dot_ref per row within the SIMD tolerance
// and writes only its own outputs; and MatMulQuantized on a view whose stored rows are garbage but whose
// interleaved rows are real gives the plain view's outputs (bit for bit through the packed GEMM).
TEST(IntDot, InterleavedRowsMatchScalar) {
  constexpr int kRows = InterleavedRows::kRows;
  EXPECT_TRUE(IntInterleaveAccepts(4096, 128));
  EXPECT_TRUE(IntInterleaveAccepts(512, 0));
  EXPECT_TRUE(IntInterleaveAccepts(96, 0));
  EXPECT_FALSE(IntInterleaveAccepts(4100, 128));  // a short last group
  EXPECT_FALSE(IntInterleaveAccepts(172, 0));     // 32 does not divide the row
  EXPECT_FALSE(IntInterleaveAccepts(256, 48));    // nor the group
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel& k = *IntQuantKernel(dtype);
    const int bits = Traits(dtype).bits;
    const bool expected = bits >= 2 && IntDotHasAvx2() && !(bits == 8 && CpuHasAvx512Vnni());
    EXPECT_EQ(k.interleaved != nullptr, expected) << DTypeName(dtype);
  }
  if (IntQuantKernel(DType::kInt4)->interleaved == nullptr) {
    GTEST_SKIP() << "no interleaved INT4 rows on this CPU (they need AVX2)";
  }
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  constexpr int64_t kGroups = 3, kMaxTokens = 3;
  constexpr size_t kPad = 64;
  constexpr float kUnwritten = 12345.0f;
  const int64_t shapes[][2] = {{256, 32}, {256, 64}, {4096, 128}, {512, 0}, {96, 0}, {384, 96}, {160, 32}};
  for (const DType dtype : kAllIntTypes) {
    const QuantKernel& k = *IntQuantKernel(dtype);
    if (k.interleaved == nullptr) continue;  // INT8 on AVX-512 VNNI (checked above)
    const InterleavedRows& il = *k.interleaved;
    for (const auto& [n, group] : shapes) {
      SCOPED_TRACE(fmt::format("{} n {} group {}", DTypeName(dtype), n, group));
      ASSERT_TRUE(il.accepts(n, group));
      const IntRowLayout layout(dtype, n, group);
      const size_t row_bytes = layout.row_bytes;
      const size_t stride = row_bytes + kPad;
      const size_t group_bytes = il.group_bytes(n, group);
      // INT4 and INT8 take exactly their rows' bytes; INT2/3/5/6/7 a byte per zero-point.
      if (layout.bits == 4 || layout.bits == 8) {
        ASSERT_EQ(group_bytes, kRows * row_bytes);
      } else {
        ASSERT_GE(group_bytes, kRows * row_bytes);
      }
      std::vector<uint8_t> rows(stride * kRows * kGroups);
      for (int64_t r = 0; r < kRows * kGroups; ++r) {
        std::vector<uint8_t> w = RandomWeightRow(rng, dtype, n, group);
        // The zero-points' padding nibble (an odd group count) is not kept: written as 0, as mixq writes it.
        // The zero-points' padding bits (when bits * n_groups is not a multiple of 8) are not kept: written
        // as 0, as mixq writes them.
        const int64_t zero_bits = layout.bits * layout.n_groups;
        if (!layout.symmetric && zero_bits % 8 != 0) w[layout.codes_offset - 1] &= (1 << (zero_bits % 8)) - 1;
        std::memcpy(rows.data() + r * stride, w.data(), row_bytes);
      }
      std::vector<uint8_t> groups(group_bytes * kGroups);
      for (int64_t g = 0; g < kGroups; ++g) {
        il.interleave(rows.data() + g * kRows * stride, stride, n, group, groups.data() + g * group_bytes);
      }
      std::vector<uint8_t> extracted(row_bytes);
      for (int64_t r = 0; r < kRows * kGroups; ++r) {
        il.extract_row(groups.data() + (r / kRows) * group_bytes, static_cast<int>(r % kRows), n, group,
                       extracted.data());
        ASSERT_EQ(std::memcmp(extracted.data(), rows.data() + r * stride, row_bytes), 0) << "row " << r;
      }
      testing::ExpectUnpackRowsEqualsUnpackRow(k, groups.data(), group_bytes, kGroups, rows.data(), stride, n, group);
      testing::ExpectUnpackPanelEqualsUnpackRow(k, groups.data(), group_bytes, kGroups, rows.data(), stride, n, group);
      const size_t act_bytes = k.activation_bytes(n, group);
      std::vector<std::byte> acts(act_bytes * kMaxTokens);
      for (int64_t t = 0; t < kMaxTokens; ++t) {
        const std::vector<float> x = RandomFloats(rng, n, 1.0f);
        k.quantize_activation(x.data(), acts.data() + t * act_bytes, n, group);
      }
      for (int64_t n_groups = 1; n_groups <= kGroups; ++n_groups) {
        for (int64_t n_tokens = 1; n_tokens <= kMaxTokens; ++n_tokens) {
          const int64_t out_stride = kRows * n_groups + 5;
          std::vector<float> out(static_cast<size_t>(out_stride * n_tokens), kUnwritten);
          il.dot_groups(groups.data(), group_bytes, n_groups, acts.data(), act_bytes, n_tokens, n, group, out.data(),
                        out_stride);
          for (int64_t t = 0; t < n_tokens; ++t) {
            const std::byte* act = acts.data() + t * act_bytes;
            const std::vector<float> a = DequantizedActivation(act, n, group);
            for (int64_t r = 0; r < kRows * n_groups; ++r) {
              const uint8_t* row = rows.data() + r * stride;
              ASSERT_NEAR(out[t * out_stride + r], k.dot_ref(row, act, n, group),
                          kSimdRelTolerance * FactoredTermMagnitude(dtype, row, a, n, group) + 1e-30)
                  << n_groups << " groups x " << n_tokens << " tokens: row " << r << ", token " << t;
            }
            for (int64_t r = kRows * n_groups; r < out_stride; ++r) {
              ASSERT_EQ(out[t * out_stride + r], kUnwritten) << "dot_groups wrote past its rows, token " << t;
            }
          }
        }
      }
    }
    // MatMulQuantized reads only the interleaved rows when a view has them.
    const int64_t rows_n = 5 * kRows, cols = 512, group = 128;
    Tensor w = Tensor::Zeros("w", dtype, {rows_n, cols}, group);
    QuantizeIntMatrix(dtype, RandomFloats(rng, rows_n * cols, 0.05f).data(), rows_n, cols, group, false,
                      w.storage.data());
    const TensorView plain = w.view();
    const size_t group_bytes = il.group_bytes(cols, group);
    std::vector<uint8_t> groups(group_bytes * static_cast<size_t>(rows_n / kRows));
    for (int64_t g = 0; g < rows_n / kRows; ++g) {
      il.interleave(plain.row(g * kRows), plain.row_bytes(), cols, group, groups.data() + g * group_bytes);
    }
    Tensor garbage = Tensor::Zeros("garbage", dtype, {rows_n, cols}, group);
    std::memset(garbage.storage.data(), 0x5a, garbage.storage.size());
    TensorView interleaved = garbage.view();
    interleaved.interleaved = reinterpret_cast<const std::byte*>(groups.data());
    for (const int64_t n_tokens : {int64_t{1}, int64_t{3}, int64_t{64}}) {
      SCOPED_TRACE(fmt::format("{} MatMulQuantized, {} tokens", DTypeName(dtype), n_tokens));
      const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
      std::vector<float> want(static_cast<size_t>(n_tokens * rows_n)), got(want.size());
      MatMulQuantized(k, plain, x.data(), n_tokens, want.data());
      MatMulQuantized(k, interleaved, x.data(), n_tokens, got.data());
      const bool packed = UsePackedGemm(k, n_tokens);
      std::vector<std::byte> act(k.activation_bytes(cols, group));
      for (int64_t t = 0; t < n_tokens; ++t) {
        k.quantize_activation(x.data() + t * cols, act.data(), cols, group);
        const std::vector<float> a = DequantizedActivation(act.data(), cols, group);
        for (int64_t r = 0; r < rows_n; ++r) {
          const size_t i = static_cast<size_t>(t * rows_n + r);
          if (packed) {
            ASSERT_EQ(got[i], want[i]) << "packed GEMM, row " << r << ", token " << t;
          } else {
            const auto* row = reinterpret_cast<const uint8_t*>(plain.row(r));
            ASSERT_NEAR(got[i], want[i], 2 * kSimdRelTolerance * FactoredTermMagnitude(dtype, row, a, cols, group) + 1e-30)
                << "row " << r << ", token " << t;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace mixq
