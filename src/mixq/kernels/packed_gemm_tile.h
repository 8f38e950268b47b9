// What the AVX-512 VNNI and AVX2 packed micro-kernels share (x86-64 only): the broadcast of a token's 4
// codes, and a block's float steps, which must be the same operations in the same order in both so that
// each equals the scalar micro-kernel bit for bit (packed_gemm_internal.h):
//   sum[g][t] = fma(float(acc[g][t]), d[g] * scale_t, sum[g][t]); with offsets sum = fma(m[g], msum_t, sum)
// or, for a format with a scale span, the span's p = fma(float(acc), d[g], p) and once per span
// out = fma(p, scale_t, out).
// Each function is compiled for AVX2 + FMA (an attribute, which GCC and Clang both take), a subset of both
// callers' targets, so it inlines into either.
#pragma once

#if defined(__x86_64__)

#include <immintrin.h>

#include <cstring>

#include "mixq/kernels/packed_gemm_internal.h"

#define MIXQ_PACKED_TILE __attribute__((target("avx2,fma"))) inline

namespace mixq::packed_gemm {

MIXQ_PACKED_TILE __m256i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

template <int G, int T>
MIXQ_PACKED_TILE void ZeroSums(__m256 (&sum)[G][T]) {
  for (int g = 0; g < G; ++g) {
    for (int t = 0; t < T; ++t) sum[g][t] = _mm256_setzero_ps();
  }
}

// Block b of each row group's panel (row group g starts rowgroup_stride bytes after g - 1).
template <int G, int W>
MIXQ_PACKED_TILE void BlockPointers(const uint8_t* panel, size_t rowgroup_stride, int64_t b,
                                    const uint8_t* (&block)[G]) {
  for (int g = 0; g < G; ++g) block[g] = panel + g * rowgroup_stride + b * PanelBlockBytes(W);
}

// Block b's exact integer sums acc (row group g, token t) into the float sums, scaled by the rows' d
// (and with the rows' offsets m) from the panel block of each row group.
template <int G, int T, int W, bool kOffset>
MIXQ_PACKED_TILE void AddBlock(const uint8_t* const (&block)[G], const PackedActivationRow* acts, int64_t b,
                               const __m256i (&acc)[G][T], __m256 (&sum)[G][T]) {
  __m256 d[G], m[G];
  for (int g = 0; g < G; ++g) {
    d[g] = _mm256_load_ps(reinterpret_cast<const float*>(block[g] + 8 * W));
    if constexpr (kOffset) m[g] = _mm256_load_ps(reinterpret_cast<const float*>(block[g] + 8 * W + 32));
  }
  for (int t = 0; t < T; ++t) {
    const __m256 scale = _mm256_set1_ps(acts[t].scale[b]);
    for (int g = 0; g < G; ++g) {
      sum[g][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[g][t]), _mm256_mul_ps(d[g], scale), sum[g][t]);
    }
    if constexpr (kOffset) {
      const __m256 msum = _mm256_set1_ps(acts[t].msum[b]);
      for (int g = 0; g < G; ++g) sum[g][t] = _mm256_fmadd_ps(m[g], msum, sum[g][t]);
    }
  }
}

// A format with a scale span: block b's integer sums into the span's unscaled partial sums p (the rows'
// d only; offsets times the code sums), which AddSpan scales once.
template <int G, int T, int W, bool kOffset>
MIXQ_PACKED_TILE void AddBlockUnscaled(const uint8_t* const (&block)[G], const PackedActivationRow* acts, int64_t b,
                                       const __m256i (&acc)[G][T], __m256 (&p)[G][T]) {
  __m256 d[G], m[G];
  for (int g = 0; g < G; ++g) {
    d[g] = _mm256_load_ps(reinterpret_cast<const float*>(block[g] + 8 * W));
    if constexpr (kOffset) m[g] = _mm256_load_ps(reinterpret_cast<const float*>(block[g] + 8 * W + 32));
  }
  for (int t = 0; t < T; ++t) {
    for (int g = 0; g < G; ++g) p[g][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[g][t]), d[g], p[g][t]);
    if constexpr (kOffset) {
      const __m256 msum = _mm256_set1_ps(acts[t].msum[b]);
      for (int g = 0; g < G; ++g) p[g][t] = _mm256_fmadd_ps(m[g], msum, p[g][t]);
    }
  }
}

// The span starting at block `first`: out[t * 16 + g * 8 + r] += p * scale_t (one fma), then p = 0. The
// sums live in `out` (memory, read once per span), which leaves the registers to the span's p and the
// block's integer sums.
template <int G, int T>
MIXQ_PACKED_TILE void AddSpan(const PackedActivationRow* acts, int64_t first, __m256 (&p)[G][T], float* out) {
  for (int t = 0; t < T; ++t) {
    const __m256 scale = _mm256_set1_ps(acts[t].scale[first]);
    for (int g = 0; g < G; ++g) {
      float* o = out + t * kMaxRowGroups * kRowsPerGroup + g * kRowsPerGroup;
      _mm256_storeu_ps(o, _mm256_fmadd_ps(p[g][t], scale, _mm256_loadu_ps(o)));
      p[g][t] = _mm256_setzero_ps();
    }
  }
}

// The float step of block b for either kind of format: AddBlock, or with spans AddBlockUnscaled.
template <int G, int T, int W, bool kOffset, bool kSpan>
MIXQ_PACKED_TILE void AddBlockSums(const uint8_t* const (&block)[G], const PackedActivationRow* acts, int64_t b,
                                   const __m256i (&acc)[G][T], __m256 (&sum)[G][T]) {
  if constexpr (kSpan) {
    AddBlockUnscaled<G, T, W, kOffset>(block, acts, b, acc, sum);
  } else {
    AddBlock<G, T, W, kOffset>(block, acts, b, acc, sum);
  }
}

// The tile's sums to out[t * 16 + g * 8 + r].
template <int G, int T>
MIXQ_PACKED_TILE void StoreSums(const __m256 (&sum)[G][T], float* out) {
  for (int t = 0; t < T; ++t) {
    for (int g = 0; g < G; ++g) {
      _mm256_storeu_ps(out + t * kMaxRowGroups * kRowsPerGroup + g * kRowsPerGroup, sum[g][t]);
    }
  }
}

}  // namespace mixq::packed_gemm

#undef MIXQ_PACKED_TILE

#endif  // defined(__x86_64__)
