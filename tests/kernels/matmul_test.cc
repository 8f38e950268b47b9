// MatMul (Highway GEMV/GEMM) against the scalar double-accumulating MatMulRef, on every compiled target.
#include "mixq/kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hwy/targets.h"
#include "mixq/base/error.h"
#include "mixq/base/threads.h"
#include "mixq/formats/convert.h"

namespace mixq {
namespace {

// |MatMul - MatMulRef| <= tolerance * sum_c |W[r,c] * x[t,c]| (+ a tiny absolute floor for all-zero
// rows). Both sides widen F16/BF16 exactly, on the same rounded weights, so the only difference is
// float accumulation (lane-wise partial sums, then a lane reduction) vs double: its worst case is about
// n * 2^-24 of that sum, its typical size sqrt(n) * 2^-24 of it (random signs); 1e-5 covers n = 4100
// with margin while any real bug (a dropped tail, a wrong row, a bad widening) is off by O(1).
constexpr double kTolF32 = 1e-5;
constexpr double kTolF16 = 1e-5;
constexpr double kTolBF16 = 1e-5;
// F16 and BF16 decode (one token) round the activations to F16 after a power-of-two scaling (matmul.cc,
// F16ActivationGemv): each x[c] moves by at most 2^-11 |x[c]| (round to nearest; none of these inputs
// falls below max|x| * 2^-29, where F16 turns subnormal), so the sum moves by at most 2^-11 * sum |W x|,
// plus the float accumulation above. A dropped scale or a wrong row is off by O(1).
constexpr double kTolF16Decode = 0x1p-11 + kTolF16;
constexpr double kAbsFloor = 1e-30;

double ToleranceFor(DType dtype, int64_t n_tokens) {
  if ((dtype == DType::kF16 || dtype == DType::kBF16) && n_tokens == 1) return kTolF16Decode;
  return dtype == DType::kF32 ? kTolF32 : dtype == DType::kF16 ? kTolF16 : kTolBF16;
}

struct Problem {
  Tensor w;
  std::vector<float> w_float;  // the stored (rounded) weights, widened: for the error scale
  std::vector<float> x;
};

// Random weights in [-2, 2) rounded to `dtype` (as a converter would store them), activations in [-2, 2)
// times `x_scale`.
Problem MakeProblem(DType dtype, int64_t rows, int64_t cols, int64_t n_tokens, uint32_t seed,
                    float x_scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  Problem p;
  p.w = Tensor::Zeros("w", dtype, {rows, cols});
  std::vector<float> raw(static_cast<size_t>(rows * cols));
  for (float& v : raw) v = uniform(rng);
  RowFromFloat(dtype, raw.data(), p.w.storage.data(), rows * cols);
  p.w_float.resize(raw.size());
  RowToFloat(dtype, p.w.storage.data(), p.w_float.data(), rows * cols);
  p.x.resize(static_cast<size_t>(n_tokens * cols));
  for (float& v : p.x) v = uniform(rng) * x_scale;
  return p;
}

// Runs MatMul on one problem and checks every output against MatMulRef.
void CheckProblem(DType dtype, const Problem& p, int64_t rows, int64_t cols, int64_t n_tokens) {
  std::vector<float> y(static_cast<size_t>(rows * n_tokens), std::nanf(""));
  std::vector<float> y_ref(y.size());
  MatMul(p.w.view(), p.x.data(), n_tokens, y.data());
  MatMulRef(p.w.view(), p.x.data(), n_tokens, y_ref.data());
  const double tolerance = ToleranceFor(dtype, n_tokens);
  int failures = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      double scale = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        scale += std::abs(static_cast<double>(p.w_float[r * cols + c]) * p.x[t * cols + c]);
      }
      const size_t i = static_cast<size_t>(t * rows + r);
      const double error = std::abs(static_cast<double>(y[i]) - y_ref[i]);
      if (!(error <= tolerance * scale + kAbsFloor) && ++failures <= 5) {
        ADD_FAILURE() << "y[t=" << t << ", r=" << r << "] = " << y[i] << ", reference " << y_ref[i]
                      << ", error " << error << " > " << tolerance << " * " << scale;
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

void CheckShape(DType dtype, int64_t rows, int64_t cols, int64_t n_tokens, uint32_t seed, float x_scale = 1.0f) {
  SCOPED_TRACE(fmt::format("{} rows={} cols={} n_tokens={} seed={} x_scale={} target={}", DTypeName(dtype),
                           rows, cols, n_tokens, seed, x_scale, MatMulTargetName()));
  CheckProblem(dtype, MakeProblem(dtype, rows, cols, n_tokens, seed, x_scale), rows, cols, n_tokens);
}

// Runs `body` once per Highway target this build compiled and this CPU supports (scalar/EMU128 and SSE4
// included), checking that MatMul really dispatches to it.
template <class Body>
void ForEachTarget(const Body& body) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_GE(targets.size(), 2u) << "expected at least a SIMD target and the portable fallback";
  for (const int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    ASSERT_STREQ(MatMulTargetName(), hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatMulTest, MatchesReferenceOnAllShapesAndTargets) {
  const DType dtype = GetParam();
  ForEachTarget([&] {
    uint32_t seed = 1;
    for (const int64_t rows : {1, 3, 17, 64}) {
      for (const int64_t cols : {1, 7, 33, 172, 256, 1000}) {
        for (const int64_t n_tokens : {1, 2, 3, 5, 16, 33}) CheckShape(dtype, rows, cols, n_tokens, seed++);
      }
    }
  });
}

// Decode above the parallel threshold: the threads' head ranges and the shrinking tail chunks of
// ParallelForStreaming (541 rows: 67 tiles of 8 and a short one) must cover every row exactly once.
TEST_P(MatMulTest, DecodeSplitAcrossThreadsCoversEveryRow) {
  const DType dtype = GetParam();
  ForEachTarget([&] {
    for (const int64_t rows : {541, 1000}) CheckShape(dtype, rows, 300, 1, 7);
  });
}

// Columns spanning several GEMM column blocks (1024 each) exercise the partial-sum accumulation into y.
TEST_P(MatMulTest, MatchesReferenceOnLongRows) {
  const DType dtype = GetParam();
  ForEachTarget([&] {
    CheckShape(dtype, 37, 4100, 1, 7);
    CheckShape(dtype, 37, 4100, 7, 8);
  });
}

// Activations far outside F16's range (spikes of 1e6 overflow F16 unless scaled first) and far below it
// (1e-30 would flush to zero): the F16 decode must stay within its bound on both, like every other path.
TEST_P(MatMulTest, ActivationsOfAnyMagnitude) {
  const DType dtype = GetParam();
  ForEachTarget([&] {
    for (const float x_scale : {1e6f, 3e4f, 1e-30f}) {
      for (const int64_t n_tokens : {1, 3}) CheckShape(dtype, 17, 300, n_tokens, 11, x_scale);
    }
    // One spike among ordinary activations, as LLaMA's down_proj inputs carry them.
    Problem p = MakeProblem(dtype, 9, 4100, 1, 12);
    p.x[1234] = 2.5e5f;
    SCOPED_TRACE("one spike");
    CheckProblem(dtype, p, 9, 4100, 1);
  });
}

// A NaN or infinite activation reaches every output, as a float dot product gives it.
TEST_P(MatMulTest, NonFiniteActivationsPropagate) {
  const DType dtype = GetParam();
  ForEachTarget([&] {
    for (const float bad : {std::nanf(""), INFINITY}) {
      Problem p = MakeProblem(dtype, 5, 300, 1, 13);
      p.x[299] = bad;  // in the scalar column tail on every target
      std::vector<float> y(5, 0.0f);
      MatMul(p.w.view(), p.x.data(), 1, y.data());
      for (const float v : y) EXPECT_FALSE(std::isfinite(v)) << "x holds " << bad << ", target " << MatMulTargetName();
      p.x[299] = 0.0f;
      p.x[16] = bad;  // in a vector step
      MatMul(p.w.view(), p.x.data(), 1, y.data());
      for (const float v : y) EXPECT_FALSE(std::isfinite(v)) << "x holds " << bad << ", target " << MatMulTargetName();
    }
  });
}

// Each output is computed by one thread in a fixed order, so the thread count must not change a bit.
TEST_P(MatMulTest, ResultDoesNotDependOnThreadCount) {
  const DType dtype = GetParam();
  const int previous = ThreadCount();
  for (const int64_t n_tokens : {1, 9}) {
    const Problem p = MakeProblem(dtype, 67, 300, n_tokens, 99);
    std::vector<float> y1(static_cast<size_t>(67 * n_tokens)), y2(y1.size());
    SetThreadCount(1);
    MatMul(p.w.view(), p.x.data(), n_tokens, y1.data());
    SetThreadCount(2);
    MatMul(p.w.view(), p.x.data(), n_tokens, y2.data());
    EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)), 0) << "n_tokens " << n_tokens;
  }
  SetThreadCount(previous);
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, MatMulTest, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(MatMulErrorTest, UnsupportedDTypeIsAnError) {
  // IQ2_XXS: a ggml type mixq reads the size of but has no kernel for.
  const Tensor w = Tensor::Zeros("blk.0.ffn_up.weight", DType::kIQ2_XXS, {4, 256});
  const std::vector<float> x(256, 1.0f);
  std::vector<float> y(4);
  EXPECT_FALSE(HasMatMulKernel(DType::kIQ2_XXS));
  EXPECT_TRUE(HasMatMulKernel(DType::kQ4_0));
  EXPECT_TRUE(HasMatMulKernel(DType::kInt3Sym));
  try {
    MatMul(w.view(), x.data(), 1, y.data());
    FAIL() << "expected mixq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mixq
