// The sparse FP16 correction of a dense-and-sparse weight matrix (salient weights): added to MatMul's
// dense result row block by row block, while those outputs are still in cache, not as a second pass.
#pragma once

#include <cstdint>

#include "mixq/tensor/tensor.h"

namespace mixq {

// y[t * y_stride + r] += sum over row r's entries k of value_k * x[t * cols + col_k], for r in [r0, r1)
// and t < n_tokens. Each row's sum is formed in float, then added once. On AVX2 CPUs eight entries at a
// time (F16C widening, a gather of x, FMA into two accumulators); the scalar path elsewhere.
void AddSparseProducts(const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x, int64_t cols,
                       int64_t n_tokens, float* y, int64_t y_stride);

// The scalar reference (entry order, float sums): the oracle of the AVX2 path.
void AddSparseProductsRef(const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x, int64_t cols,
                          int64_t n_tokens, float* y, int64_t y_stride);

// "AVX2" or "scalar": the path AddSparseProducts takes on this CPU.
const char* SparseDotIsa();

}  // namespace mixq
