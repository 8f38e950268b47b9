// AVX-512 VNNI dot products of mixq's INT formats (decode; prefill goes through the packed GEMM).
//
// Per block of 32 weights the AVX2 kernel runs maddubs + madd (8-bit codes also need the sign trick, as
// maddubs would saturate on them). Here one `vpdpbusd` multiplies the unsigned codes (0..2^bits - 1,
// 8-bit codes raw) by the signed activation bytes and sums fours into int32 lanes, starting from an
// accumulator that holds -z * sum(q) in lane 0, so the block's sum (c - z) q stays exact in integers as in
// the reference; then one convert and one FMA by the activation scale, and per group one FMA by the
// weight scale. Measured (int_dot_bench, 4096 x 11008 in cache, 2 threads): INT8 1.14 -> 0.88 ms,
// INT4-g128 0.92 -> 0.90 ms, INT3-g64 1.68 -> 1.76 ms (within this machine's noise). Factoring the
// zero-point out of the block loop (z * sum_b d_b sum(q_b) once per group) measured no faster.
#include "mixq/kernels/int_dot_avx512.h"

#include <immintrin.h>

#include <array>
#include <cstring>

#include "mixq/base/check.h"
#include "mixq/kernels/int_dot.h"
#include "mixq/tensor/int_layout.h"

#define MIXQ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define MIXQ_INT_UNPACK_TARGET MIXQ_AVX512
#include "mixq/kernels/int_dot_unpack.h"

namespace mixq::int_dot_avx512 {
namespace {

// 32 codes of a block as unsigned bytes (UnpackCodes shifts 8-bit codes to signed; vpdpbusd wants them raw).
template <int kBits>
MIXQ_AVX512 inline __m256i UnsignedCodes(const uint8_t* p) {
  if constexpr (kBits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return UnpackCodes<kBits>(p);
}

// One block's exact integer sum_i (c_i - z) q_i over 8 int32 lanes (DotRowBlocks' Block): vpdpbusd
// started from -z * sum(q) in lane 0.
template <int kBits>
struct BlockVnni {
  MIXQ_AVX512 static __m256i Dot(const uint8_t* src, const IntActivationBlock& block, int zero) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.q));
    const __m256i start = _mm256_castsi128_si256(_mm_cvtsi32_si128(-zero * block.sum));
    return _mm256_dpbusd_epi32(start, UnsignedCodes<kBits>(src), a);
  }
};

template <int kBits, bool kSym>
MIXQ_AVX512 float DotImpl(const void* w_row, const void* activation, int64_t n, int64_t group) {
  return DotRowBlocks<kBits, kSym, BlockVnni<kBits>>(w_row, activation, n, group);
}

}  // namespace

int_dot_avx2::DotFn Dot(int bits, bool symmetric) {
  static constexpr std::array<int_dot_avx2::DotFn, 7> kAsym = {
      &DotImpl<2, false>, &DotImpl<3, false>, &DotImpl<4, false>, &DotImpl<5, false>,
      &DotImpl<6, false>, &DotImpl<7, false>, &DotImpl<8, false>};
  static constexpr std::array<int_dot_avx2::DotFn, 7> kSymm = {
      &DotImpl<2, true>, &DotImpl<3, true>, &DotImpl<4, true>, &DotImpl<5, true>,
      &DotImpl<6, true>, &DotImpl<7, true>, &DotImpl<8, true>};
  MIXQ_CHECK(bits >= 2 && bits <= 8);
  return symmetric ? kSymm[static_cast<size_t>(bits - 2)] : kAsym[static_cast<size_t>(bits - 2)];
}

}  // namespace mixq::int_dot_avx512
