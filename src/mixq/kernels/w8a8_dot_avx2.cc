// AVX2 and AVX-512 VNNI W8A8 kernels: whole-row int8 x int8 sums in int32 lanes (flushed to int64 every
// kSegment values so no lane can overflow), register tiles of rows x tokens, activation quantization.
// Every function carries its own target attribute; w8a8_dot.cc calls them only when the CPU has the level.
#include "mixq/kernels/w8a8_dot_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mixq/formats/float16.h"
#include "mixq/kernels/w8a8_dot.h"

#define MIXQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MIXQ_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace mixq::w8a8_avx2 {
namespace {

// Values per int32 accumulation run. AVX2: each lane gains at most 4 * 128 * 127 per 32 values; VNNI: at most
// 4 * 255 * 127 (before the 128 * sum correction): 2^16 values keep both far below 2^31.
constexpr int64_t kSegment = int64_t{1} << 16;
constexpr int64_t kChunk = 32;

const int8_t* Codes(const void* activation) {
  return reinterpret_cast<const int8_t*>(static_cast<const W8A8ActivationHeader*>(activation) + 1);
}

MIXQ_AVX2 inline int64_t HorizontalSum64(__m256i v) {
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  int64_t s = 0;
  for (int32_t lane : lanes) s += lane;
  return s;
}

// ---- AVX2: maddubs(|c - 128|, q * sign(c - 128)), then madd with ones.

MIXQ_AVX2 inline __m256i SignedCodes(const uint8_t* p) {
  return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_set1_epi8(-128));
}

MIXQ_AVX2 inline __m256i MulAddAvx2(__m256i acc, __m256i w, __m256i w_abs, __m256i a) {
  const __m256i pairs = _mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// totals[r * T + t] = sum_i (c_ri - 128) q_ti over n values. tail[r] holds row r's last n % 32 codes,
// zero-padded (a zero code times a zero activation pad adds nothing).
template <int R, int T>
MIXQ_AVX2 void TileAvx2(const uint8_t* const* codes, const uint8_t (*tail)[kChunk], const int8_t* const* q,
                        int64_t n, int64_t* totals) {
  const int64_t full = n / kChunk * kChunk;
  for (int k = 0; k < R * T; ++k) totals[k] = 0;
  for (int64_t s = 0; s < n; s += kSegment) {
    const int64_t end = std::min(n, s + kSegment);
    __m256i acc[R][T];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
    }
    for (int64_t i = s; i < end; i += kChunk) {
      __m256i w[R], w_abs[R];
      for (int r = 0; r < R; ++r) {
        w[r] = SignedCodes(i < full ? codes[r] + i : tail[r]);
        w_abs[r] = _mm256_abs_epi8(w[r]);
      }
      for (int t = 0; t < T; ++t) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[t] + i));
        for (int r = 0; r < R; ++r) acc[r][t] = MulAddAvx2(acc[r][t], w[r], w_abs[r], a);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) totals[r * T + t] += HorizontalSum64(acc[r][t]);
    }
  }
}

// ---- AVX-512 VNNI (256-bit): vpdpbusd multiplies the unsigned codes by the signed activations without
// saturation; the 128 * sum(q) of the zero-point is subtracted once per row.

template <int R, int T>
MIXQ_VNNI void TileVnni(const uint8_t* const* codes, const uint8_t (*tail)[kChunk], const int8_t* const* q,
                        int64_t n, int64_t* totals) {
  const int64_t full = n / kChunk * kChunk;
  for (int k = 0; k < R * T; ++k) totals[k] = 0;
  for (int64_t s = 0; s < n; s += kSegment) {
    const int64_t end = std::min(n, s + kSegment);
    __m256i acc[R][T];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
    }
    for (int64_t i = s; i < end; i += kChunk) {
      __m256i w[R];
      for (int r = 0; r < R; ++r) {
        w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(i < full ? codes[r] + i : tail[r]));
      }
      for (int t = 0; t < T; ++t) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[t] + i));
        for (int r = 0; r < R; ++r) acc[r][t] = _mm256_dpbusd_epi32(acc[r][t], w[r], a);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        alignas(32) int32_t lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[r][t]);
        for (int32_t lane : lanes) totals[r * T + t] += lane;
      }
    }
  }
}

// Row r's codes and zero-padded tail for a tile starting at `row`.
template <int R>
inline void PrepareRows(const std::byte* row, size_t row_bytes, int64_t n, const uint8_t** codes,
                        uint8_t (*tail)[kChunk]) {
  const int64_t full = n / kChunk * kChunk;
  for (int r = 0; r < R; ++r) {
    codes[r] = reinterpret_cast<const uint8_t*>(row + static_cast<size_t>(r) * row_bytes) + 2;
    std::memset(tail[r], 0, kChunk);
    std::memcpy(tail[r], codes[r] + full, static_cast<size_t>(n - full));
  }
}

float RowScale(const std::byte* row) {
  uint16_t bits;
  std::memcpy(&bits, row, sizeof(bits));
  return F16ToF32(bits);
}

// One R x T tile of outputs; kVnni subtracts the zero-point term the unsigned multiply left in.
template <int R, int T, bool kVnni>
void Tile(const std::byte* w, size_t row_bytes, const std::byte* act, size_t act_bytes, int64_t n, float* out,
          int64_t out_stride) {
  const uint8_t* codes[R];
  uint8_t tail[R][kChunk];
  PrepareRows<R>(w, row_bytes, n, codes, tail);
  const int8_t* q[T];
  for (int t = 0; t < T; ++t) q[t] = Codes(act + static_cast<size_t>(t) * act_bytes);
  int64_t totals[R * T];
  if constexpr (kVnni) {
    TileVnni<R, T>(codes, tail, q, n, totals);
  } else {
    TileAvx2<R, T>(codes, tail, q, n, totals);
  }
  for (int t = 0; t < T; ++t) {
    const auto& header = *reinterpret_cast<const W8A8ActivationHeader*>(act + static_cast<size_t>(t) * act_bytes);
    for (int r = 0; r < R; ++r) {
      int64_t isum = totals[r * T + t];
      if constexpr (kVnni) isum -= int64_t{128} * header.sum;
      out[t * out_stride + r] =
          RowScale(w + static_cast<size_t>(r) * row_bytes) * header.scale * static_cast<float>(isum);
    }
  }
}

// Prefill: tiles of kRows x kTokens (the block's rows are in L2 after the first tile, so a tile of rows
// shares each activation load); then the last n_tokens % kTokens tokens -- all of decode -- one row at a
// time. Measured on LLaMA-2-7B-shaped GEMV (docs/w8a8.md), streaming several rows from memory at once ran at
// 40-65% of the bandwidth that one sequential row reaches, so decode never tiles rows.
template <int kRows, int kTokens, bool kVnni>
void DotRowsImpl(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t act_bytes,
                 int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const auto* wb = static_cast<const std::byte*>(w);
  const auto* ab = static_cast<const std::byte*>(activations);
  int64_t t = 0;
  for (; t + kTokens <= n_tokens; t += kTokens) {
    const std::byte* a = ab + static_cast<size_t>(t) * act_bytes;
    int64_t r = 0;
    for (; r + kRows <= n_rows; r += kRows) {
      Tile<kRows, kTokens, kVnni>(wb + static_cast<size_t>(r) * row_bytes, row_bytes, a, act_bytes, n,
                                  out + t * out_stride + r, out_stride);
    }
    for (; r < n_rows; ++r) {
      Tile<1, kTokens, kVnni>(wb + static_cast<size_t>(r) * row_bytes, row_bytes, a, act_bytes, n,
                              out + t * out_stride + r, out_stride);
    }
  }
  for (; t < n_tokens; ++t) {
    const std::byte* a = ab + static_cast<size_t>(t) * act_bytes;
    for (int64_t r = 0; r < n_rows; ++r) {
      Tile<1, 1, kVnni>(wb + static_cast<size_t>(r) * row_bytes, row_bytes, a, act_bytes, n, out + t * out_stride + r,
                        out_stride);
    }
  }
}

MIXQ_AVX2 inline float MaxAbs(const float* x, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps();
  __m256 amax = zero;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // max(|x|, 0) first: a NaN lane becomes 0, as std::fmax ignores NaN in the reference.
    amax = _mm256_max_ps(amax, _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), zero));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  float result = _mm_cvtss_f32(m);
  for (; i < n; ++i) result = std::fmax(result, std::fabs(x[i]));
  return result;
}

}  // namespace

MIXQ_AVX2 void QuantizeActivation(const float* x, int64_t n, float static_scale, void* dst) {
  auto* header = static_cast<W8A8ActivationHeader*>(dst);
  auto* q = reinterpret_cast<int8_t*>(header + 1);
  std::memset(dst, 0, W8A8ActivationBytes(n));
  const float d = static_scale != 0.0f ? static_scale : MaxAbs(x, n) / 127.0f;
  const float id_scalar = d != 0.0f ? 1.0f / d : 0.0f;
  const __m256 id = _mm256_set1_ps(id_scalar);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i sum = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), id),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      // max(r, lo) takes lo for a NaN r, as std::fmax does in the reference.
      v[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
      sum = _mm256_add_epi32(sum, v[j]);
    }
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  int32_t total = static_cast<int32_t>(HorizontalSum64(sum));
  for (; i < n; ++i) {
    const float r = std::fmin(std::fmax(std::nearbyint(x[i] * id_scalar), -127.0f), 127.0f);
    q[i] = static_cast<int8_t>(r);
    total += q[i];
  }
  header->scale = d;
  header->sum = total;
}

int64_t DotInt(const uint8_t* codes, const void* activation, int64_t n) {
  const uint8_t* rows[1] = {codes};
  uint8_t tail[1][kChunk] = {};
  const int64_t full = n / kChunk * kChunk;
  std::memcpy(tail[0], codes + full, static_cast<size_t>(n - full));
  const int8_t* q[1] = {Codes(activation)};
  int64_t total = 0;
  TileAvx2<1, 1>(rows, tail, q, n, &total);
  return total;
}

int64_t DotIntVnni(const uint8_t* codes, const void* activation, int64_t n) {
  const uint8_t* rows[1] = {codes};
  uint8_t tail[1][kChunk] = {};
  const int64_t full = n / kChunk * kChunk;
  std::memcpy(tail[0], codes + full, static_cast<size_t>(n - full));
  const int8_t* q[1] = {Codes(activation)};
  int64_t total = 0;
  TileVnni<1, 1>(rows, tail, q, n, &total);
  return total - int64_t{128} * static_cast<const W8A8ActivationHeader*>(activation)->sum;
}

// AVX2: one row x 4 tokens. The sign trick costs two operations per (row, token) pair whatever the tile, so
// sharing activation loads among rows does not pay: 1 x 4 measured 61 GMAC/s on one core, 2 x 2 57, 4 x 1 51.
void DotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t activation_bytes,
             int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  DotRowsImpl<1, 4, false>(w, row_bytes, n_rows, activations, activation_bytes, n_tokens, n, out, out_stride);
}

// AVX-512 VNNI has 32 registers: 4 rows x 4 tokens (16 accumulators, 4 weights, 4 activations) loads each
// weight vector once per 4 tokens and each activation once per 4 rows: 154 GMAC/s on one core, against 112
// for 2 x 4 and 98 for 1 x 4.
void DotRowsVnni(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t activation_bytes,
                 int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  DotRowsImpl<4, 4, true>(w, row_bytes, n_rows, activations, activation_bytes, n_tokens, n, out, out_stride);
}

}  // namespace mixq::w8a8_avx2
