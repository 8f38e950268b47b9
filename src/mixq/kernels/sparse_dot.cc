// Sparse FP16 correction: per row, a gather of the salient columns of x against the widened FP16 values.
// The AVX2 function carries its own target attribute (no global -m flags) and runs only when the CPU has
// AVX2, FMA and F16C.
#include "mixq/kernels/sparse_dot.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "mixq/formats/float16.h"
#include "mixq/kernels/cpu_features.h"

namespace mixq {
namespace {

float SparseRowDotRef(const uint16_t* values, const uint16_t* cols, uint32_t n, const float* x) {
  float sum = 0.0f;
  for (uint32_t k = 0; k < n; ++k) sum += F16ToF32(values[k]) * x[cols[k]];
  return sum;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) float SparseRowDotAvx2(const uint16_t* values, const uint16_t* cols,
                                                                 uint32_t n, const float* x) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  uint32_t k = 0;
  // Two independent accumulators hide the FMA latency; a row's entries are few (20-60 at 0.5%).
  for (; k + 16 <= n; k += 16) {
    const __m256i c0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cols + k)));
    const __m256i c1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cols + k + 8)));
    const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values + k)));
    const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values + k + 8)));
    acc0 = _mm256_fmadd_ps(v0, _mm256_i32gather_ps(x, c0, 4), acc0);
    acc1 = _mm256_fmadd_ps(v1, _mm256_i32gather_ps(x, c1, 4), acc1);
  }
  if (k + 8 <= n) {
    const __m256i c0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cols + k)));
    const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values + k)));
    acc0 = _mm256_fmadd_ps(v0, _mm256_i32gather_ps(x, c0, 4), acc0);
    k += 8;
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float sum = _mm_cvtss_f32(s);
  for (; k < n; ++k) sum += _cvtsh_ss(values[k]) * x[cols[k]];
  return sum;
}
#endif

using RowDot = float (*)(const uint16_t*, const uint16_t*, uint32_t, const float*);

RowDot FastRowDot() {
#if defined(__x86_64__)
  if (CpuHasAvx2()) return SparseRowDotAvx2;
#endif
  return SparseRowDotRef;
}

void AddSparseProductsWith(RowDot dot, const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x,
                           int64_t cols, int64_t n_tokens, float* y, int64_t y_stride) {
  if (sparse.empty()) return;
  for (int64_t r = r0; r < r1; ++r) {
    const uint32_t begin = sparse.row_ptr[r];
    const uint32_t n = sparse.row_ptr[r + 1] - begin;
    if (n == 0) continue;
    for (int64_t t = 0; t < n_tokens; ++t) {
      y[t * y_stride + r] += dot(sparse.values + begin, sparse.cols + begin, n, x + t * cols);
    }
  }
}

}  // namespace

void AddSparseProducts(const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x, int64_t cols,
                       int64_t n_tokens, float* y, int64_t y_stride) {
  static const RowDot dot = FastRowDot();
  AddSparseProductsWith(dot, sparse, r0, r1, x, cols, n_tokens, y, y_stride);
}

void AddSparseProductsRef(const SparseRowsView& sparse, int64_t r0, int64_t r1, const float* x, int64_t cols,
                          int64_t n_tokens, float* y, int64_t y_stride) {
  AddSparseProductsWith(SparseRowDotRef, sparse, r0, r1, x, cols, n_tokens, y, y_stride);
}

const char* SparseDotIsa() { return FastRowDot() == SparseRowDotRef ? "scalar" : "AVX2"; }

}  // namespace mixq
