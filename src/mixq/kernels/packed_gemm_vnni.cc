// The packed GEMM's AVX-512 VNNI micro-kernel (256-bit registers, AVX512VL): per block, each of up to
// 2 row groups x 4 tokens gets an int32 accumulator that starts at the token's correction and takes
// width / 4 `vpdpbusd` (8 rows x 4 values each, the token's 4 codes broadcast); then one convert, one
// multiply (row scales x token scale) and one FMA per accumulator (and one FMA for offsets). 2 x 4 uses
// 8 + 8 accumulators of the 32 registers. 256-bit, not 512: this EPYC (Zen 4) splits 512-bit operations.
#include "mixq/kernels/packed_gemm_internal.h"
#include "mixq/kernels/packed_gemm_tile.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define MIXQ_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace mixq::packed_gemm {
namespace {

template <int G, int T, int W, bool kOffset>
MIXQ_VNNI void Tile(const uint8_t* panel, size_t rowgroup_stride, const PackedActivationRow* acts, int64_t b0,
                    int64_t b1, float* out) {
  __m256 sum[G][T];
  ZeroSums(sum);
  for (int64_t b = b0; b < b1; ++b) {
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
    AddBlock<G, T, W, kOffset>(block, acts, b, acc, sum);
  }
  StoreSums<G, T>(sum, out);
}

using TileFn = void (*)(const uint8_t*, size_t, const PackedActivationRow*, int64_t, int64_t, float*);

template <int W, bool kOffset>
TileFn PickTile(int n_rowgroups, int n_tokens) {
  static constexpr TileFn kTiles[2][4] = {
      {Tile<1, 1, W, kOffset>, Tile<1, 2, W, kOffset>, Tile<1, 3, W, kOffset>, Tile<1, 4, W, kOffset>},
      {Tile<2, 1, W, kOffset>, Tile<2, 2, W, kOffset>, Tile<2, 3, W, kOffset>, Tile<2, 4, W, kOffset>},
  };
  return kTiles[n_rowgroups - 1][n_tokens - 1];
}

}  // namespace

void MicroKernelVnni(const uint8_t* panel, size_t rowgroup_stride, int n_rowgroups, const PackedActivationRow* acts,
                     int n_tokens, int64_t b0, int64_t b1, int width, bool offset, int /*code_bits*/,
                     float* out) {
  TileFn tile = nullptr;
  if (width == 32) {
    tile = offset ? PickTile<32, true>(n_rowgroups, n_tokens) : PickTile<32, false>(n_rowgroups, n_tokens);
  } else {
    tile = offset ? PickTile<16, true>(n_rowgroups, n_tokens) : PickTile<16, false>(n_rowgroups, n_tokens);
  }
  tile(panel, rowgroup_stride, acts, b0, b1, out);
}

}  // namespace mixq::packed_gemm

#endif  // defined(__x86_64__)
