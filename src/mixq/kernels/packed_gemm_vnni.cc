// The packed GEMM's AVX-512 VNNI micro-kernel (256-bit registers, AVX512VL): per block, each of up to
// 2 row groups x 4 tokens gets an int32 accumulator that starts at the token's correction and takes
// width / 4 `vpdpbusd` (8 rows x 4 values each, the token's 4 codes broadcast); then one convert, one
// multiply (row scales x token scale) and one FMA per accumulator (and one FMA for offsets). For the
// k-quants, whose blocks share an activation scale in spans, one convert and one FMA a block and the
// multiply once a span. 2 x 4 uses 8 + 8 accumulators of the 32 registers. 256-bit, not 512: this EPYC
// (Zen 4) splits 512-bit operations.
#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/kernels/packed_gemm_tile.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define MIXQ_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace mixq::packed_gemm {
namespace {

// kSpan: the format's blocks share activation scales in spans of `span` blocks (packed_gemm_internal.h).
template <int G, int T, int W, bool kOffset, bool kSpan>
MIXQ_VNNI void Tile(const uint8_t* panel, size_t rowgroup_stride, const PackedActivationRow* acts, int64_t b0,
                    int64_t b1, int span, float* out) {
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
        const __m256i corr = _mm256_set1_epi32(acts[t].corr[b]);
        for (int g = 0; g < G; ++g) acc[g][t] = corr;
      }
#pragma GCC unroll 8
      for (int s = 0; s < W / 4; ++s) {
        __m256i wv[G];
        for (int g = 0; g < G; ++g) wv[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(block[g] + 32 * s));
        for (int t = 0; t < T; ++t) {
          const __m256i a = Broadcast4(acts[t].q + b * W + 4 * s);
          for (int g = 0; g < G; ++g) acc[g][t] = _mm256_dpbusd_epi32(acc[g][t], wv[g], a);
        }
      }
      AddBlockSums<G, T, W, kOffset, kSpan>(block, acts, b, acc, sum);
    }
    if constexpr (kSpan) AddSpan<G, T>(acts, first, sum, out);
  }
  if constexpr (!kSpan) StoreSums<G, T>(sum, out);
}

using TileFn = void (*)(const uint8_t*, size_t, const PackedActivationRow*, int64_t, int64_t, int, float*);

template <int W, bool kOffset, bool kSpan>
TileFn PickTile(int n_rowgroups, int n_tokens) {
  static constexpr TileFn kTiles[2][4] = {
      {Tile<1, 1, W, kOffset, kSpan>, Tile<1, 2, W, kOffset, kSpan>, Tile<1, 3, W, kOffset, kSpan>,
       Tile<1, 4, W, kOffset, kSpan>},
      {Tile<2, 1, W, kOffset, kSpan>, Tile<2, 2, W, kOffset, kSpan>, Tile<2, 3, W, kOffset, kSpan>,
       Tile<2, 4, W, kOffset, kSpan>},
  };
  return kTiles[n_rowgroups - 1][n_tokens - 1];
}

template <int W>
TileFn PickTileFor(const PackedGemmFormat& format, int n_rowgroups, int n_tokens) {
  const bool span = format.scale_span > 1;
  if (format.offset) {
    return span ? PickTile<W, true, true>(n_rowgroups, n_tokens) : PickTile<W, true, false>(n_rowgroups, n_tokens);
  }
  return span ? PickTile<W, false, true>(n_rowgroups, n_tokens) : PickTile<W, false, false>(n_rowgroups, n_tokens);
}

}  // namespace

void MicroKernelVnni(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                     int n_tokens, int64_t b0, int64_t b1, const PackedGemmFormat& format, float* out) {
  const TileFn tile = format.width == 32 ? PickTileFor<32>(format, n_rowgroups, n_tokens)
                                         : PickTileFor<16>(format, n_rowgroups, n_tokens);
  tile(panel, rowgroup_stride, acts, b0, b1, format.scale_span, out);
}

}  // namespace mixq::packed_gemm

#endif  // defined(__x86_64__)
