// The multi-row, multi-token loop of the 32-weight types' SIMD kernels (QuantKernel::dot_rows), shared
// by ggml_dot_avx2.cc and ggml_dot_avx512.cc: each includes it after defining MIXQ_TILE_TARGET (its
// target attribute) and its per-type `Kind` structs, which say how one block's integer dot is computed
// on that instruction set:
//   using Weight, Activation;           // the block structs (Activation: BlockQ8_0 or BlockQ8_1)
//   static constexpr bool kHasMin;      // value = code * d + m (Q4_1, Q5_1) rather than (code - K) * d
//   struct Prepared;                    // what one activation block contributes to every row's dot
//   static Prepared Prepare(const Activation&);
//   static __m256i Codes(const Weight&); // the block's weights, as Dot wants them
//   static __m256i Dot(__m256i codes, const Prepared&);  // 8 int32 lanes summing to the block's dot
// The file's anonymous namespace keeps each includer's instantiations its own.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "mixq/formats/ggml_blocks.h"
#include "mixq/kernels/ggml_dot_internal.h"

#ifndef MIXQ_TILE_TARGET
#error "define MIXQ_TILE_TARGET (the including file's target attribute) before including ggml_dot_tile.h"
#endif

namespace mixq::ggml_dot {
namespace {

MIXQ_TILE_TARGET inline float TileHorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// R weight rows x T activation rows. Per block: sum[r][t] += d_w * d_a * Dot. An activation block is
// prepared (loaded, scale converted, offset terms) once for the R rows, a weight block unpacked and its
// scale loaded once for the T tokens. Q4_1/Q5_1 add m_w * s_a / 8 in all 8 lanes (exact: a power-of-two
// scale), into sum_min, a second chain, when the tile is small enough for FMA latency to show
// (kSplitMin: fewer than 4 products), else into sum (more chains than the FMA latency needs).
template <typename Kind, int R, int T>
struct Tile {
  using Weight = typename Kind::Weight;
  using Activation = typename Kind::Activation;
  static constexpr bool kSplitMin = R * T < 4;

  MIXQ_TILE_TARGET static inline void Step(const Weight* const x[R], const Activation* const y[T], int64_t i,
                                           const float* half, __m256 sum[R][T], __m256 sum_min[R][T]) {
    typename Kind::Prepared p[T];
    __m256 da[T], s_eighth[T];
    for (int t = 0; t < T; ++t) {
      p[t] = Kind::Prepare(y[t][i]);
      da[t] = _mm256_set1_ps(half[y[t][i].d]);
      if constexpr (Kind::kHasMin) s_eighth[t] = _mm256_set1_ps(half[y[t][i].s] * 0.125f);
    }
    for (int r = 0; r < R; ++r) {
      const __m256i codes = Kind::Codes(x[r][i]);
      const __m256 dw = _mm256_set1_ps(half[x[r][i].d]);
      for (int t = 0; t < T; ++t) {
        const __m256 dot = _mm256_cvtepi32_ps(Kind::Dot(codes, p[t]));
        sum[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dot, da[t]), dw, sum[r][t]);
      }
      if constexpr (Kind::kHasMin) {
        const __m256 m = _mm256_set1_ps(half[x[r][i].m]);
        for (int t = 0; t < T; ++t) {
          __m256& target = kSplitMin ? sum_min[r][t] : sum[r][t];
          target = _mm256_fmadd_ps(m, s_eighth[t], target);
        }
      }
    }
  }

  // out[t * out_stride + r] = dot of row w + r * row_bytes with activation row act + t * act_bytes, nb
  // blocks of 32. Tiles of fewer than 4 products alternate two accumulator sets between even and odd
  // blocks, so the FMA latency does not bound them.
  MIXQ_TILE_TARGET static inline void Run(const uint8_t* w, size_t row_bytes, const uint8_t* act,
                                          size_t act_bytes, int64_t nb, float* out, int64_t out_stride) {
    constexpr int kSets = R * T < 4 ? 2 : 1;
    const float* half = HalfTable();
    const Weight* x[R];
    for (int r = 0; r < R; ++r) x[r] = reinterpret_cast<const Weight*>(w + static_cast<size_t>(r) * row_bytes);
    const Activation* y[T];
    for (int t = 0; t < T; ++t) y[t] = reinterpret_cast<const Activation*>(act + static_cast<size_t>(t) * act_bytes);
    __m256 acc[kSets][R][T], acc_min[kSets][R][T];
    for (int s = 0; s < kSets; ++s) {
      for (int r = 0; r < R; ++r) {
        for (int t = 0; t < T; ++t) acc[s][r][t] = acc_min[s][r][t] = _mm256_setzero_ps();
      }
    }
    int64_t i = 0;
    for (; i + kSets <= nb; i += kSets) {
      for (int s = 0; s < kSets; ++s) Step(x, y, i + s, half, acc[s], acc_min[s]);
    }
    for (; i < nb; ++i) Step(x, y, i, half, acc[0], acc_min[0]);
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        __m256 total = _mm256_add_ps(acc[0][r][t], acc_min[0][r][t]);
        for (int s = 1; s < kSets; ++s) total = _mm256_add_ps(total, _mm256_add_ps(acc[s][r][t], acc_min[s][r][t]));
        out[t * out_stride + r] = TileHorizontalSum(total);
      }
    }
  }
};

// QuantKernel::dot_rows. Several tokens (prefill without the packed GEMM): tiles of kTileRows x
// kTileTokens share each weight unpack and each prepared activation block; rows left over go one at a
// time with the same tokens, leftover tokens through the one-token path. One token (decode): one row at a
// time, start to end. Steps of 4 or 8 rows sharing each prepared activation block ran fewer instructions
// but decoded slower once the weights came from DRAM rather than cache: on the project's machine (Q4_0 /
// Q8_0 LLaMA-2-7B-shaped model, `mixq bench -n 48`, alternating builds) one row at a time took AVX-512
// from 40.8 to 48.8 and 34.2 to 41.0 tokens/s, and AVX2 from 29.0 to 41.3 and 27.2 to 40.7: a single
// sequential stream per thread keeps the hardware prefetchers ahead, 8 interleaved ones did not.
template <typename Kind, int kTileRows, int kTileTokens>
MIXQ_TILE_TARGET void TileDotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* act, size_t act_bytes,
                                  int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(act);
  const int64_t nb = n / ggml::kQK;
  auto row = [&](int64_t r) { return wb + static_cast<size_t>(r) * row_bytes; };
  int64_t t = 0;
  for (; t + kTileTokens <= n_tokens; t += kTileTokens) {
    const uint8_t* a = ab + static_cast<size_t>(t) * act_bytes;
    float* o = out + t * out_stride;
    int64_t r = 0;
    for (; r + kTileRows <= n_rows; r += kTileRows) {
      Tile<Kind, kTileRows, kTileTokens>::Run(row(r), row_bytes, a, act_bytes, nb, o + r, out_stride);
    }
    for (; r < n_rows; ++r) Tile<Kind, 1, kTileTokens>::Run(row(r), row_bytes, a, act_bytes, nb, o + r, out_stride);
  }
  for (; t < n_tokens; ++t) {
    const uint8_t* a = ab + static_cast<size_t>(t) * act_bytes;
    float* o = out + t * out_stride;
    for (int64_t r = 0; r < n_rows; ++r) Tile<Kind, 1, 1>::Run(row(r), row_bytes, a, 0, nb, o + r, 0);
  }
}

}  // namespace
}  // namespace mixq::ggml_dot
