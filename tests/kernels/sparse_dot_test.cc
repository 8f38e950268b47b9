// The sparse FP16 correction kernel: its AVX2 path against the scalar reference on rows of every length
// around the 8- and 16-entry steps, and MatMul's threaded walk (each thread adding its own rows' sparse
// part) against the single-threaded reference.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "mixq/formats/float16.h"
#include "mixq/formats/weight_format.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/sparse_dot.h"
#include "mixq/quant/quantize_model.h"
#include "mixq/tensor/sparse_rows.h"

namespace mixq {
namespace {

// Row r holds lengths[r % lengths.size()] entries at random sorted columns, random FP16 values.
SparseRows RandomSparse(int64_t rows, int64_t cols, const std::vector<int64_t>& lengths, std::mt19937& rng) {
  SparseRows s;
  s.row_ptr.push_back(0);
  std::vector<uint16_t> order(static_cast<size_t>(cols));
  std::normal_distribution<float> normal;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) order[static_cast<size_t>(c)] = static_cast<uint16_t>(c);
    std::shuffle(order.begin(), order.end(), rng);
    const int64_t n = std::min(cols, lengths[static_cast<size_t>(r) % lengths.size()]);
    std::sort(order.begin(), order.begin() + n);
    for (int64_t k = 0; k < n; ++k) {
      s.cols.push_back(order[static_cast<size_t>(k)]);
      s.values.push_back(F32ToF16(normal(rng)));
    }
    s.row_ptr.push_back(static_cast<uint32_t>(s.cols.size()));
  }
  return s;
}

TEST(SparseDot, FastPathMatchesTheScalarReference) {
  RecordProperty("isa", SparseDotIsa());
  std::mt19937 rng(11);
  const int64_t rows = 40, cols = 1000, tokens = 3;
  std::vector<int64_t> lengths;
  for (int64_t n = 0; n <= 40; ++n) lengths.push_back(n);  // 0, the 8/16 steps and every tail
  const SparseRows s = RandomSparse(rows, cols, lengths, rng);
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  std::vector<float> y(static_cast<size_t>(tokens * rows), 1.0f), ref = y;
  AddSparseProducts(s.view(), 0, rows, x.data(), cols, tokens, y.data(), rows);
  AddSparseProductsRef(s.view(), 0, rows, x.data(), cols, tokens, ref.data(), rows);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      // Only the summation order differs: bound by n ulps of the sum of |terms|.
      double magnitude = 0.0;
      for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) {
        magnitude += std::fabs(F16ToF32(s.values[k]) * x[static_cast<size_t>(t * cols + s.cols[k])]);
      }
      const double bound = 1e-6 * (1.0 + magnitude) * (1 + s.row_ptr[r + 1] - s.row_ptr[r]);
      ASSERT_NEAR(y[static_cast<size_t>(t * rows + r)], ref[static_cast<size_t>(t * rows + r)], bound)
          << "row " << r << " token " << t;
    }
  }
  // Rows outside [r0, r1) are untouched.
  std::vector<float> part(static_cast<size_t>(rows), 1.0f);
  AddSparseProducts(s.view(), 10, 20, x.data(), cols, 1, part.data(), rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (r < 10 || r >= 20) {
      EXPECT_EQ(part[static_cast<size_t>(r)], 1.0f) << r;
    }
  }
}

// Large enough for MatMul's threads (each adds the sparse rows of its own blocks), rows not a whole number
// of blocks, decode and prefill; int4-g32 weights so the quantized walk runs. The dense part is the same
// computation with and without the sparse part, so their difference is the sparse products alone.
TEST(SparseDot, ThreadedMatMulAddsEveryRowOnce) {
  std::mt19937 rng(5);
  const int64_t rows = 1001, cols = 256;
  const WeightFormat format = *ParseWeightFormat("int4-g32");
  std::vector<float> dense(static_cast<size_t>(rows * cols));
  std::normal_distribution<float> normal;
  for (float& v : dense) v = normal(rng);
  std::vector<std::byte> packed(*TensorBytes(format.dtype, {rows, cols}, format.group));
  QuantizeMatrix(format, dense.data(), rows, cols, packed.data());
  const SparseRows s = RandomSparse(rows, cols, {0, 3, 17}, rng);
  TensorView w{"w", format.dtype, {rows, cols}, packed.data(), packed.size(), format.group};
  w.salient = s.view();
  for (const int64_t tokens : {1, 7}) {
    std::vector<float> x(static_cast<size_t>(tokens * cols));
    for (float& v : x) v = normal(rng);
    std::vector<float> y(static_cast<size_t>(tokens * rows)), dense_only(y.size()), sparse_only(y.size(), 0.0f);
    MatMul(w, x.data(), tokens, y.data());
    TensorView no_sparse = w;
    no_sparse.salient = {};
    MatMul(no_sparse, x.data(), tokens, dense_only.data());
    AddSparseProductsRef(s.view(), 0, rows, x.data(), cols, tokens, sparse_only.data(), rows);
    for (size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i] - dense_only[i], sparse_only[i], 1e-4 * (1.0 + std::fabs(dense_only[i]))) << i;
    }
  }
}

}  // namespace
}  // namespace mixq
