// Scalar reference matrix product: the oracle the SIMD kernels are tested against.
#include <vector>

#include "mixq/formats/convert.h"
#include "mixq/kernels/matmul.h"

namespace mixq {

void MatMulRef(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t rows = w.rows();
  const int64_t cols = w.cols();
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    TensorRowToFloat(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * cols;
      double sum = 0.0;
      for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(row[c]) * xt[c];
      y[t * rows + r] = static_cast<float>(sum);
    }
  }
}

}  // namespace mixq
