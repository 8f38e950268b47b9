// The packed GEMM's AVX2 micro-kernel. AVX2 has no int8 dot-accumulate (`vpdpbusd`); its `vpmaddubsw`
// multiplies unsigned by signed bytes and adds pairs into int16 with saturation, so the panel's codes are
// stored so that no pair can saturate:
//   - codes of up to 7 bits as the small unsigned c + code_bias < 2^bits. A pair is at most
//     2 (2^bits - 1) 127, and kSteps = 32767 / that many `vpmaddubsw` results add in int16 (wrapping adds,
//     exact while the total fits) before one `vpmaddwd` widens them: 8 steps (a whole 32-value block) for
//     4-bit codes, 4 for 5-bit, 2 for 6-bit, 1 for 7-bit.
//   - 8-bit codes (stored c + 128) with the sign trick: c = stored ^ 0x80, then |c| (unsigned, <= 128)
//     times sign(c) * a (|a| <= 127), a pair at most 32512; one `vpmaddwd` per step. This sums c a itself,
//     so the accumulators start at 0, not at the correction.
// Tiles are at most 2 row groups x 2 tokens (4 float sums + 4 int accumulators + weights, of 16 registers);
// a 4-token call runs two token pairs over the same panel chunk, which is in L1.
#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/kernels/packed_gemm_tile.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define MIXQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace mixq::packed_gemm {
namespace {

// kSteps > 0: narrow codes, kSteps `vpmaddubsw` per int16 sum; kSteps == 0: 8-bit codes, sign trick.
// kSpan: the format's blocks share activation scales in spans of `span` blocks (packed_gemm_internal.h).
template <int G, int T, int W, bool kOffset, int kSteps, bool kSpan>
MIXQ_AVX2 void Tile(const uint8_t* panel, size_t rowgroup_stride, const PackedActivationRow* acts, int64_t b0,
                    int64_t b1, int span, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 sum[G][T];  // with spans: the span's partial sums, the total in `out`
  ZeroSums(sum);
  if constexpr (kSpan) StoreSums<G, T>(sum, out);
  const int64_t n_span = kSpan ? span : 1;
  for (int64_t first = b0; first < b1; first += n_span) {
    for (int64_t b = first; b < first + n_span; ++b) {
      const uint8_t* block[G];
      BlockPointers<G, W>(panel, rowgroup_stride, b, block);
      __m256i acc[G][T];
      for (int t = 0; t < T; ++t) {
        const __m256i start = kSteps == 0 ? _mm256_setzero_si256() : _mm256_set1_epi32(acts[t].corr[b]);
        for (int g = 0; g < G; ++g) acc[g][t] = start;
      }
      if constexpr (kSteps == 0) {
        const __m256i sign_bits = _mm256_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
        for (int s = 0; s < W / 4; ++s) {
          __m256i c[G], abs_c[G];
          for (int g = 0; g < G; ++g) {
            c[g] = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(block[g] + 32 * s)), sign_bits);
            abs_c[g] = _mm256_abs_epi8(c[g]);
          }
          for (int t = 0; t < T; ++t) {
            const __m256i a = Broadcast4(acts[t].q + b * W + 4 * s);
            for (int g = 0; g < G; ++g) {
              const __m256i pairs = _mm256_maddubs_epi16(abs_c[g], _mm256_sign_epi8(a, c[g]));
              acc[g][t] = _mm256_add_epi32(acc[g][t], _mm256_madd_epi16(pairs, ones));
              asm("" : "+x"(acc[g][t]));  // as below: the sums stay in registers, step by step
            }
          }
        }
      } else {
        constexpr int kChunk = kSteps < W / 4 ? kSteps : W / 4;
#pragma GCC unroll 8
        for (int s0 = 0; s0 < W / 4; s0 += kChunk) {
          __m256i part[G][T];
#pragma GCC unroll 8
          for (int s = s0; s < s0 + kChunk; ++s) {
            __m256i wv[G];
            for (int g = 0; g < G; ++g) wv[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(block[g] + 32 * s));
            for (int t = 0; t < T; ++t) {
              const __m256i a = Broadcast4(acts[t].q + b * W + 4 * s);
              for (int g = 0; g < G; ++g) {
                const __m256i pairs = _mm256_maddubs_epi16(wv[g], a);
                part[g][t] = s == s0 ? pairs : _mm256_add_epi16(part[g][t], pairs);
                // Keeps the compiler from hoisting every step's products ahead of the sums (it did, and
                // spilled them to the stack: 16 live products for 16 registers).
                asm("" : "+x"(part[g][t]));
              }
            }
          }
          for (int t = 0; t < T; ++t) {
            for (int g = 0; g < G; ++g) acc[g][t] = _mm256_add_epi32(acc[g][t], _mm256_madd_epi16(part[g][t], ones));
          }
        }
      }
      AddBlockSums<G, T, W, kOffset, kSpan>(block, acts, b, acc, sum);
    }
    if constexpr (kSpan) AddSpan<G, T>(acts, first, sum, out);
  }
  if constexpr (!kSpan) StoreSums<G, T>(sum, out);
}

using TileFn = void (*)(const uint8_t*, size_t, const PackedActivationRow*, int64_t, int64_t, int, float*);

template <int W, bool kOffset, int kSteps, bool kSpan>
TileFn PickTile(int n_rowgroups, int n_tokens) {
  static constexpr TileFn kTiles[2][2] = {
      {Tile<1, 1, W, kOffset, kSteps, kSpan>, Tile<1, 2, W, kOffset, kSteps, kSpan>},
      {Tile<2, 1, W, kOffset, kSteps, kSpan>, Tile<2, 2, W, kOffset, kSteps, kSpan>},
  };
  return kTiles[n_rowgroups - 1][n_tokens - 1];
}

template <int W, bool kOffset, bool kSpan>
TileFn PickSteps(int code_bits, int n_rowgroups, int n_tokens) {
  switch (code_bits) {
    case 1: case 2: case 3: case 4: return PickTile<W, kOffset, 8, kSpan>(n_rowgroups, n_tokens);
    case 5: return PickTile<W, kOffset, 4, kSpan>(n_rowgroups, n_tokens);
    case 6: return PickTile<W, kOffset, 2, kSpan>(n_rowgroups, n_tokens);
    case 7: return PickTile<W, kOffset, 1, kSpan>(n_rowgroups, n_tokens);
    default: return PickTile<W, kOffset, 0, kSpan>(n_rowgroups, n_tokens);
  }
}

template <int W>
TileFn PickTileFor(const PackedGemmFormat& format, int n_rowgroups, int n_tokens) {
  const int bits = format.code_bits;
  if (format.scale_span > 1) {
    return format.offset ? PickSteps<W, true, true>(bits, n_rowgroups, n_tokens)
                         : PickSteps<W, false, true>(bits, n_rowgroups, n_tokens);
  }
  return format.offset ? PickSteps<W, true, false>(bits, n_rowgroups, n_tokens)
                       : PickSteps<W, false, false>(bits, n_rowgroups, n_tokens);
}

}  // namespace

void MicroKernelAvx2(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                     int n_tokens, int64_t b0, int64_t b1, const PackedGemmFormat& format, float* out) {
  for (int t0 = 0; t0 < n_tokens; t0 += 2) {
    const int nt = n_tokens - t0 < 2 ? n_tokens - t0 : 2;
    const TileFn tile = format.width == 32 ? PickTileFor<32>(format, n_rowgroups, nt)
                                           : PickTileFor<16>(format, n_rowgroups, nt);
    tile(panel, rowgroup_stride, acts + t0, b0, b1, format.scale_span, out + t0 * kMaxRowGroups * kRowsPerGroup);
  }
}

}  // namespace mixq::packed_gemm

#endif  // defined(__x86_64__)
