// Sparse FP16 correction: a gather of the salient columns of x per row.
#include "mixq/kernels/sparse_dot.h"

#include <vector>

#include "mixq/formats/float16.h"

namespace mixq {

void AddSparseProducts(const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x, int64_t cols,
                       int64_t n_tokens, float* y, int64_t y_stride) {
  if (sparse.empty()) return;
  for (int64_t r = r0; r < r1; ++r) {
    const uint32_t begin = sparse.row_ptr[r];
    const uint32_t end = sparse.row_ptr[r + 1];
    if (begin == end) continue;
    if (n_tokens == 1) {
      float sum = 0.0f;
      for (uint32_t k = begin; k < end; ++k) sum += F16ToF32(sparse.values[k]) * x[sparse.cols[k]];
      y[r] += sum;
      continue;
    }
    // Prefill: the row's values are widened once and reused by every token.
    thread_local std::vector<float> values;
    values.resize(end - begin);
    for (uint32_t k = begin; k < end; ++k) values[k - begin] = F16ToF32(sparse.values[k]);
    const uint16_t* row_cols = sparse.cols + begin;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * cols;
      float sum = 0.0f;
      for (uint32_t k = 0; k < end - begin; ++k) sum += values[k] * xt[row_cols[k]];
      y[t * y_stride + r] += sum;
    }
  }
}

}  // namespace mixq
