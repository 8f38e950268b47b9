// The sparse FP16 correction of a dense-and-sparse weight matrix (salient weights): added to MatMul's
// dense result row block by row block, while those outputs are still in cache, not as a second pass.
#pragma once

#include <cstdint>

#include "mixq/tensor/tensor.h"

namespace mixq {

// y[t * y_stride + r] += sum over row r's entries k of value_k * x[t * cols + col_k], for r in [r0, r1)
// and t < n_tokens. Each row's sum is formed in float in entry order, then added once.
void AddSparseProducts(const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x, int64_t cols,
                       int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace mixq
