// The packed prefill GEMM: for every ggml and INT format, on shapes that exercise row tails (1..7 rows of
// a row group), token tails (1..3 of a 4-token tile), several column chunks and short INT blocks, the SIMD
// micro-kernel this CPU runs (AVX-512 VNNI or AVX2; with MIXQ_MAX_ISA=avx2 the AVX2 one) equals the scalar
// one bit for bit, both equal the exact product of the stored weights and the quantized activations within
// float rounding, and `dot_ref` (the per-row oracle) within its own activation-scale rounding; the result
// does not depend on the thread count.
#include "mixq/kernels/packed_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/threads.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/weight_format.h"
#include "mixq/kernels/cpu_features.h"
#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/quant/quantize_model.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

// Packed and exact differ only in float rounding: one rounding per block scale product and accumulation
// (~cols/16 steps of 2^-24 relative), far below 1e-5 of sum |w a|. A wrong code, scale, offset,
// correction or row is O(1) of that sum.
constexpr double kExactTol = 1e-5;
// dot_ref differs further where ggml rounds: Q8_1's offset factor s is stored in F16 (2^-11 relative).
constexpr double kDotRefTol = 1e-3;

struct Case {
  const char* format;
  int64_t cols;
};

// 32-value blocks: 2560 = chunks of 1024 + 1024 + 512; k-quants: 2304 = 9 super-blocks (Q6_K's 16-value
// blocks make 3 chunks too); INT: groups that do not hold whole 32-blocks (44, 172 with g64, 33).
const Case kCases[] = {
    {"q8_0", 2560},        {"q4_0", 2560},       {"q4_1", 2560},      {"q5_0", 2560},    {"q5_1", 2560},
    {"iq4_nl", 2560},      {"q2_k", 2304},       {"q3_k", 2304},      {"q4_k", 2304},    {"q5_k", 2304},
    {"q6_k", 2304},        {"iq4_xs", 2304},     {"int4-g128", 2560}, {"int4-g128-sym", 2560},
    {"int4-g64", 172},     {"int3-g32", 300},    {"int2-g64", 1100},  {"int5-pc", 97}, {"int6-g44", 264},
    {"int7-g32-sym", 160}, {"int8-g128", 2560},  {"int8-pc-sym", 300}, {"int4-pt", 1030},
};

std::vector<float> Normal(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Activations with 1-in-50 outliers and one all-zero stretch (a zero activation block: scale 0).
std::vector<float> Activations(std::mt19937& rng, int64_t n_tokens, int64_t cols) {
  std::vector<float> x = Normal(rng, n_tokens * cols, 1.0f);
  for (size_t i = 0; i < x.size(); ++i) {
    if (rng() % 50 == 0) x[i] *= 30.0f;
  }
  if (cols >= 96) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
  return x;
}

struct Quantized {
  WeightFormat format;
  std::vector<std::byte> bytes;
  TensorView view;
};

Quantized QuantizeRandom(const char* name, int64_t rows, int64_t cols, std::mt19937& rng) {
  Quantized q;
  q.format = *ParseWeightFormat(name);
  const std::vector<float> w = Normal(rng, rows * cols, 0.05f);
  q.bytes.resize(*TensorBytes(q.format.dtype, {rows, cols}, q.format.group));
  QuantizeMatrix(q.format, w.data(), rows, cols, q.bytes.data());
  q.view = TensorView{"w", q.format.dtype, {rows, cols}, q.bytes.data(), q.bytes.size(), q.format.group};
  return q;
}

// One token's activations as values (scale * q, by the kernel's reference quantizer) and its native row.
struct TokenActivation {
  std::vector<std::byte> native;
  std::vector<float> values;
  std::vector<double> msum_excess;  // per block: the offset factor minus the block's sum of values
};

TokenActivation QuantizeToken(const QuantKernel& k, const float* x, int64_t cols, int64_t group) {
  TokenActivation a;
  a.native.resize(k.activation_bytes(cols, group));
  k.quantize_activation_ref(x, a.native.data(), cols, group);
  const int64_t blocks = k.packed->block_count(cols, group);
  const int width = k.packed->width;
  std::vector<int8_t> q(static_cast<size_t>(blocks * width));
  std::vector<float> scale(static_cast<size_t>(blocks));
  std::vector<int32_t> sum(static_cast<size_t>(blocks));
  std::vector<float> msum(static_cast<size_t>(blocks));
  k.packed->expand_activation(a.native.data(), cols, group, q.data(), scale.data(), sum.data(), msum.data());
  // Blocks follow the row, short INT blocks padded: walk them as the kernel's block_count lays them out.
  const int64_t g = (group == 0 || group > cols) ? cols : group;
  for (int64_t start = 0, b = 0; start < cols; start += g) {
    const int64_t len = std::min(g, cols - start);
    for (int64_t i = 0; i < len; i += width, ++b) {
      int32_t s = 0;
      for (int64_t j = 0; j < std::min<int64_t>(width, len - i); ++j) {
        a.values.push_back(scale[b] * q[b * width + j]);
        s += q[b * width + j];
      }
      EXPECT_EQ(s, sum[b]) << "block " << b;
      // The offset factor is the block's sum of values (Q8_1: rounded to F16, as ggml stores it).
      EXPECT_NEAR(msum[b], scale[b] * s, std::fabs(scale[b] * s) * 1e-3 + 1e-30) << "block " << b;
      a.msum_excess.push_back(static_cast<double>(msum[b]) - static_cast<double>(scale[b]) * s);
    }
  }
  EXPECT_EQ(static_cast<int64_t>(a.values.size()), cols);
  return a;
}

class PackedGemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(PackedGemmIsa()) == "none") GTEST_SKIP() << "no AVX2: the packed GEMM is not used on this CPU";
  }
};

TEST_F(PackedGemmTest, EveryFormatMatchesExactAndDotRef) {
  std::mt19937 rng(20261123);
  for (const Case& c : kCases) {
    for (const int64_t rows : {int64_t{9}, int64_t{37}}) {
      const int64_t n_tokens = rows == 9 ? 4 : 7;
      SCOPED_TRACE(fmt::format("{} {}x{} tokens={}", c.format, rows, c.cols, n_tokens));
      const Quantized w = QuantizeRandom(c.format, rows, c.cols, rng);
      const QuantKernel* k = FindQuantKernel(w.format.dtype);
      ASSERT_NE(k, nullptr);
      ASSERT_NE(k->packed, nullptr) << "every ggml and INT kernel has a packed format on an AVX2 CPU";
      ASSERT_TRUE(UsePackedGemm(*k, PackedGemmMinTokens()));
      ASSERT_FALSE(UsePackedGemm(*k, PackedGemmMinTokens() - 1));
      const std::vector<float> x = Activations(rng, n_tokens, c.cols);
      std::vector<float> y(static_cast<size_t>(rows * n_tokens)), y_ref(y.size());
      PackedGemm(*k, w.view, x.data(), n_tokens, y.data());
      PackedGemm(*k, w.view, x.data(), n_tokens, y_ref.data(), /*reference=*/true);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], y_ref[i]) << "output " << i;

      std::vector<float> wf(static_cast<size_t>(c.cols));
      const int64_t blocks = k->packed->block_count(c.cols, w.format.group);
      std::vector<int8_t> codes(static_cast<size_t>(blocks * k->packed->width));
      std::vector<float> block_d(static_cast<size_t>(blocks)), block_m(static_cast<size_t>(blocks));
      for (int64_t t = 0; t < n_tokens; ++t) {
        const TokenActivation a = QuantizeToken(*k, x.data() + t * c.cols, c.cols, w.format.group);
        for (int64_t r = 0; r < rows; ++r) {
          TensorRowToFloat(w.view, r, wf.data());
          double exact = 0.0, scale = 0.0;
          for (int64_t i = 0; i < c.cols; ++i) {
            exact += static_cast<double>(wf[i]) * a.values[i];
            scale += std::fabs(static_cast<double>(wf[i]) * a.values[i]);
          }
          // Where the offset factor is not the exact block sum (Q8_1's F16 s), the kernel uses it as ggml does.
          k->packed->unpack_row(w.view.row(r), c.cols, w.format.group, codes.data(), block_d.data(), block_m.data());
          for (int64_t b = 0; b < blocks; ++b) exact += block_m[b] * a.msum_excess[static_cast<size_t>(b)];
          const float got = y[t * rows + r];
          ASSERT_NEAR(got, exact, kExactTol * scale + 1e-30) << "row " << r << " token " << t;
          const float dot = k->dot_ref(w.view.row(r), a.native.data(), c.cols, w.format.group);
          ASSERT_NEAR(got, dot, kDotRefTol * scale + 1e-30) << "row " << r << " token " << t;
        }
      }
    }
  }
}

TEST_F(PackedGemmTest, ResultDoesNotDependOnThreadCount) {
  std::mt19937 rng(7);
  const int64_t rows = 75, cols = 2304, n_tokens = 6;
  for (const char* format : {"q4_k", "q4_0", "int4-g128"}) {
    SCOPED_TRACE(format);
    const Quantized w = QuantizeRandom(format, rows, cols, rng);
    const QuantKernel& k = *FindQuantKernel(w.format.dtype);
    const std::vector<float> x = Activations(rng, n_tokens, cols);
    std::vector<float> y1(static_cast<size_t>(rows * n_tokens)), y2(y1.size());
    const int threads = ThreadCount();
    SetThreadCount(1);
    PackedGemm(k, w.view, x.data(), n_tokens, y1.data());
    SetThreadCount(2);
    PackedGemm(k, w.view, x.data(), n_tokens, y2.data());
    SetThreadCount(threads);
    EXPECT_EQ(y1, y2);
  }
}

// The AVX2 micro-kernel's int16 sums at their limits: every stored code at the extreme of its width and
// every activation code at +-127, so each `vpmaddubsw` pair and each int16 step sum is as large as the
// format's code_bits allow (8 bits: c = -128 and 127 through the sign trick). Any saturation or wrap
// shows against the closed form sum_j c a = width * c * a per block.
TEST(PackedGemmAvx2, IntegerSumsDoNotSaturateAtExtremeCodes) {
  if (!CpuHasAvx2()) GTEST_SKIP() << "no AVX2";
  using namespace packed_gemm;
  constexpr int64_t kBlocks = 3;
  for (const int width : {16, 32}) {
    for (int bits = 1; bits <= 8; ++bits) {
      const int bias = bits == 8 ? 128 : 0;
      const std::vector<int> codes = bits == 8 ? std::vector<int>{-128, 127} : std::vector<int>{(1 << bits) - 1};
      for (const int c : codes) {
        for (const int a : {127, -127}) {
          SCOPED_TRACE(fmt::format("width={} bits={} c={} a={}", width, bits, c, a));
          const size_t group_stride = PanelBlockBytes(width) * kBlocks;
          AlignedBuffer buffer(kMaxRowGroups * group_stride);  // the kernel's loads are aligned
          uint8_t* panel = buffer.as<uint8_t>();
          for (int g = 0; g < kMaxRowGroups; ++g) {
            for (int64_t b = 0; b < kBlocks; ++b) {
              uint8_t* block = panel + g * group_stride + b * PanelBlockBytes(width);
              std::fill(block, block + 8 * width, static_cast<uint8_t>(c + bias));
              auto* d = reinterpret_cast<float*>(block + 8 * width);
              std::fill(d, d + 8, 1.0f);
              std::fill(d + 8, d + 16, 0.0f);
            }
          }
          std::vector<int8_t> q(static_cast<size_t>(kBlocks * width), static_cast<int8_t>(a));
          std::vector<float> scale(kBlocks, 1.0f), msum(kBlocks, 0.0f);
          std::vector<int32_t> corr(kBlocks, -bias * a * width);
          PackedActivationRow acts[kMaxTokens];
          for (auto& row : acts) row = {q.data(), scale.data(), corr.data(), msum.data()};
          float got[kMaxTokens * kMaxRowGroups * kRowsPerGroup], want[kMaxTokens * kMaxRowGroups * kRowsPerGroup];
          const PackedGemmFormat format{width, false, bits, bias, nullptr, nullptr, nullptr};
          MicroKernelAvx2(panel, group_stride, kMaxRowGroups, acts, kMaxTokens, 0, kBlocks, format, got);
          MicroKernelRef(panel, group_stride, kMaxRowGroups, acts, kMaxTokens, 0, kBlocks, format, want);
          const float exact = static_cast<float>(kBlocks * width * c * a);
          for (size_t i = 0; i < std::size(got); ++i) {
            ASSERT_EQ(want[i], exact) << "reference, output " << i;
            ASSERT_EQ(got[i], exact) << "AVX2, output " << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace mixq
