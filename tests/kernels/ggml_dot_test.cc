// ggml dot-product kernels: scalar references against the exact sum of dequantized products, every SIMD
// level this CPU has (AVX2, AVX-512 VNNI, each forced in turn) against the references, activation
// quantizers bit for bit, and MatMulQuantized end to end.
#include "mixq/kernels/ggml_dot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_blocks.h"
#include "mixq/formats/ggml_dequant.h"
#include "mixq/kernels/cpu_features.h"
#include "mixq/kernels/ggml_dot_internal.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/packed_gemm.h"
#include "kernels/interleaved_check.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

using namespace ggml;

// |dot - exact| <= kDotTol * sum_i |W_i A_i|: every kernel sums integers exactly inside a block and
// rounds only when it scales and accumulates blocks in float (one rounding of 2^-24 per block and per
// accumulation step, ~n/32 steps), so 1e-5 covers 11008-long rows with margin; a wrong code, scale, bit
// or block is off by O(1) of that sum.
constexpr double kDotTol = 1e-5;
// The Q8 activation codes round x / d to an integer, so each activation is off by at most d / 2, plus
// |q| * (d - F16(d)) <= 127 * 2^-11 * d for the F16-stored Q8_0/Q8_1 scales: 0.57 d, taken as 0.6 d.
constexpr double kActivationErrorPerScale = 0.6;
// Relative RMS error of a GEMV with Q8-quantized uniform [-1, 1] activations vs float activations: the
// rounding noise is d / sqrt(12) = 1/(127 sqrt(12)) ~ 0.23% of the activation range (0.4% of its RMS).
constexpr double kMatMulRelRms = 0.02;

const DType kTypes[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,  DType::kQ5_1,  DType::kIQ4_NL,
                        DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_XS};

bool IsSuperBlock(DType dtype) { return Traits(dtype).block_size == kQK_K; }

std::vector<int64_t> RowLengths(DType dtype) {
  if (IsSuperBlock(dtype)) return {256, 768, 4096, 11008};
  return {32, 96, 4096, 11008};
}

float RandomScale(std::mt19937& rng) {
  // Rounded to F16 so that the stored value is what the generator meant (all in the normal range).
  return std::uniform_real_distribution<float>(1e-3f, 1e-1f)(rng);
}

void PutHalf(std::vector<uint8_t>& bytes, size_t offset, float value) {
  const uint16_t h = F32ToF16(value);
  std::memcpy(bytes.data() + offset, &h, sizeof h);
}

// Random weight blocks: random bytes for every code and sub-block scale (every bit pattern is a valid
// block), then sane F16 super-scales: d in [1e-3, 1e-1], Q4_1/Q5_1 offsets m in +-[1e-3, 1e-1].
std::vector<uint8_t> RandomWeights(DType dtype, int64_t n, std::mt19937& rng) {
  const size_t block_bytes = Traits(dtype).block_bytes;
  const int64_t n_blocks = n / Traits(dtype).block_size;
  std::vector<uint8_t> bytes(block_bytes * static_cast<size_t>(n_blocks));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  for (int64_t i = 0; i < n_blocks; ++i) {
    const size_t base = static_cast<size_t>(i) * block_bytes;
    const float sign = byte(rng) < 128 ? -1.0f : 1.0f;
    switch (dtype) {
      case DType::kQ4_0: case DType::kQ5_0: case DType::kQ8_0: case DType::kIQ4_NL: case DType::kIQ4_XS:
        PutHalf(bytes, base + offsetof(BlockQ4_0, d), RandomScale(rng));
        break;
      case DType::kQ4_1: case DType::kQ5_1:
        PutHalf(bytes, base + offsetof(BlockQ4_1, d), RandomScale(rng));
        PutHalf(bytes, base + offsetof(BlockQ4_1, m), sign * RandomScale(rng));
        break;
      case DType::kQ2_K:
        PutHalf(bytes, base + offsetof(BlockQ2_K, d), RandomScale(rng));
        PutHalf(bytes, base + offsetof(BlockQ2_K, dmin), RandomScale(rng));
        break;
      case DType::kQ3_K: PutHalf(bytes, base + offsetof(BlockQ3_K, d), RandomScale(rng)); break;
      case DType::kQ4_K:
        PutHalf(bytes, base + offsetof(BlockQ4_K, d), RandomScale(rng));
        PutHalf(bytes, base + offsetof(BlockQ4_K, dmin), RandomScale(rng));
        break;
      case DType::kQ5_K:
        PutHalf(bytes, base + offsetof(BlockQ5_K, d), RandomScale(rng));
        PutHalf(bytes, base + offsetof(BlockQ5_K, dmin), RandomScale(rng));
        break;
      case DType::kQ6_K: PutHalf(bytes, base + offsetof(BlockQ6_K, d), RandomScale(rng)); break;
      default: ADD_FAILURE() << "no generator for " << DTypeName(dtype);
    }
  }
  return bytes;
}

// Activations: uniform [-1, 1], one value in 64 an outlier up to +-20, and (rows of 3+ blocks) one
// all-zero block, which takes the quantizers' d = 0 path.
std::vector<float> RandomActivations(int64_t n, int64_t block, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = uniform(rng) * (rng() % 64 == 0 ? 20.0f : 1.0f);
  if (n >= 3 * block) std::fill(x.begin() + block, x.begin() + 2 * block, 0.0f);
  return x;
}

// The activations as the dot kernels see them: d * q per element, and for Q8_1 the per-block value
// m * (s - d * sum q) by which ggml's m * s term differs from the exact sum (s is F16-rounded).
std::vector<float> DequantizeActivations(DType act_type, const std::vector<uint8_t>& act, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  if (act_type != DType::kQ8_1) {
    DequantizeRow(act_type, act.data(), out.data(), n);
    return out;
  }
  for (int64_t i = 0; i < n / kQK; ++i) {
    BlockQ8_1 b;
    std::memcpy(&b, act.data() + i * sizeof b, sizeof b);
    for (int j = 0; j < kQK; ++j) out[i * kQK + j] = F16ToF32(b.d) * static_cast<float>(b.qs[j]);
  }
  return out;
}

// sum over Q4_1/Q5_1 blocks of m_b * (s_b - d_b * sum_j q_bj): ggml's offset term minus its exact value.
double OffsetCorrection(DType dtype, const uint8_t* w, const std::vector<uint8_t>& act, int64_t n) {
  if (dtype != DType::kQ4_1 && dtype != DType::kQ5_1) return 0.0;
  double correction = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint16_t m;
    std::memcpy(&m, w + i * Traits(dtype).block_bytes + offsetof(BlockQ4_1, m), sizeof m);
    BlockQ8_1 b;
    std::memcpy(&b, act.data() + i * sizeof b, sizeof b);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += b.qs[j];
    correction += static_cast<double>(F16ToF32(m)) *
                  (static_cast<double>(F16ToF32(b.s)) - static_cast<double>(F16ToF32(b.d)) * sum);
  }
  return correction;
}

struct Exact {
  double value = 0.0;  // sum_i W_i * A_i (+ the Q8_1 offset correction), in double
  double scale = 0.0;  // sum_i |W_i * A_i|: the error scale
};

Exact ExactDot(DType dtype, const uint8_t* w, const std::vector<uint8_t>& act, int64_t n) {
  std::vector<float> wf(static_cast<size_t>(n));
  DequantizeRow(dtype, w, wf.data(), n);
  const std::vector<float> af = DequantizeActivations(GgmlActivationType(dtype), act, n);
  Exact e;
  for (int64_t i = 0; i < n; ++i) {
    const double p = static_cast<double>(wf[i]) * static_cast<double>(af[i]);
    e.value += p;
    e.scale += std::fabs(p);
  }
  e.value += OffsetCorrection(dtype, w, act, n);
  e.scale += std::fabs(OffsetCorrection(dtype, w, act, n));
  return e;
}

std::vector<uint8_t> Quantize(const QuantKernel& k, const std::vector<float>& x, bool ref) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> act(k.activation_bytes(n, 0));
  (ref ? k.quantize_activation_ref : k.quantize_activation)(x.data(), act.data(), n, 0);
  return act;
}

bool HasSimd(const QuantKernel& k) { return std::string(k.isa()) != "scalar"; }

TEST(CpuFeatures, IsaCapNames) {
  EXPECT_EQ(IsaCapFromString("scalar"), 0);
  EXPECT_EQ(IsaCapFromString("avx2"), 1);
  EXPECT_EQ(IsaCapFromString("avx512"), 2);
  EXPECT_EQ(IsaCapFromString("native"), 2);
  EXPECT_EQ(IsaCapFromString("AVX2"), -1);
  EXPECT_EQ(IsaCapFromString(""), -1);
}

// Run by CTest a second time with MIXQ_MAX_ISA=avx2 (CMakeLists.txt, test MaxIsaAvx2): the default tables
// then stop at AVX2 even on an AVX-512 CPU, and the tests in that run drive the AVX2 kernels end to end.
TEST(CpuFeatures, MaxIsaCapsTheDefaultTables) {
  const char* cap = std::getenv("MIXQ_MAX_ISA");
  if (cap == nullptr) GTEST_SKIP() << "MIXQ_MAX_ISA is not set in this run";
#if defined(__x86_64__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  const bool avx2 = false;
#endif
  const std::string level = cap;
  if (level == "scalar") {
    EXPECT_FALSE(CpuHasAvx2());
    EXPECT_STREQ(GgmlQuantKernel(DType::kQ4_0)->isa(), "scalar");
  } else if (level == "avx2") {
    EXPECT_FALSE(CpuHasAvx512Vnni());
    EXPECT_EQ(CpuHasAvx2(), avx2);
    EXPECT_STREQ(GgmlQuantKernel(DType::kQ4_0)->isa(), avx2 ? "AVX2" : "scalar");
  }
}

TEST(GgmlDot, TableCoversTheTypesAndNothingElse) {
  for (const DType dtype : kTypes) {
    const QuantKernel* k = GgmlQuantKernel(dtype);
    ASSERT_NE(k, nullptr) << DTypeName(dtype);
    EXPECT_EQ(k->weight_type, dtype);
    const DType act = GgmlActivationType(dtype);
    const int64_t n = IsSuperBlock(dtype) ? 512 : 64;
    EXPECT_EQ(k->activation_bytes(n, 0), *StorageBytes(act, n)) << DTypeName(dtype);
    EXPECT_EQ(act == DType::kQ8_K, IsSuperBlock(dtype)) << DTypeName(dtype);
  }
  EXPECT_EQ(GgmlActivationType(DType::kQ4_1), DType::kQ8_1);
  EXPECT_EQ(GgmlActivationType(DType::kQ5_1), DType::kQ8_1);
  EXPECT_EQ(sizeof(BlockQ8_1), Traits(DType::kQ8_1).block_bytes);
  for (const DType other : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_1, DType::kQ8_K, DType::kIQ2_XS,
                            DType::kInt4}) {
    EXPECT_EQ(GgmlQuantKernel(other), nullptr) << DTypeName(other);
  }
}

// Hand-checked semantics: Q8_0/Q8_1 round half away from zero (roundf); Q8_K rounds half to even with
// scale -127/max, so a block whose largest magnitude is +127 gets d = -1 and q = -x.
TEST(GgmlDot, ActivationQuantizersKnownValues) {
  std::vector<float> x(kQK_K, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  x[4] = -127.0f;  // ties with x[0] in magnitude: the first one (positive) sets the sign
  for (const bool ref : {true, false}) {
    SCOPED_TRACE(ref ? "reference" : "fast path");
    const auto q8_0 = Quantize(*GgmlQuantKernel(DType::kQ4_0), x, ref);
    BlockQ8_0 b0;
    std::memcpy(&b0, q8_0.data(), sizeof b0);
    EXPECT_EQ(F16ToF32(b0.d), 1.0f);
    EXPECT_EQ(b0.qs[0], 127);
    EXPECT_EQ(b0.qs[1], 3);
    EXPECT_EQ(b0.qs[2], -4);
    EXPECT_EQ(b0.qs[3], 1);
    EXPECT_EQ(b0.qs[4], -127);

    const auto q8_1 = Quantize(*GgmlQuantKernel(DType::kQ4_1), x, ref);
    BlockQ8_1 b1;
    std::memcpy(&b1, q8_1.data(), sizeof b1);
    EXPECT_EQ(F16ToF32(b1.s), 127.0f + 3 - 4 + 1 - 127);
    EXPECT_EQ(b1.qs[1], 3);

    const auto q8_k = Quantize(*GgmlQuantKernel(DType::kQ4_K), x, ref);
    BlockQ8_K bk;
    std::memcpy(&bk, q8_k.data(), sizeof bk);
    EXPECT_EQ(bk.d, -1.0f);
    EXPECT_EQ(bk.qs[0], -127);
    EXPECT_EQ(bk.qs[1], -2);
    EXPECT_EQ(bk.qs[2], 4);
    EXPECT_EQ(bk.qs[3], 0);
    EXPECT_EQ(bk.qs[4], 127);
    EXPECT_EQ(bk.bsums[0], -127 - 2 + 4 + 0 + 127);
    EXPECT_EQ(bk.bsums[1], 0);
  }
}

// The fast quantizers equal the references byte for byte (both use the same float operations; the
// AVX2 rounding is exact), and the reference codes are within d/2 of x / d with correct bsums.
TEST(GgmlDot, ActivationQuantizersMatchReference) {
  std::mt19937 rng(7);
  for (const DType representative : {DType::kQ4_0, DType::kQ4_1, DType::kQ4_K}) {
    const QuantKernel& k = *GgmlQuantKernel(representative);
    const DType act_type = GgmlActivationType(representative);
    for (const int64_t n : RowLengths(representative)) {
      SCOPED_TRACE(fmt::format("{} n={}", DTypeName(act_type), n));
      const std::vector<float> x = RandomActivations(n, Traits(act_type).block_size, rng);
      const auto ref = Quantize(k, x, true);
      if (HasSimd(k)) {
        EXPECT_EQ(Quantize(k, x, false), ref);
      }
      const std::vector<float> deq = DequantizeActivations(act_type, ref, n);
      const int64_t block = Traits(act_type).block_size;
      for (int64_t b = 0; b < n / block; ++b) {
        float amax = 0.0f;
        for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b * block + j]));
        const double bound = kActivationErrorPerScale * amax / 127.0 + 1e-30;
        for (int64_t j = 0; j < block; ++j) {
          ASSERT_LE(std::fabs(deq[b * block + j] - x[b * block + j]), bound) << "element " << b * block + j;
        }
        if (act_type == DType::kQ8_K) {
          BlockQ8_K blk;
          std::memcpy(&blk, ref.data() + b * sizeof blk, sizeof blk);
          for (int g = 0; g < kQK_K / 16; ++g) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += blk.qs[16 * g + l];
            ASSERT_EQ(blk.bsums[g], sum);
          }
        }
      }
    }
  }
}

// Random-input dots of every type: the reference against the exact double sum, the fast path against
// the reference.
TEST(GgmlDot, DotMatchesExactAndReference) {
  int simd_checks = 0;
  for (const DType dtype : kTypes) {
    const QuantKernel& k = *GgmlQuantKernel(dtype);
    for (const int64_t n : RowLengths(dtype)) {
      for (uint32_t seed = 1; seed <= 3; ++seed) {
        SCOPED_TRACE(fmt::format("{} n={} seed={} isa={}", DTypeName(dtype), n, seed, k.isa()));
        std::mt19937 rng(seed * 1000 + static_cast<uint32_t>(n));
        const auto w = RandomWeights(dtype, n, rng);
        const auto x = RandomActivations(n, Traits(GgmlActivationType(dtype)).block_size, rng);
        const auto act = Quantize(k, x, true);
        const Exact exact = ExactDot(dtype, w.data(), act, n);
        const float ref = k.dot_ref(w.data(), act.data(), n, 0);
        EXPECT_NEAR(ref, exact.value, kDotTol * exact.scale + 1e-30);
        if (HasSimd(k)) {
          EXPECT_NEAR(k.dot(w.data(), act.data(), n, 0), ref, kDotTol * exact.scale + 1e-30);
          ++simd_checks;
        }
      }
    }
  }
  if (simd_checks == 0) GTEST_SKIP() << "no AVX2/FMA/F16C on this CPU: only the scalar references were checked";
}

// MatMulQuantized (OpenMP over rows; the one-token and the row-block paths, with `dot_rows` where the
// kernel has it: 37 rows = 16 + 16 + 5 per call, the 5 as 4 + 1 inside) with kernel `k` against (a) dot_ref on the same
// reference-quantized activations, exactly up to float accumulation, and (b) the float product with
// unquantized activations, within the activation rounding bound per output and kMatMulRelRms overall.
void CheckMatMulQuantized(const QuantKernel& k) {
  constexpr int64_t kRows = 37;
  {
    const DType dtype = k.weight_type;
    const DType act_type = GgmlActivationType(dtype);
    const int64_t block = Traits(act_type).block_size;
    const int64_t cols = IsSuperBlock(dtype) ? 1024 : 512;
    for (const int64_t n_tokens : {int64_t{1}, int64_t{5}}) {
      SCOPED_TRACE(fmt::format("{} {}x{} tokens={} isa={}", DTypeName(dtype), kRows, cols, n_tokens, k.isa()));
      std::mt19937 rng(static_cast<uint32_t>(dtype) * 31 + static_cast<uint32_t>(n_tokens));
      Tensor w = Tensor::Zeros("w", dtype, {kRows, cols});
      const auto bytes = RandomWeights(dtype, kRows * cols, rng);
      ASSERT_EQ(bytes.size(), w.storage.size());
      std::memcpy(w.storage.data(), bytes.data(), bytes.size());
      const TensorView view = w.view();
      std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
      std::vector<float> x(static_cast<size_t>(n_tokens * cols));
      for (float& v : x) v = uniform(rng);
      std::vector<float> y(static_cast<size_t>(n_tokens * kRows));
      MatMulQuantized(k, view, x.data(), n_tokens, y.data());

      std::vector<float> wf(static_cast<size_t>(cols));
      double err2 = 0.0, ref2 = 0.0;
      for (int64_t t = 0; t < n_tokens; ++t) {
        const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
        const auto act = Quantize(k, xt, true);
        for (int64_t r = 0; r < kRows; ++r) {
          const auto* row = reinterpret_cast<const uint8_t*>(view.row(r));
          const Exact exact = ExactDot(dtype, row, act, cols);
          const float got = y[t * kRows + r];
          ASSERT_NEAR(got, k.dot_ref(row, act.data(), cols, 0), kDotTol * exact.scale + 1e-30) << "row " << r;
          DequantizeRow(dtype, row, wf.data(), cols);
          double exact_float = 0.0, bound = kDotTol * exact.scale + std::fabs(OffsetCorrection(dtype, row, act, cols));
          for (int64_t b = 0; b < cols / block; ++b) {
            float amax = 0.0f;
            for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(xt[b * block + j]));
            for (int64_t j = 0; j < block; ++j) {
              const int64_t c = b * block + j;
              exact_float += static_cast<double>(wf[c]) * xt[c];
              bound += std::fabs(wf[c]) * kActivationErrorPerScale * amax / 127.0;
            }
          }
          ASSERT_NEAR(got, exact_float, bound) << "row " << r;
          err2 += (got - exact_float) * (got - exact_float);
          ref2 += exact_float * exact_float;
        }
      }
      EXPECT_LE(std::sqrt(err2 / ref2), kMatMulRelRms);
    }
  }
}

TEST(GgmlDot, MatMulQuantizedMatchesReferences) {
  for (const DType dtype : kTypes) CheckMatMulQuantized(*GgmlQuantKernel(dtype));
}


// Every instruction-set level this CPU has, forced in turn, so the AVX2 kernels stay tested on a CPU
// that would pick AVX-512, and the scalar table (which has no dot_rows) drives MatMulQuantized too.
using ggml_dot::Isa;

std::string IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "Scalar";
    case Isa::kAvx2: return "Avx2";
    case Isa::kAvx512: return "Avx512Vnni";
  }
  return "?";
}

class GgmlDotIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (ggml_dot::GgmlQuantKernelAt(DType::kQ4_0, GetParam()) == nullptr) {
      GTEST_SKIP() << "this CPU lacks the " << IsaName(GetParam()) << " level";
    }
  }
  const QuantKernel& Kernel(DType dtype) const { return *ggml_dot::GgmlQuantKernelAt(dtype, GetParam()); }
};

bool Is32WeightType(DType dtype) { return !IsSuperBlock(dtype); }

TEST_P(GgmlDotIsa, TableNamesTheLevel) {
  for (const DType dtype : kTypes) {
    const QuantKernel& k = Kernel(dtype);
    EXPECT_EQ(k.weight_type, dtype);
    const std::string isa = k.isa();
    switch (GetParam()) {
      case Isa::kScalar:
        EXPECT_EQ(isa, "scalar");
        EXPECT_EQ(k.dot, k.dot_ref);
        break;
      case Isa::kAvx2: EXPECT_EQ(isa, "AVX2"); break;
      case Isa::kAvx512: EXPECT_EQ(isa, Is32WeightType(dtype) ? "AVX512-VNNI" : "AVX2") << DTypeName(dtype); break;
    }
    // The 32-weight types tile rows and tokens; Q4_K and Q6_K share their unpacked super-blocks among tokens.
    const bool has_rows = Is32WeightType(dtype) || dtype == DType::kQ4_K || dtype == DType::kQ6_K;
    EXPECT_EQ(k.dot_rows != nullptr, GetParam() != Isa::kScalar && has_rows) << DTypeName(dtype);
    // Interleaved decode rows: every type at both SIMD levels (on AVX-512 they beat the one-row walk).
    EXPECT_EQ(k.interleaved != nullptr, GetParam() != Isa::kScalar) << DTypeName(dtype);
  }
  // The default table is the best level this CPU has.
  const Isa best = CpuHasAvx512Vnni() ? Isa::kAvx512 : CpuHasAvx2() ? Isa::kAvx2 : Isa::kScalar;
  EXPECT_EQ(GgmlQuantKernel(DType::kQ4_0), ggml_dot::GgmlQuantKernelAt(DType::kQ4_0, best));
}

TEST_P(GgmlDotIsa, QuantizersMatchReference) {
  std::mt19937 rng(11);
  for (const DType representative : {DType::kQ4_0, DType::kQ4_1, DType::kQ4_K}) {
    const QuantKernel& k = Kernel(representative);
    for (const int64_t n : RowLengths(representative)) {
      const std::vector<float> x = RandomActivations(n, Traits(GgmlActivationType(representative)).block_size, rng);
      EXPECT_EQ(Quantize(k, x, false), Quantize(k, x, true)) << DTypeName(representative) << " n=" << n;
    }
  }
}

// `dot` and `dot_rows` against `dot_ref` on fresh random rows and activations: row lengths of 1, 3, 128
// and 344 blocks (and 1..43 super-blocks); dot_rows with 1..17 rows (row tiles and their tails) x 1..6
// tokens (4x4 and 2x2 tiles, leftover tokens and single tokens); rows 64 bytes and activation rows 32 bytes apart
// beyond their length, and outputs in rows of n_rows + 3, so that every stride argument is checked.
TEST_P(GgmlDotIsa, DotAndDotRowsMatchReference) {
  constexpr int64_t kMaxRows = 17;
  constexpr int64_t kMaxTokens = 6;
  constexpr size_t kPad = 64, kActPad = 32;
  constexpr float kUnwritten = 12345.0f;
  for (const DType dtype : kTypes) {
    const QuantKernel& k = Kernel(dtype);
    const int64_t block = Traits(GgmlActivationType(dtype)).block_size;
    for (const int64_t n : RowLengths(dtype)) {
      SCOPED_TRACE(fmt::format("{} n={} isa={}", DTypeName(dtype), n, k.isa()));
      std::mt19937 rng(static_cast<uint32_t>(n) * 7 + static_cast<uint32_t>(dtype));
      const size_t row_bytes = *StorageBytes(dtype, n);
      const size_t stride = row_bytes + kPad;
      std::vector<uint8_t> rows(stride * kMaxRows);
      for (int64_t r = 0; r < kMaxRows; ++r) {
        const auto w = RandomWeights(dtype, n, rng);
        std::memcpy(rows.data() + r * stride, w.data(), row_bytes);
      }
      const size_t act_bytes = k.activation_bytes(n, 0);
      const size_t act_stride = act_bytes + kActPad;
      std::vector<uint8_t> acts(act_stride * kMaxTokens);
      std::vector<std::vector<float>> ref(kMaxTokens, std::vector<float>(kMaxRows));
      std::vector<std::vector<double>> tol(kMaxTokens, std::vector<double>(kMaxRows));
      for (int64_t t = 0; t < kMaxTokens; ++t) {
        const auto act = Quantize(k, RandomActivations(n, block, rng), true);
        std::memcpy(acts.data() + t * act_stride, act.data(), act_bytes);
        for (int64_t r = 0; r < kMaxRows; ++r) {
          const uint8_t* row = rows.data() + r * stride;
          ref[t][r] = k.dot_ref(row, act.data(), n, 0);
          tol[t][r] = kDotTol * ExactDot(dtype, row, act, n).scale + 1e-30;
          if (t < 2) {
            EXPECT_NEAR(k.dot(row, act.data(), n, 0), ref[t][r], tol[t][r]) << "dot, row " << r;
          }
        }
      }
      if (k.dot_rows == nullptr) continue;
      for (int64_t n_tokens = 1; n_tokens <= kMaxTokens; ++n_tokens) {
        for (int64_t n_rows = 1; n_rows <= kMaxRows; ++n_rows) {
          const int64_t out_stride = n_rows + 3;
          std::vector<float> out(static_cast<size_t>(out_stride * n_tokens), kUnwritten);
          k.dot_rows(rows.data(), stride, n_rows, acts.data(), act_stride, n_tokens, n, 0, out.data(), out_stride);
          for (int64_t t = 0; t < n_tokens; ++t) {
            for (int64_t r = 0; r < n_rows; ++r) {
              ASSERT_NEAR(out[t * out_stride + r], ref[t][r], tol[t][r])
                  << "dot_rows of " << n_rows << " rows x " << n_tokens << " tokens: row " << r << ", token " << t;
              if (dtype == DType::kQ4_K || dtype == DType::kQ6_K) {  // `dot`'s operations in its order: bit for bit
                ASSERT_EQ(out[t * out_stride + r], k.dot(rows.data() + r * stride, acts.data() + t * act_stride, n, 0))
                    << "K-quant dot_rows, row " << r << ", token " << t;
              }
            }
            for (int64_t r = n_rows; r < out_stride; ++r) {
              ASSERT_EQ(out[t * out_stride + r], kUnwritten) << "dot_rows wrote past its rows, token " << t;
            }
          }
        }
      }
    }
  }
}

TEST_P(GgmlDotIsa, MatMulQuantizedMatchesReferences) {
  for (const DType dtype : kTypes) CheckMatMulQuantized(Kernel(dtype));
}

// Interleaved rows (QuantKernel::interleaved): groups of 8 rows (64 bytes apart beyond their length)
// interleave and extract back to the same bytes, unpack for the packed GEMM as the rows do, and dot_groups over 1..3 groups x 1..3 tokens equals
// dot_ref of each row within the kernels' tolerance, writing only its own outputs.
TEST_P(GgmlDotIsa, InterleavedRowsMatchReference) {
  constexpr int kRows = InterleavedRows::kRows;
  constexpr int64_t kGroups = 3, kMaxTokens = 3;
  constexpr size_t kPad = 64;
  constexpr float kUnwritten = 12345.0f;
  int checked = 0;
  for (const DType dtype : kTypes) {
    const QuantKernel& k = Kernel(dtype);
    if (k.interleaved == nullptr) continue;
    const InterleavedRows& il = *k.interleaved;
    const int64_t block = Traits(GgmlActivationType(dtype)).block_size;
    for (const int64_t n : RowLengths(dtype)) {
      SCOPED_TRACE(fmt::format("{} n={} isa={}", DTypeName(dtype), n, k.isa()));
      std::mt19937 rng(static_cast<uint32_t>(n) * 13 + static_cast<uint32_t>(dtype));
      const size_t row_bytes = *StorageBytes(dtype, n);
      const size_t stride = row_bytes + kPad;
      const size_t group_bytes = il.group_bytes(n, 0);
      ASSERT_GE(group_bytes, kRows * row_bytes);
      std::vector<uint8_t> rows(stride * kRows * kGroups);
      for (int64_t r = 0; r < kRows * kGroups; ++r) {
        const auto w = RandomWeights(dtype, n, rng);
        std::memcpy(rows.data() + r * stride, w.data(), row_bytes);
      }
      std::vector<uint8_t> groups(group_bytes * kGroups);
      for (int64_t g = 0; g < kGroups; ++g) {
        il.interleave(rows.data() + g * kRows * stride, stride, n, 0, groups.data() + g * group_bytes);
      }
      std::vector<uint8_t> extracted(row_bytes);
      for (int64_t r = 0; r < kRows * kGroups; ++r) {
        il.extract_row(groups.data() + (r / kRows) * group_bytes, static_cast<int>(r % kRows), n, 0, extracted.data());
        ASSERT_EQ(std::memcmp(extracted.data(), rows.data() + r * stride, row_bytes), 0) << "row " << r;
      }
      testing::ExpectUnpackRowsEqualsUnpackRow(k, groups.data(), group_bytes, kGroups, rows.data(), stride, n, 0);
      testing::ExpectUnpackPanelEqualsUnpackRow(k, groups.data(), group_bytes, kGroups, rows.data(), stride, n, 0);
      const size_t act_bytes = k.activation_bytes(n, 0);
      std::vector<uint8_t> acts(act_bytes * kMaxTokens);
      for (int64_t t = 0; t < kMaxTokens; ++t) {
        const auto act = Quantize(k, RandomActivations(n, block, rng), true);
        std::memcpy(acts.data() + t * act_bytes, act.data(), act_bytes);
      }
      for (int64_t n_groups = 1; n_groups <= kGroups; ++n_groups) {
        for (int64_t n_tokens = 1; n_tokens <= kMaxTokens; ++n_tokens) {
          const int64_t out_stride = kRows * n_groups + 5;
          std::vector<float> out(static_cast<size_t>(out_stride * n_tokens), kUnwritten);
          il.dot_groups(groups.data(), group_bytes, n_groups, acts.data(), act_bytes, n_tokens, n, 0, out.data(),
                        out_stride);
          for (int64_t t = 0; t < n_tokens; ++t) {
            const std::vector<uint8_t> act(acts.begin() + t * act_bytes, acts.begin() + (t + 1) * act_bytes);
            for (int64_t r = 0; r < kRows * n_groups; ++r) {
              const uint8_t* row = rows.data() + r * stride;
              ASSERT_NEAR(out[t * out_stride + r], k.dot_ref(row, act.data(), n, 0),
                          kDotTol * ExactDot(dtype, row, act, n).scale + 1e-30)
                  << n_groups << " groups x " << n_tokens << " tokens: row " << r << ", token " << t;
            }
            for (int64_t r = kRows * n_groups; r < out_stride; ++r) {
              ASSERT_EQ(out[t * out_stride + r], kUnwritten) << "dot_groups wrote past its rows, token " << t;
            }
          }
        }
      }
      ++checked;
    }
  }
  if (checked == 0) GTEST_SKIP() << "no type has interleaved rows at the " << IsaName(GetParam()) << " level";
}

// MatMulQuantized on a view with interleaved rows reads only them: the stored rows it is given are
// garbage (every byte 0x5a), and the outputs still equal the kernel's own on the real rows, within the
// dot tolerance for the decode kernels and bit for bit through the packed GEMM (the same codes).
// Both views carry the same sparse FP16 part (two weights of 1.0 per row), so a row whose salient part the
// interleaved walk adds twice or skips (a tail chunk) is off by about |x|, far beyond the tolerance.
struct SalientPart {
  std::vector<uint32_t> row_ptr;
  std::vector<uint16_t> cols, values;
  SalientPart(int64_t rows, int64_t n) {
    row_ptr.push_back(0);
    for (int64_t r = 0; r < rows; ++r) {
      cols.push_back(static_cast<uint16_t>((7 * r) % (n / 2)));
      cols.push_back(static_cast<uint16_t>(n / 2 + (13 * r) % (n / 2)));
      values.insert(values.end(), 2, F32ToF16(1.0f));
      row_ptr.push_back(static_cast<uint32_t>(cols.size()));
    }
  }
  SparseRowsView view() const {
    return {row_ptr.data(), cols.data(), values.data(), static_cast<int64_t>(values.size())};
  }
};

TEST_P(GgmlDotIsa, MatMulQuantizedReadsInterleavedRows) {
  constexpr int kRows = InterleavedRows::kRows;
  int checked = 0;
  for (const DType dtype : kTypes) {
    const QuantKernel& k = Kernel(dtype);
    if (k.interleaved == nullptr) continue;
    // 5 groups: one thread; 67 groups: above the parallel threshold, so the threads' heads and the tail
    // chunks (the last one short) are walked, with and without a salient part.
    for (const int64_t rows : {int64_t{5} * kRows, int64_t{67} * kRows}) {
      for (const bool salient : {false, true}) {
        const int64_t cols = IsSuperBlock(dtype) ? 1024 : 512;
        std::mt19937 rng(static_cast<uint32_t>(dtype) + 99);
        Tensor w = Tensor::Zeros("w", dtype, {rows, cols});
        const auto bytes = RandomWeights(dtype, rows * cols, rng);
        std::memcpy(w.storage.data(), bytes.data(), bytes.size());
        const SalientPart part(rows, cols);
        TensorView plain = w.view();
        if (salient) plain.salient = part.view();
        const size_t group_bytes = k.interleaved->group_bytes(cols, 0);
        std::vector<uint8_t> groups(group_bytes * static_cast<size_t>(rows / kRows));
        for (int64_t g = 0; g < rows / kRows; ++g) {
          k.interleaved->interleave(plain.row(g * kRows), plain.row_bytes(), cols, 0, groups.data() + g * group_bytes);
        }
        Tensor garbage = Tensor::Zeros("garbage", dtype, {rows, cols});
        std::memset(garbage.storage.data(), 0x5a, garbage.storage.size());
        TensorView interleaved = garbage.view();
        interleaved.interleaved = reinterpret_cast<const std::byte*>(groups.data());
        interleaved.salient = plain.salient;
        for (const int64_t n_tokens : {int64_t{1}, int64_t{3}, int64_t{64}}) {
          SCOPED_TRACE(fmt::format("{} rows={} salient={} tokens={} isa={}", DTypeName(dtype), rows, salient, n_tokens,
                                   k.isa()));
          std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
          std::vector<float> x(static_cast<size_t>(n_tokens * cols));
          for (float& v : x) v = uniform(rng);
          std::vector<float> want(static_cast<size_t>(n_tokens * rows)), got(want.size());
          MatMulQuantized(k, plain, x.data(), n_tokens, want.data());
          MatMulQuantized(k, interleaved, x.data(), n_tokens, got.data());
          const bool packed = UsePackedGemm(k, n_tokens);
          for (int64_t t = 0; t < n_tokens; ++t) {
            const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
            const auto act = Quantize(k, xt, true);
            for (int64_t r = 0; r < rows; ++r) {
              const size_t i = static_cast<size_t>(t * rows + r);
              if (packed) {
                ASSERT_EQ(got[i], want[i]) << "packed GEMM, row " << r << ", token " << t;
              } else {
                const auto* row = reinterpret_cast<const uint8_t*>(plain.row(r));
                ASSERT_NEAR(got[i], want[i], 2 * kDotTol * ExactDot(dtype, row, act, cols).scale + 1e-30)
                    << "row " << r << ", token " << t;
              }
            }
          }
        }
      }
    }
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no type has interleaved rows at the " << IsaName(GetParam()) << " level";
}

// MatMulSameInput (Q, K and V; gate and up) walks the interleaved rows of several matrices as one range:
// each output must equal what MatMul gives for its matrix alone, bit for bit (the same kernel per group),
// wherever the threads' ranges cross from one matrix into the next (67 groups in the middle: parallel
// heads and tail chunks), with a salient part on one matrix only; and where the matrices cannot share a
// walk (mixed types, or a batch the packed GEMM takes) it is one MatMul each.
TEST(GgmlDot, MatMulSameInputEqualsOneMatMulEach) {
  constexpr int kRows = InterleavedRows::kRows;
  struct Matrix {
    Tensor stored;
    std::vector<uint8_t> groups;
    SalientPart salient;
    TensorView view;
  };
  const auto make = [](DType dtype, int64_t rows, int64_t cols, bool salient, uint32_t seed) {
    auto m = std::make_unique<Matrix>(Matrix{Tensor::Zeros("w", dtype, {rows, cols}), {}, SalientPart(rows, cols), {}});
    std::mt19937 rng(seed);
    const auto bytes = RandomWeights(dtype, rows * cols, rng);
    std::memcpy(m->stored.storage.data(), bytes.data(), bytes.size());
    m->view = m->stored.view();
    if (salient) m->view.salient = m->salient.view();
    const QuantKernel* k = FindQuantKernel(dtype);
    if (k->interleaved != nullptr) {
      const size_t group_bytes = k->interleaved->group_bytes(cols, 0);
      m->groups.resize(group_bytes * static_cast<size_t>(rows / kRows));
      for (int64_t g = 0; g < rows / kRows; ++g) {
        k->interleaved->interleave(m->view.row(g * kRows), m->view.row_bytes(), cols, 0,
                                   m->groups.data() + g * group_bytes);
      }
      m->view.interleaved = reinterpret_cast<const std::byte*>(m->groups.data());
    }
    return m;
  };
  constexpr int64_t kCols = 1024;
  const std::vector<std::vector<DType>> lists = {
      {DType::kQ4_K, DType::kQ4_K, DType::kQ4_K}, {DType::kQ4_0, DType::kQ4_0}, {DType::kQ6_K, DType::kQ4_K}};
  for (const auto& types : lists) {
    const int64_t row_counts[] = {5 * kRows, 67 * kRows, 3 * kRows};
    std::vector<std::unique_ptr<Matrix>> matrices;
    for (size_t i = 0; i < types.size(); ++i) {
      matrices.push_back(make(types[i], row_counts[i], kCols, i == 1, static_cast<uint32_t>(17 + i)));
    }
    for (const int64_t n_tokens : {int64_t{1}, int64_t{3}, int64_t{64}}) {
      SCOPED_TRACE(fmt::format("{} ({} matrices), {} tokens", DTypeName(types[0]), types.size(), n_tokens));
      std::mt19937 rng(5);
      std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
      std::vector<float> x(static_cast<size_t>(n_tokens * kCols));
      for (float& v : x) v = uniform(rng);
      std::vector<std::vector<float>> want, got;
      std::vector<MatMulProduct> products;
      for (const auto& m : matrices) {
        const size_t size = static_cast<size_t>(n_tokens * m->view.rows());
        want.emplace_back(size);
        got.emplace_back(size, std::nanf(""));
        MatMul(m->view, x.data(), n_tokens, want.back().data());
      }
      for (size_t i = 0; i < matrices.size(); ++i) products.push_back({&matrices[i]->view, got[i].data()});
      MatMulSameInput(products, x.data(), n_tokens);
      for (size_t i = 0; i < matrices.size(); ++i) {
        for (size_t j = 0; j < want[i].size(); ++j) {
          ASSERT_EQ(got[i][j], want[i][j]) << "matrix " << i << ", output " << j;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, GgmlDotIsa, ::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                         [](const ::testing::TestParamInfo<Isa>& info) { return IsaName(info.param); });

}  // namespace
}  // namespace mixq
