// AVX2 FP8 E4M3 kernel: codes widened to FP16 bit patterns in registers, converted by F16C, FMA'd with float
// activations. Every function carries its own target attribute (no global -m flags); fp8_dot.cc calls them
// only when the CPU has AVX2, FMA and F16C. fp8_dot.h explains the decode.
#include "mixq/kernels/fp8_dot_avx2.h"

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "mixq/formats/fp8.h"

#define MIXQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace mixq::fp8_dot_avx2 {
namespace {

constexpr int64_t kStep = 32;  // codes per loop step: four vectors of eight floats

// 32 codes at p -> f[0..4), eight consecutive values each, scaled by 2^-8. The FP16 word of code c is built
// bytewise: high byte = sign | magnitude >> 1 (| 0x40 for the NaN codes: FP16's all-ones exponent), low byte
// = (c & 1) << 7; 16-bit shifts stand in for the missing 8-bit ones, their spill masked off. unpacklo/hi
// interleave within 128-bit lanes, so the four conversions take codes 0-7, 8-15, 16-23, 24-31 in order.
MIXQ_AVX2 inline void Decode32(const uint8_t* p, __m256* f) {
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i m7f = _mm256_set1_epi8(0x7F);
  const __m256i m80 = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i nan = _mm256_cmpeq_epi8(_mm256_and_si256(c, m7f), m7f);
  __m256i high = _mm256_or_si256(_mm256_and_si256(c, m80), _mm256_and_si256(_mm256_srli_epi16(c, 1), _mm256_set1_epi8(0x3F)));
  high = _mm256_or_si256(high, _mm256_and_si256(nan, _mm256_set1_epi8(0x40)));
  const __m256i low = _mm256_and_si256(_mm256_slli_epi16(c, 7), m80);
  const __m256i words_lo = _mm256_unpacklo_epi8(low, high);  // codes 0-7 | 16-23
  const __m256i words_hi = _mm256_unpackhi_epi8(low, high);  // codes 8-15 | 24-31
  f[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(words_lo));
  f[1] = _mm256_cvtph_ps(_mm256_castsi256_si128(words_hi));
  f[2] = _mm256_cvtph_ps(_mm256_extracti128_si256(words_lo, 1));
  f[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(words_hi, 1));
}

MIXQ_AVX2 inline void Accumulate(const __m256* w, const float* a, __m256* acc) {
  for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(w[k], _mm256_loadu_ps(a + 8 * k), acc[k]);
}

// The row's result from its four accumulators: (acc0 + acc1) + (acc2 + acc3), lanes summed pairwise, times
// 2^8 (exact) and the row scale.
MIXQ_AVX2 inline float Finish(const __m256* acc, float scale) {
  const __m256 s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x) * 256.0f * scale;
}

// A row's last n % 32 codes in a zeroed 32-byte step (code 0 is +0, so padding adds 0 * 0).
struct TailCodes {
  alignas(32) uint8_t codes[kStep] = {};
  TailCodes(const uint8_t* codes_at, int64_t len) { std::memcpy(codes, codes_at, static_cast<size_t>(len)); }
};
struct TailActivations {
  alignas(32) float a[kStep] = {};
  TailActivations(const float* a_at, int64_t len) { std::memcpy(a, a_at, static_cast<size_t>(len) * sizeof(float)); }
};

}  // namespace

MIXQ_AVX2 float Dot(const void* w_row, const void* activation, int64_t n, int64_t /*group*/) {
  const auto* codes = static_cast<const uint8_t*>(w_row) + sizeof(float);
  const auto* a = static_cast<const float*>(activation);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 w[4];
  const int64_t full = n / kStep * kStep;
  for (int64_t i = 0; i < full; i += kStep) {
    Decode32(codes + i, w);
    Accumulate(w, a + i, acc);
  }
  if (full < n) {
    const TailCodes tail(codes + full, n - full);
    const TailActivations tail_a(a + full, n - full);
    Decode32(tail.codes, w);
    Accumulate(w, tail_a.a, acc);
  }
  return Finish(acc, Fp8RowScale(w_row));
}

// Prefill: each row is decoded into floats once (zero-padded to whole steps), then every token runs over the
// decoded rows with Dot's accumulation order, so each result equals Dot's bit for bit. A block of rows (16
// from MatMul, 16 x 4096 floats = 256 KiB) stays in L2 while the tokens pass by.
MIXQ_AVX2 void DotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* activations,
                       size_t activation_bytes, int64_t n_tokens, int64_t n, int64_t group, float* out,
                       int64_t out_stride) {
  const auto* rows = static_cast<const std::byte*>(w);
  const auto* acts = static_cast<const std::byte*>(activations);
  if (n_tokens == 1) {  // decode: nothing to share, the decode pass would only add traffic
    for (int64_t r = 0; r < n_rows; ++r) out[r] = Dot(rows + static_cast<size_t>(r) * row_bytes, acts, n, group);
    return;
  }
  const int64_t full = n / kStep * kStep;
  const int64_t padded = (n + kStep - 1) / kStep * kStep;
  thread_local std::vector<float> decoded;
  thread_local std::vector<float> scales;
  if (decoded.size() < static_cast<size_t>(n_rows * padded)) decoded.resize(static_cast<size_t>(n_rows * padded));
  if (scales.size() < static_cast<size_t>(n_rows)) scales.resize(static_cast<size_t>(n_rows));
  for (int64_t r = 0; r < n_rows; ++r) {
    const std::byte* row = rows + static_cast<size_t>(r) * row_bytes;
    const auto* codes = reinterpret_cast<const uint8_t*>(row) + sizeof(float);
    float* dst = decoded.data() + r * padded;
    __m256 f[4];
    for (int64_t i = 0; i < full; i += kStep) {
      Decode32(codes + i, f);
      for (int k = 0; k < 4; ++k) _mm256_storeu_ps(dst + i + 8 * k, f[k]);
    }
    if (full < n) {
      const TailCodes tail(codes + full, n - full);
      Decode32(tail.codes, f);
      for (int k = 0; k < 4; ++k) _mm256_storeu_ps(dst + full + 8 * k, f[k]);
    }
    scales[static_cast<size_t>(r)] = Fp8RowScale(row);
  }
  // Two tokens per pass over a decoded row share its loads; each (row, token) keeps its own four
  // accumulators in Dot's order, so pairing changes no result.
  const auto token = [&](int64_t t) { return reinterpret_cast<const float*>(acts + static_cast<size_t>(t) * activation_bytes); };
  int64_t t = 0;
  for (; t + 2 <= n_tokens; t += 2) {
    const float* a0 = token(t);
    const float* a1 = token(t + 1);
    const TailActivations tail0(a0 + full, n - full), tail1(a1 + full, n - full);
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* wr = decoded.data() + r * padded;
      __m256 acc0[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      __m256 acc1[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      __m256 wv[4];
      for (int64_t i = 0; i < full; i += kStep) {
        for (int k = 0; k < 4; ++k) wv[k] = _mm256_loadu_ps(wr + i + 8 * k);
        Accumulate(wv, a0 + i, acc0);
        Accumulate(wv, a1 + i, acc1);
      }
      if (full < n) {
        for (int k = 0; k < 4; ++k) wv[k] = _mm256_loadu_ps(wr + full + 8 * k);
        Accumulate(wv, tail0.a, acc0);
        Accumulate(wv, tail1.a, acc1);
      }
      out[t * out_stride + r] = Finish(acc0, scales[static_cast<size_t>(r)]);
      out[(t + 1) * out_stride + r] = Finish(acc1, scales[static_cast<size_t>(r)]);
    }
  }
  for (; t < n_tokens; ++t) {
    const float* a = token(t);
    const TailActivations tail_a(a + full, n - full);
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* wr = decoded.data() + r * padded;
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      __m256 wv[4];
      for (int64_t i = 0; i < full; i += kStep) {
        for (int k = 0; k < 4; ++k) wv[k] = _mm256_loadu_ps(wr + i + 8 * k);
        Accumulate(wv, a + i, acc);
      }
      if (full < n) {
        for (int k = 0; k < 4; ++k) wv[k] = _mm256_loadu_ps(wr + full + 8 * k);
        Accumulate(wv, tail_a.a, acc);
      }
      out[t * out_stride + r] = Finish(acc, scales[static_cast<size_t>(r)]);
    }
  }
}

}  // namespace mixq::fp8_dot_avx2
