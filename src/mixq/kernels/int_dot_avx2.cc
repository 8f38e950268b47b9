// AVX2 INT kernels: 32 codes of any bit width unpacked to bytes, multiplied with int8 activation blocks
// by maddubs/madd, exact per block in integers, scaled and summed in float. Every function carries its own
// target attribute (no global -m flags); int_dot.cc calls them only when the CPU has AVX2, FMA and F16C.
#include "mixq/kernels/int_dot_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "mixq/base/check.h"
#include "mixq/kernels/int_dot.h"
#include "mixq/tensor/int_layout.h"

#define MIXQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MIXQ_INT_UNPACK_TARGET MIXQ_AVX2
#include "mixq/kernels/int_dot_unpack.h"

namespace mixq::int_dot_avx2 {
namespace {

// One block's exact integer sum_i (c_i - z) q_i, spread over 8 int32 lanes (DotRowBlocks' Block).
template <int kBits, bool kSym>
struct BlockAvx2 {
  MIXQ_AVX2 static __m256i Dot(const uint8_t* src, const IntActivationBlock& block, int zero) {
    const __m256i w = UnpackCodes<kBits>(src);
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.q));
    __m256i pairs;
    if constexpr (kBits == 8) {
      // |c - 128| <= 128 and |a| <= 127: a pair sums to at most 32512, inside int16.
      pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    } else {
      pairs = _mm256_maddubs_epi16(w, a);  // codes <= 127: a pair sums to at most 32258
    }
    const __m256i dot = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    if constexpr (kBits == 8 && kSym) return dot;  // codes already signed around 0
    // 8-bit codes are unpacked as c - 128, so their zero moves by 128 too.
    const int32_t zero_eff = kBits == 8 ? zero - 128 : zero;
    return _mm256_sub_epi32(dot, _mm256_setr_epi32(zero_eff * block.sum, 0, 0, 0, 0, 0, 0, 0));
  }
};

template <int kBits, bool kSym>
MIXQ_AVX2 float DotImpl(const void* w_row, const void* activation, int64_t n, int64_t group) {
  return DotRowBlocks<kBits, kSym, BlockAvx2<kBits, kSym>>(w_row, activation, n, group);
}

MIXQ_AVX2 void QuantizeFullBlock(const float* x, IntActivationBlock* block) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 zero = _mm256_setzero_ps();
  __m256 v[4];
  __m256 amax = zero;
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_loadu_ps(x + 8 * j);
    // max(|x|, 0) first: a NaN lane becomes 0 here, as std::fmax ignores NaN in the reference.
    amax = _mm256_max_ps(amax, _mm256_max_ps(_mm256_andnot_ps(sign, v[j]), zero));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float d = _mm_cvtss_f32(m) / 127.0f;
  const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i q[4];
  __m256i sum = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // max(r, -127) takes -127 for a NaN r, as std::fmax does in the reference.
    q[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    sum = _mm256_add_epi32(sum, q[j]);
  }
  const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(block->q), ordered);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  block->scale = d;
  block->sum = _mm_cvtsi128_si32(s);
}

}  // namespace

DotFn Dot(int bits, bool symmetric) {
  static constexpr std::array<DotFn, 7> kAsym = {&DotImpl<2, false>, &DotImpl<3, false>, &DotImpl<4, false>,
                                                 &DotImpl<5, false>, &DotImpl<6, false>, &DotImpl<7, false>,
                                                 &DotImpl<8, false>};
  static constexpr std::array<DotFn, 7> kSymm = {&DotImpl<2, true>, &DotImpl<3, true>, &DotImpl<4, true>,
                                                 &DotImpl<5, true>, &DotImpl<6, true>, &DotImpl<7, true>,
                                                 &DotImpl<8, true>};
  MIXQ_CHECK(bits >= 2 && bits <= 8);
  return symmetric ? kSymm[static_cast<size_t>(bits - 2)] : kAsym[static_cast<size_t>(bits - 2)];
}

MIXQ_AVX2 void QuantizeActivation(const float* x, void* dst, int64_t n, int64_t group) {
  const int64_t g = (group == 0 || group > n) ? n : group;
  auto* block = static_cast<IntActivationBlock*>(dst);
  for (int64_t start = 0; start < n; start += g) {
    const int64_t len = std::min(g, n - start);
    for (int64_t i = 0; i < len; i += kIntActivationBlockSize, ++block) {
      if (len - i >= kIntActivationBlockSize) {
        QuantizeFullBlock(x + start + i, block);
      } else {
        QuantizeIntActivationBlockRef(x + start + i, len - i, block);
      }
    }
  }
}

}  // namespace mixq::int_dot_avx2
