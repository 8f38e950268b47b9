// Matrix products on F32/F16/BF16 weights: a first portable version, parallel over rows.
// (Replaced by the Highway kernels; kept minimal so the engine runs end to end meanwhile.)
#include "mixq/kernels/matmul.h"

#include <vector>

#include "mixq/base/check.h"
#include "mixq/formats/convert.h"

namespace mixq {

bool HasMatMulKernel(DType dtype) { return HasFloatCodec(dtype); }

void MatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  MIXQ_CHECK(HasMatMulKernel(w.dtype));
  const int64_t rows = w.rows();
  const int64_t cols = w.cols();
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      RowToFloat(w.dtype, w.row(r), row.data(), cols);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* xt = x + t * cols;
        float sum = 0.0f;
        for (int64_t c = 0; c < cols; ++c) sum += row[c] * xt[c];
        y[t * rows + r] = sum;
      }
    }
  }
}

}  // namespace mixq
