// AVX2 (+FMA, F16C) kernels of ggml's weight types, compiled per function with target attributes so the
// project needs no -m flags; ggml_dot.cc calls them only after CpuHasAvx2().
//
// Every dot product works as ggml's AVX2 code does: widen the packed codes to one byte per weight,
// multiply 32 weight bytes with 32 activation bytes by _mm256_maddubs_epi16 (unsigned x signed: signed
// weights go through the _mm256_sign_epi8 trick, |w| times a with w's sign, or stay as unsigned codes
// whose offset is subtracted afterwards: maddubs(8, a) for Q4_0, 32 * bsums for Q6_K), sum pairs to int32 with
// _mm256_madd_epi16 (by ones, or by the sub-block scales for the k-quants), and apply the float scales
// once per block (32 weights) or super-block (256). The integer parts are exact, so only the float
// accumulation order differs from the scalar references.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_blocks.h"
#include "mixq/kernels/ggml_dot.h"
#include "mixq/kernels/ggml_dot_internal.h"
#include "mixq/kernels/packed_gemm_internal.h"

#define MIXQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MIXQ_TILE_TARGET MIXQ_AVX2
#include "mixq/kernels/ggml_dot_tile.h"
#define MIXQ_INTERLEAVED_TARGET MIXQ_AVX2
#include "mixq/kernels/interleaved_rows_avx2.h"

namespace mixq::ggml_dot {

using namespace ggml;

namespace {

inline float HalfToFloat(const float* table, uint16_t h) { return table[h]; }
MIXQ_AVX2 inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }

MIXQ_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

MIXQ_AVX2 inline int HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

MIXQ_AVX2 inline __m256i LoadBytes(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of nibbles -> 32 bytes: low nibbles in bytes 0..15, high nibbles in 16..31 (the legacy
// block order: weight j in the low nibble of byte j, weight j+16 in its high nibble).
MIXQ_AVX2 inline __m256i Nibbles32(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// 32 bits -> 32 bytes, 0xff where bit j of qh is set.
MIXQ_AVX2 inline __m256i BitsToBytes32(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit_of_byte = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_byte), bit_of_byte);
}

// Signed weight bytes w (-128..127) times signed activation bytes a (-127..127), pairs summed to int16
// (|w| * sign(w) * a: at most 2 * 128 * 127, which fits).
MIXQ_AVX2 inline __m256i MulPairsSigned(__m256i w, __m256i a) {
  return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

// sum of 32 w*a products as 8 int32 lanes, converted to float.
MIXQ_AVX2 inline __m256 DotBlockSigned(__m256i w, __m256i a) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(MulPairsSigned(w, a), _mm256_set1_epi16(1)));
}
MIXQ_AVX2 inline __m256 DotBlockUnsigned(__m256i w, __m256i a) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1)));
}

// Rounds half away from zero, like roundf: exact, since v - trunc(v) is exact for |v| < 2^23.
MIXQ_AVX2 inline __m256 RoundHalfAway(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
  const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));
  const __m256 bump = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step);
  return _mm256_add_ps(t, bump);
}

// Four vectors of 8 int32 (elements 0..31 in order) -> 32 int8 in order (values already in -127..127).
MIXQ_AVX2 inline __m256i PackInt32ToInt8(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i i01 = _mm256_packs_epi32(i0, i1);
  const __m256i i23 = _mm256_packs_epi32(i2, i3);
  const __m256i bytes = _mm256_packs_epi16(i01, i23);
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

MIXQ_AVX2 inline __m256 AbsPs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

MIXQ_AVX2 inline float MaxOf(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// One Q8_0/Q8_1 block; returns the unrounded d and sum(q) in *q_sum (the same operations as the
// reference: amax / 127, 1 / d, x * id, roundf).
MIXQ_AVX2 inline float QuantizeBlock32(const float* x, int8_t* qs, int* q_sum) {
  __m256 v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 8 * k);
  const __m256 amax_v = _mm256_max_ps(_mm256_max_ps(AbsPs(v[0]), AbsPs(v[1])), _mm256_max_ps(AbsPs(v[2]), AbsPs(v[3])));
  const float d = MaxOf(amax_v) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m256 idv = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = _mm256_cvttps_epi32(RoundHalfAway(_mm256_mul_ps(v[k], idv)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), PackInt32ToInt8(q[0], q[1], q[2], q[3]));
  *q_sum = HorizontalSum(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  return d;
}

}  // namespace

MIXQ_AVX2 void QuantizeQ8_0Avx2(const float* x, void* dst, int64_t n, int64_t) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    int sum;
    y[i].d = _cvtss_sh(QuantizeBlock32(x, y[i].qs, &sum), _MM_FROUND_TO_NEAREST_INT);
  }
}

MIXQ_AVX2 void QuantizeQ8_1Avx2(const float* x, void* dst, int64_t n, int64_t) {
  auto* y = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    int sum;
    const float d = QuantizeBlock32(x, y[i].qs, &sum);
    y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    y[i].s = _cvtss_sh(static_cast<float>(sum) * d, _MM_FROUND_TO_NEAREST_INT);
  }
}

MIXQ_AVX2 void QuantizeQ8_KAvx2(const float* x, void* dst, int64_t n, int64_t) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    __m256 amax_v = _mm256_setzero_ps();
    for (int j = 0; j < kQK_K; j += 8) amax_v = _mm256_max_ps(amax_v, AbsPs(_mm256_loadu_ps(x + j)));
    const float amax = MaxOf(amax_v);
    if (amax == 0.0f) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The reference keeps the first element of largest magnitude, whose sign sets the scale's sign.
    float max = 0.0f;
    const __m256 amax_b = _mm256_set1_ps(amax);
    for (int j = 0; j < kQK_K; j += 8) {
      const int mask = _mm256_movemask_ps(_mm256_cmp_ps(AbsPs(_mm256_loadu_ps(x + j)), amax_b, _CMP_EQ_OQ));
      if (mask != 0) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(mask))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 iscale_v = _mm256_set1_ps(iscale);
    const __m256i top = _mm256_set1_epi32(127);
    for (int j = 0; j < kQK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), iscale_v);
        q[k] = _mm256_min_epi32(top, _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), PackInt32ToInt8(q[0], q[1], q[2], q[3]));
      y[i].bsums[j / 16] = static_cast<int16_t>(HorizontalSum(_mm256_add_epi32(q[0], q[1])));
      y[i].bsums[j / 16 + 1] = static_cast<int16_t>(HorizontalSum(_mm256_add_epi32(q[2], q[3])));
    }
    y[i].d = 1.0f / iscale;
  }
}

namespace {

// The legacy 32-weight types against Q8_0: `kBlockDot(block, a)` gives the block's integer dot as 8
// float partial sums. Two blocks per step into two accumulators, so consecutive FMAs do not wait on
// each other.
template <typename Block, __m256 (*kBlockDot)(const Block&, __m256i)>
MIXQ_AVX2 inline float DotSymmetric32(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const float* half = HalfTable();
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 d0 = _mm256_set1_ps(HalfToFloat(half, x[i].d) * HalfToFloat(half, y[i].d));
    const __m256 d1 = _mm256_set1_ps(HalfToFloat(half, x[i + 1].d) * HalfToFloat(half, y[i + 1].d));
    acc0 = _mm256_fmadd_ps(d0, kBlockDot(x[i], LoadBytes(y[i].qs)), acc0);
    acc1 = _mm256_fmadd_ps(d1, kBlockDot(x[i + 1], LoadBytes(y[i + 1].qs)), acc1);
  }
  if (i < nb) {
    const __m256 d0 = _mm256_set1_ps(HalfToFloat(half, x[i].d) * HalfToFloat(half, y[i].d));
    acc0 = _mm256_fmadd_ps(d0, kBlockDot(x[i], LoadBytes(y[i].qs)), acc0);
  }
  return HorizontalSum(_mm256_add_ps(acc0, acc1));
}

// The offset types against Q8_1: unsigned codes, plus m_w * s_a per block.
template <typename Block, __m256i (*kWeights)(const Block&)>
MIXQ_AVX2 inline float DotOffset32(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  const float* half = HalfTable();
  const int64_t nb = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float offsets = 0.0f;
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const __m256 d0 = _mm256_set1_ps(HalfToFloat(half, x[i].d) * HalfToFloat(half, y[i].d));
    const __m256 d1 = _mm256_set1_ps(HalfToFloat(half, x[i + 1].d) * HalfToFloat(half, y[i + 1].d));
    acc0 = _mm256_fmadd_ps(d0, DotBlockUnsigned(kWeights(x[i]), LoadBytes(y[i].qs)), acc0);
    acc1 = _mm256_fmadd_ps(d1, DotBlockUnsigned(kWeights(x[i + 1]), LoadBytes(y[i + 1].qs)), acc1);
    offsets += HalfToFloat(half, x[i].m) * HalfToFloat(half, y[i].s) +
               HalfToFloat(half, x[i + 1].m) * HalfToFloat(half, y[i + 1].s);
  }
  if (i < nb) {
    const __m256 d0 = _mm256_set1_ps(HalfToFloat(half, x[i].d) * HalfToFloat(half, y[i].d));
    acc0 = _mm256_fmadd_ps(d0, DotBlockUnsigned(kWeights(x[i]), LoadBytes(y[i].qs)), acc0);
    offsets += HalfToFloat(half, x[i].m) * HalfToFloat(half, y[i].s);
  }
  return HorizontalSum(_mm256_add_ps(acc0, acc1)) + offsets;
}

// Block dots of the symmetric types: 32 weights with 32 activation bytes -> 8 float partial sums.
MIXQ_AVX2 inline __m256 BlockQ8_0Dot(const BlockQ8_0& b, __m256i a) { return DotBlockSigned(LoadBytes(b.qs), a); }
// Q4_0 without the sign trick: the codes are 0..15, so maddubs(codes, a) - maddubs(8, a) is
// sum (code - 8) * a per pair (both terms and the difference fit in int16).
MIXQ_AVX2 inline __m256 BlockQ4_0Dot(const BlockQ4_0& b, __m256i a) {
  const __m256i pairs =
      _mm256_sub_epi16(_mm256_maddubs_epi16(Nibbles32(b.qs), a), _mm256_maddubs_epi16(_mm256_set1_epi8(8), a));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}
MIXQ_AVX2 inline __m256 BlockQ5_0Dot(const BlockQ5_0& b, __m256i a) {
  const __m256i codes = _mm256_or_si256(Nibbles32(b.qs), _mm256_and_si256(BitsToBytes32(b.qh), _mm256_set1_epi8(0x10)));
  const __m256i pairs =
      _mm256_sub_epi16(_mm256_maddubs_epi16(codes, a), _mm256_maddubs_epi16(_mm256_set1_epi8(16), a));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}
MIXQ_AVX2 inline __m256i WeightsQ4_1(const BlockQ4_1& b) { return Nibbles32(b.qs); }
MIXQ_AVX2 inline __m256i WeightsQ5_1(const BlockQ5_1& b) {
  return _mm256_or_si256(Nibbles32(b.qs), _mm256_and_si256(BitsToBytes32(b.qh), _mm256_set1_epi8(0x10)));
}
MIXQ_AVX2 inline __m256i Iq4nlTable() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
}
MIXQ_AVX2 inline __m256 BlockIQ4_NLDot(const BlockIQ4_NL& b, __m256i a) {
  return DotBlockSigned(_mm256_shuffle_epi8(Iq4nlTable(), Nibbles32(b.qs)), a);
}

}  // namespace

MIXQ_AVX2 float DotQ8_0Avx2(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockQ8_0, BlockQ8_0Dot>(w, a, n);
}
MIXQ_AVX2 float DotQ4_0Avx2(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockQ4_0, BlockQ4_0Dot>(w, a, n);
}
MIXQ_AVX2 float DotQ5_0Avx2(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockQ5_0, BlockQ5_0Dot>(w, a, n);
}
MIXQ_AVX2 float DotIQ4_NLAvx2(const void* w, const void* a, int64_t n, int64_t) {
  return DotSymmetric32<BlockIQ4_NL, BlockIQ4_NLDot>(w, a, n);
}
MIXQ_AVX2 float DotQ4_1Avx2(const void* w, const void* a, int64_t n, int64_t) {
  return DotOffset32<BlockQ4_1, WeightsQ4_1>(w, a, n);
}
MIXQ_AVX2 float DotQ5_1Avx2(const void* w, const void* a, int64_t n, int64_t) {
  return DotOffset32<BlockQ5_1, WeightsQ5_1>(w, a, n);
}

namespace {

// The Kinds of ggml_dot_tile.h (dot_rows): the same block dots as above, with what depends only on the
// activation block (its bytes, maddubs(K, a) for Q4_0/Q5_0) prepared once for every row of a step.
struct PreparedBytes {
  __m256i a;
};
struct PreparedWithOffset {
  __m256i a;
  __m256i offset_pairs;  // maddubs(K, a): K * (a_2j + a_2j+1) as int16
};

template <typename WeightBlock, typename ActivationBlock, bool kMin>
struct KindAvx2 {
  using Weight = WeightBlock;
  using Activation = ActivationBlock;
  static constexpr bool kHasMin = kMin;
};

// Signed weights: the sign trick, |w| x (a with w's sign).
template <typename WeightBlock>
struct KindSigned : KindAvx2<WeightBlock, BlockQ8_0, false> {
  using Prepared = PreparedBytes;
  MIXQ_AVX2 static Prepared Prepare(const BlockQ8_0& y) { return {LoadBytes(y.qs)}; }
  MIXQ_AVX2 static __m256i Dot(__m256i w, const Prepared& p) {
    return _mm256_madd_epi16(MulPairsSigned(w, p.a), _mm256_set1_epi16(1));
  }
};
// Unsigned codes with value code - K: maddubs(codes, a) - maddubs(K, a), pairs fit in int16.
template <typename WeightBlock, int kOffset>
struct KindOffset : KindAvx2<WeightBlock, BlockQ8_0, false> {
  using Prepared = PreparedWithOffset;
  MIXQ_AVX2 static Prepared Prepare(const BlockQ8_0& y) {
    const __m256i a = LoadBytes(y.qs);
    return {a, _mm256_maddubs_epi16(_mm256_set1_epi8(kOffset), a)};
  }
  MIXQ_AVX2 static __m256i Dot(__m256i codes, const Prepared& p) {
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(codes, p.a), p.offset_pairs), _mm256_set1_epi16(1));
  }
};
// Unsigned codes with an offset m per block (applied by the tile through Q8_1's s).
template <typename WeightBlock>
struct KindUnsigned : KindAvx2<WeightBlock, BlockQ8_1, true> {
  using Prepared = PreparedBytes;
  MIXQ_AVX2 static Prepared Prepare(const BlockQ8_1& y) { return {LoadBytes(y.qs)}; }
  MIXQ_AVX2 static __m256i Dot(__m256i codes, const Prepared& p) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, p.a), _mm256_set1_epi16(1));
  }
};

struct KindQ8_0 : KindSigned<BlockQ8_0> {
  MIXQ_AVX2 static __m256i Codes(const BlockQ8_0& b) { return LoadBytes(b.qs); }
};
struct KindIQ4_NL : KindSigned<BlockIQ4_NL> {
  MIXQ_AVX2 static __m256i Codes(const BlockIQ4_NL& b) { return _mm256_shuffle_epi8(Iq4nlTable(), Nibbles32(b.qs)); }
};
struct KindQ4_0 : KindOffset<BlockQ4_0, 8> {
  MIXQ_AVX2 static __m256i Codes(const BlockQ4_0& b) { return Nibbles32(b.qs); }
};
struct KindQ5_0 : KindOffset<BlockQ5_0, 16> {
  MIXQ_AVX2 static __m256i Codes(const BlockQ5_0& b) {
    return _mm256_or_si256(Nibbles32(b.qs), _mm256_and_si256(BitsToBytes32(b.qh), _mm256_set1_epi8(0x10)));
  }
};
struct KindQ4_1 : KindUnsigned<BlockQ4_1> {
  MIXQ_AVX2 static __m256i Codes(const BlockQ4_1& b) { return WeightsQ4_1(b); }
};
struct KindQ5_1 : KindUnsigned<BlockQ5_1> {
  MIXQ_AVX2 static __m256i Codes(const BlockQ5_1& b) { return WeightsQ5_1(b); }
};

// 16 vector registers: prefill tiles of 2 rows x 2 tokens.
constexpr int kTileRows = 2, kTileTokens = 2;

}  // namespace

#define MIXQ_GGML_DOT_DEFINE_ROWS(type)                                                                          \
  MIXQ_AVX2 void DotRows##type##Avx2(const void* w, size_t row_bytes, int64_t n_rows, const void* a,            \
                                     size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,       \
                                     int64_t out_stride) {                                                      \
    TileDotRows<Kind##type, kTileRows, kTileTokens>(w, row_bytes, n_rows, a, act_bytes, n_tokens, n, out, \
                                                           out_stride);                                      \
  }

MIXQ_GGML_DOT_DEFINE_ROWS(Q8_0)
MIXQ_GGML_DOT_DEFINE_ROWS(Q4_0)
MIXQ_GGML_DOT_DEFINE_ROWS(Q4_1)
MIXQ_GGML_DOT_DEFINE_ROWS(Q5_0)
MIXQ_GGML_DOT_DEFINE_ROWS(Q5_1)
MIXQ_GGML_DOT_DEFINE_ROWS(IQ4_NL)

#undef MIXQ_GGML_DOT_DEFINE_ROWS

namespace {

// kGroups groups of 8 interleaved Q4_0 rows (nb blocks apart) with one token: 8 row sums a register,
// a block's value d_w * d_a * (sum code * q - 8 * sum(q)) with the 8 rows' scales converted by one
// `vcvtph2ps`.
template <int kGroups>
MIXQ_AVX2 void DotGroupQ4_0(const BlockQ4_0x8* x, const BlockQ8_0* y, const float* scale_a, const int32_t* offset_a,
                            int64_t nb, float* out) {
  __m256 acc0[kGroups], acc1[kGroups];
  for (int i = 0; i < kGroups; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* runs[kGroups];
    for (int i = 0; i < kGroups; ++i) {
      interleaved::PrefetchAhead<sizeof(BlockQ4_0x8)>(x + i * nb + b);
      runs[i] = x[i * nb + b].qs;
    }
    __m256i dots[kGroups];
    interleaved::NibbleRunsDot<kGroups>(runs, y[b].qs, dots);
    const __m256i offset = _mm256_set1_epi32(offset_a[b]);
    const __m256 da = _mm256_set1_ps(scale_a[b]);
    for (int i = 0; i < kGroups; ++i) {
      const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[i * nb + b].d), da);
      const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(dots[i], offset));
      // Two accumulators, alternating blocks, so consecutive FMAs do not wait on each other.
      if (b & 1) {
        acc1[i] = _mm256_fmadd_ps(v, d, acc1[i]);
      } else {
        acc0[i] = _mm256_fmadd_ps(v, d, acc0[i]);
      }
    }
  }
  for (int i = 0; i < kGroups; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_add_ps(acc0[i], acc1[i]));
}

// Each token's activation scales (as float) and 8 * sum(q) per block are computed once per call; then
// kGroups groups at a time, every token meets them while their bytes are in cache.
template <int kGroups>
MIXQ_AVX2 void DotGroupsQ4_0(const void* w, size_t group_bytes, int64_t n_groups, const void* act, size_t act_bytes,
                             int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = n / kQK;
  thread_local std::vector<float> scales;
  thread_local std::vector<int32_t> offsets;
  scales.resize(static_cast<size_t>(nb * n_tokens));
  offsets.resize(static_cast<size_t>(nb * n_tokens));
  const float* half = HalfTable();
  const auto* ab = static_cast<const uint8_t*>(act);
  const auto token = [&](int64_t t) { return reinterpret_cast<const BlockQ8_0*>(ab + static_cast<size_t>(t) * act_bytes); };
  for (int64_t t = 0; t < n_tokens; ++t) {
    const BlockQ8_0* y = token(t);
    for (int64_t b = 0; b < nb; ++b) {
      scales[t * nb + b] = half[y[b].d];
      const __m256i eight_a = _mm256_maddubs_epi16(_mm256_set1_epi8(8), LoadBytes(y[b].qs));
      offsets[t * nb + b] = HorizontalSum(_mm256_madd_epi16(eight_a, _mm256_set1_epi16(1)));
    }
  }
  interleaved::ForEachGroupAndToken<kGroups>(
      w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
      [&](const uint8_t* x, const uint8_t* y, int64_t t, float* out8, int n) {
        const auto* groups = reinterpret_cast<const BlockQ4_0x8*>(x);
        const auto* a = reinterpret_cast<const BlockQ8_0*>(y);
        if (kGroups == 2 && n == 2) {
          DotGroupQ4_0<2>(groups, a, scales.data() + t * nb, offsets.data() + t * nb, nb, out8);
        } else {
          DotGroupQ4_0<1>(groups, a, scales.data() + t * nb, offsets.data() + t * nb, nb, out8);
        }
      });
}

}  // namespace

// Two groups a call share each activation broadcast: +10.5% decode on the AVX2-only Zen 3 (session 11).
MIXQ_AVX2 void DotGroupsQ4_0Avx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsQ4_0<2>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

namespace {

// Each token's activation block scales d_a as floats, [n_tokens][nb], in the calling thread's scratch: a
// group then reads nb floats instead of looking each block's half up in HalfTable, whose lines (up to one
// a block, 344 in an 11008-wide row) crowded the activations out of L1 (AVX-512's DotGroupsBiasedVnni).
MIXQ_AVX2 const float* ActivationScalesQ8_0(const void* act, size_t act_bytes, int64_t n_tokens, int64_t nb) {
  thread_local std::vector<float> scales;
  scales.resize(static_cast<size_t>(nb * n_tokens));
  const float* half = HalfTable();
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* y =
        reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(act) + static_cast<size_t>(t) * act_bytes);
    for (int64_t b = 0; b < nb; ++b) scales[t * nb + b] = half[y[b].d];
  }
  return scales.data();
}

// One group of 8 interleaved Q8_0 rows with one token: a block's value d_w * d_a * sum w * q, 8 rows a
// register; d_a from `scales`.
MIXQ_AVX2 void DotGroupQ8_0(const BlockQ8_0x8* x, const BlockQ8_0* y, const float* scales, int64_t nb, float* out) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ8_0x8)>(x + b);
    const __m256 dots = _mm256_cvtepi32_ps(interleaved::ByteRunsDot(x[b].qs, y[b].qs));
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(scales[b]));
    if (b & 1) {
      acc1 = _mm256_fmadd_ps(dots, d, acc1);
    } else {
      acc0 = _mm256_fmadd_ps(dots, d, acc0);
    }
  }
  _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
}

}  // namespace

namespace {

// The walk of the super-block groups with one group a call (Q4_K, Q5_K, Q6_K, IQ4_XS): kDot(group's
// blocks, token's Q8_K blocks, super-blocks per row, 8 outputs).
template <typename BlockX8, void (*kDot)(const BlockX8*, const BlockQ8_K*, int64_t, float*)>
MIXQ_AVX2 void DotGroupsK(const void* w, size_t group_bytes, int64_t n_groups, const void* act, size_t act_bytes,
                          int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = n / kQK_K;
  interleaved::ForEachGroupAndToken<1>(w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
                                       [&](const uint8_t* x, const uint8_t* y, int64_t, float* out8, int) {
                                         kDot(reinterpret_cast<const BlockX8*>(x),
                                              reinterpret_cast<const BlockQ8_K*>(y), nb, out8);
                                       });
}

}  // namespace

namespace {

// 8 rows' 8-bit scales (row r's at byte r of `eight`) as int16 pairs for `vpmaddwd` against pair sums
// (lanes 2r and 2r + 1 of a row-interleaved register hold row r): each byte duplicated, then widened.
template <bool kSigned>
MIXQ_AVX2 inline __m256i RowScalePairs(__m128i eight) {
  const __m128i duplicate = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m128i pairs = _mm_shuffle_epi8(eight, duplicate);
  return kSigned ? _mm256_cvtepi8_epi16(pairs) : _mm256_cvtepu8_epi16(pairs);
}
MIXQ_AVX2 inline __m128i LoadEight(const void* p) { return _mm_loadl_epi64(static_cast<const __m128i*>(p)); }

// The mins of one Q4_K / Q5_K super-block of 8 rows against the activation's sub-block sums (Q8_K bsums,
// paired): sum_s min_s * bsum_s per row, by four `vpmaddwd`.
template <typename BlockKx8>
MIXQ_AVX2 __m256i KMins(const BlockKx8& x, const BlockQ8_K& y) {
  __m256i mins = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    const auto even = static_cast<uint16_t>(y.bsums[4 * p] + y.bsums[4 * p + 1]);
    const auto odd = static_cast<uint16_t>(y.bsums[4 * p + 2] + y.bsums[4 * p + 3]);
    const __m256i pair = _mm256_set1_epi32(static_cast<int32_t>(even | static_cast<uint32_t>(odd) << 16));
    const __m256i m = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.mins[p])));
    mins = _mm256_add_epi32(mins, _mm256_madd_epi16(m, pair));
  }
  return mins;
}

// One group of 8 interleaved Q4_K rows with one token. Per super-block: each sub-block's int16 pair sums
// times its 8 row scales by one `vpmaddwd` (|.| <= 2 * 30480 * 63, and 8 sub-blocks < 2^25), the mins
// against the activation's sub-block sums (Q8_K bsums, paired) by four more; then one FMA each with
// d_w * d_a and dmin_w * d_a.
MIXQ_AVX2 void DotGroupQ4_K(const BlockQ4_Kx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ4_Kx8)>(x + b);
    __m256i sums = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const uint8_t* runs = x[b].qs[s];
      __m256i pairs;
      interleaved::NibbleRunsPairs<1>(&runs, y[b].qs + 32 * s, &pairs);
      const __m256i scales = RowScalePairs<false>(LoadEight(x[b].scales[s]));
      sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pairs, scales));
    }
    const __m256i mins = KMins(x[b], y[b]);
    const __m256 da = _mm256_set1_ps(y[b].d);
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), da);
    const __m256 dmin = _mm256_mul_ps(interleaved::RowScales(x[b].dmin), da);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc);
    acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), dmin, acc_min);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, acc_min));
}

}  // namespace

MIXQ_AVX2 void DotGroupsQ4_KAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  // One group a call (two sharing the activation broadcasts, as Q4_0 does, spilled registers: -14%).
  DotGroupsK<BlockQ4_Kx8, DotGroupQ4_K>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

namespace {

// One group of 8 interleaved Q5_K rows with one token: Q4_K's walk on five-bit codes, each half of a
// sub-block's pair sums times its 8 row scales by one `vpmaddwd`.
MIXQ_AVX2 void DotGroupQ5_K(const BlockQ5_Kx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ5_Kx8)>(x + b);
    __m256i sums = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      __m256i pairs[2];
      interleaved::FiveBitRunsPairs(x[b].qs[s], y[b].qs + 32 * s, pairs);
      const __m256i scales = RowScalePairs<false>(LoadEight(x[b].scales[s]));
      sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pairs[0], scales));
      sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pairs[1], scales));
    }
    const __m256 da = _mm256_set1_ps(y[b].d);
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), da);
    const __m256 dmin = _mm256_mul_ps(interleaved::RowScales(x[b].dmin), da);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc);
    acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(KMins(x[b], y[b])), dmin, acc_min);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, acc_min));
}

// One group of 8 interleaved Q4_1 / Q5_0 / Q5_1 rows with one token: per block (d_w * d_a) * (sum code * q
// - offset_a) + m_w * s_a, with the activation's d_a and (offset_a or s_a) per block prepared by the caller
// (offset_a = 16 * sum q for Q5_0; s_a = Q8_1's d * sum q for the types with an offset m).
template <typename BlockLegacyx8, typename Act, bool kFifth, bool kMin>
MIXQ_AVX2 void DotGroupLegacy(const BlockLegacyx8* x, const Act* y, const float* scale_a, const float* second_a,
                              int64_t nb, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockLegacyx8)>(x + b);
    __m256i dots;
    if constexpr (kFifth) {
      __m256i pairs[2];
      interleaved::FiveBitRunsPairs(x[b].qs, y[b].qs, pairs);
      const __m256i ones = _mm256_set1_epi16(1);
      dots = _mm256_add_epi32(_mm256_madd_epi16(pairs[0], ones), _mm256_madd_epi16(pairs[1], ones));
    } else {
      const uint8_t* runs = x[b].qs;
      interleaved::NibbleRunsDot<1>(&runs, y[b].qs, &dots);
    }
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(scale_a[b]));
    if constexpr (kMin) {
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), d, acc);
      acc = _mm256_fmadd_ps(interleaved::RowScales(x[b].m), _mm256_set1_ps(second_a[b]), acc);
    } else {
      acc = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(dots), _mm256_set1_ps(second_a[b])), d, acc);
    }
  }
  _mm256_storeu_ps(out, acc);
}

// The walk of the legacy groups: each token's d_a and second term per block once per call, then group
// by group, every token meeting the group while its bytes are in cache.
template <typename BlockLegacyx8, typename Act, bool kFifth, bool kMin, int kOffset>
MIXQ_AVX2 void DotGroupsLegacy(const void* w, size_t group_bytes, int64_t n_groups, const void* act, size_t act_bytes,
                               int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = n / kQK;
  thread_local std::vector<float> scales, seconds;
  scales.resize(static_cast<size_t>(nb * n_tokens));
  seconds.resize(static_cast<size_t>(nb * n_tokens));
  const float* half = HalfTable();
  const auto* ab = static_cast<const uint8_t*>(act);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* y = reinterpret_cast<const Act*>(ab + static_cast<size_t>(t) * act_bytes);
    for (int64_t b = 0; b < nb; ++b) {
      scales[t * nb + b] = half[y[b].d];
      if constexpr (kMin) {
        seconds[t * nb + b] = half[y[b].s];
      } else {
        int sum = 0;
        for (int j = 0; j < kQK; ++j) sum += y[b].qs[j];
        seconds[t * nb + b] = static_cast<float>(kOffset * sum);
      }
    }
  }
  interleaved::ForEachGroupAndToken<1>(w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
                                       [&](const uint8_t* x, const uint8_t* y, int64_t t, float* out8, int) {
                                         DotGroupLegacy<BlockLegacyx8, Act, kFifth, kMin>(
                                             reinterpret_cast<const BlockLegacyx8*>(x),
                                             reinterpret_cast<const Act*>(y), scales.data() + t * nb,
                                             seconds.data() + t * nb, nb, out8);
                                       });
}

}  // namespace

namespace {

// sum over one block of 32 IQ4 code indices of 8 rows (four nibble runs) of kIq4nlValues[index] * q, times
// each row's int16 scale pair (1 for IQ4_NL; the sub-block scale for IQ4_XS), as 8 int32 row sums. The
// levels are signed, so `vpmaddubsw` takes |level| against q with the level's sign; a pair reaches
// 2 * 127 * 127, so each result goes to int32 by its own `vpmaddwd`.
MIXQ_AVX2 inline __m256i IQ4RunsDot(const uint8_t* runs, const int8_t* q, __m256i scales) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i levels = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
  __m256i sums = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
    const __m256i w_low = _mm256_shuffle_epi8(levels, _mm256_and_si256(run, low));
    const __m256i w_high = _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(run, 4), low));
    const __m256i p_low = _mm256_maddubs_epi16(_mm256_abs_epi8(w_low),
                                               _mm256_sign_epi8(interleaved::BroadcastDword(q + 4 * j), w_low));
    const __m256i p_high = _mm256_maddubs_epi16(
        _mm256_abs_epi8(w_high), _mm256_sign_epi8(interleaved::BroadcastDword(q + 16 + 4 * j), w_high));
    sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p_low, scales));
    sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p_high, scales));
  }
  return sums;
}

// One group of 8 interleaved IQ4_NL rows with one token: per block d_w * d_a * sum level * q; d_a from
// `scales` (ActivationScalesQ8_0).
MIXQ_AVX2 void DotGroupIQ4_NL(const BlockQ4_0x8* x, const BlockQ8_0* y, const float* scales, int64_t nb, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ4_0x8)>(x + b);
    const __m256 dots = _mm256_cvtepi32_ps(IQ4RunsDot(x[b].qs, y[b].qs, ones));
    acc = _mm256_fmadd_ps(dots, _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(scales[b])), acc);
  }
  _mm256_storeu_ps(out, acc);
}

// One group of 8 interleaved IQ4_XS rows with one token: each sub-block's sums times its 8 row scales
// (duplicated per int16 pair) inside IQ4RunsDot, then d_w * d_a per super-block.
MIXQ_AVX2 void DotGroupIQ4_XS(const BlockIQ4_XSx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockIQ4_XSx8)>(x + b);
    __m256i sums = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const __m256i scales = RowScalePairs<true>(LoadEight(x[b].scales[s]));
      sums = _mm256_add_epi32(sums, IQ4RunsDot(x[b].qs[s], y[b].qs + 32 * s, scales));
    }
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(y[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace

MIXQ_AVX2 void DotGroupsIQ4_NLAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                   size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                   int64_t out_stride) {
  const int64_t nb = n / kQK;
  const float* scales = ActivationScalesQ8_0(act, act_bytes, n_tokens, nb);
  interleaved::ForEachGroupAndToken<1>(w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
                                       [&](const uint8_t* x, const uint8_t* y, int64_t t, float* out8, int) {
                                         DotGroupIQ4_NL(reinterpret_cast<const BlockQ4_0x8*>(x),
                                                        reinterpret_cast<const BlockQ8_0*>(y), scales + t * nb, nb,
                                                        out8);
                                       });
}

MIXQ_AVX2 void DotGroupsIQ4_XSAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsK<BlockIQ4_XSx8, DotGroupIQ4_XS>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX2 void DotGroupsQ4_1Avx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsLegacy<BlockQ4_1x8, BlockQ8_1, false, true, 0>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n,
                                                          out, out_stride);
}
MIXQ_AVX2 void DotGroupsQ5_0Avx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsLegacy<BlockQ5_0x8, BlockQ8_0, true, false, 16>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n,
                                                           out, out_stride);
}
MIXQ_AVX2 void DotGroupsQ5_1Avx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsLegacy<BlockQ5_1x8, BlockQ8_1, true, true, 0>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n,
                                                         out, out_stride);
}

namespace {

// The int16 pair sums (lanes 2r, 2r + 1: row r) of the two 16-code halves of a block's codes u (from
// CrumbRunCodes) with 32 activation codes: four `vpmaddubsw` each, <= 4 * 2 * 7 * 127 = 7112.
MIXQ_AVX2 inline void CrumbHalves(const __m256i u[8], const int8_t* a, __m256i halves[2]) {
  for (int half = 0; half < 2; ++half) {
    halves[half] = _mm256_maddubs_epi16(u[4 * half], interleaved::BroadcastDword(a + 16 * half));
    for (int k = 1; k < 4; ++k) {
      halves[half] = _mm256_add_epi16(
          halves[half], _mm256_maddubs_epi16(u[4 * half + k], interleaved::BroadcastDword(a + 16 * half + 4 * k)));
    }
  }
}

// sum_p (v[2p][r] * bsums[2p] + v[2p + 1][r] * bsums[2p + 1]) per row r over the 16 sub-blocks of a
// super-block, for the values v[k][r] of sub-block k and row r in bytes x[k][r]: Q3_K's signed scales
// (its code offset against Q8_K's sums of 16), or the high nibbles (Q2_K's mins).
template <bool kHighNibbles>
MIXQ_AVX2 inline __m256i SubBlockBsums(const void* x_bytes, const int16_t* bsums) {
  const auto* x = static_cast<const uint8_t(*)[8]>(x_bytes);
  __m256i total = _mm256_setzero_si256();
  for (int p = 0; p < 8; ++p) {
    const auto even = static_cast<uint16_t>(bsums[2 * p]), odd = static_cast<uint16_t>(bsums[2 * p + 1]);
    const __m256i pair = _mm256_set1_epi32(static_cast<int32_t>(even | static_cast<uint32_t>(odd) << 16));
    const __m128i bytes = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[2 * p])),
                                            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[2 * p + 1])));
    const __m256i values = kHighNibbles ? _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0f)))
                                        : _mm256_cvtepi8_epi16(bytes);
    total = _mm256_add_epi32(total, _mm256_madd_epi16(values, pair));
  }
  return total;
}

// One group of 8 interleaved Q2_K rows with one token: Q3_K's walk on 2-bit codes with unsigned scales
// (the low nibbles) and, as Q4_K, the mins (high nibbles) against the activation's sums of 16.
MIXQ_AVX2 void DotGroupQ2_K(const BlockQ2_Kx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  const __m128i low = _mm_set1_epi8(0x0f);
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ2_Kx8)>(x + b);
    __m256i sums = _mm256_setzero_si256();
    for (int t = 0; t < 8; ++t) {
      __m256i u[8], halves[2];
      interleaved::CrumbRunCodes<2>(x[b].qs[t], u);
      CrumbHalves(u, y[b].qs + 32 * t, halves);
      for (int half = 0; half < 2; ++half) {
        const __m256i scales = RowScalePairs<false>(_mm_and_si128(LoadEight(x[b].scales_mins[2 * t + half]), low));
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(halves[half], scales));
      }
    }
    const __m256i mins = SubBlockBsums<true>(x[b].scales_mins, y[b].bsums);
    const __m256 da = _mm256_set1_ps(y[b].d);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(interleaved::RowScales(x[b].d), da), acc);
    acc_min =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_mul_ps(interleaved::RowScales(x[b].dmin), da), acc_min);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(acc, acc_min));
}

// One group of 8 interleaved Q3_K rows with one token. Per 32-code block, two sub-blocks of 16: each one's
// four `vpmaddubsw` add up in int16 (<= 4 * 2 * 7 * 127 = 7112) and one `vpmaddwd` takes its 8 row scales;
// the codes' offset 4 comes off once per super-block as 4 * sum_k scale_k * bsum_k (Q8_K's sums of 16),
// by eight `vpmaddwd` over pairs of sub-blocks; then one FMA with d_w * d_a.
MIXQ_AVX2 void DotGroupQ3_K(const BlockQ3_Kx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ3_Kx8)>(x + b);
    __m256i sums = _mm256_setzero_si256();
    for (int t = 0; t < 8; ++t) {
      __m256i u[8], halves[2];
      interleaved::CrumbRunCodes<3>(x[b].qs[t], u);
      CrumbHalves(u, y[b].qs + 32 * t, halves);
      for (int half = 0; half < 2; ++half) {
        const __m256i scales = RowScalePairs<true>(LoadEight(x[b].scales[2 * t + half]));
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(halves[half], scales));
      }
    }
    const __m256i offsets = SubBlockBsums<false>(x[b].scales, y[b].bsums);
    const __m256i total = _mm256_sub_epi32(sums, _mm256_slli_epi32(offsets, 2));
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(y[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), d, acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace

MIXQ_AVX2 void DotGroupsQ2_KAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsK<BlockQ2_Kx8, DotGroupQ2_K>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX2 void DotGroupsQ3_KAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsK<BlockQ3_Kx8, DotGroupQ3_K>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX2 void DotGroupsQ5_KAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsK<BlockQ5_Kx8, DotGroupQ5_K>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

namespace {

// One group of 8 interleaved Q6_K rows with one token. Codes stay unsigned (0..63): per sub-block of 32,
// each run's nibbles get their high bits or-ed in at bits 4-5, two `vpmaddubsw` results (one per run of a
// pair, <= 2 * 2 * 63 * 127 = 32004) add in int16, and a `vpmaddwd` with the 8 rows' scales for that half
// of the sub-block (codes 0..15 or 16..31, duplicated per int16 pair) sums to int32. The offset of 32 is
// 32 * sum over the 16-weight groups of scale * bsum: the rows' scale pairs against the activation's
// paired bsums, one more `vpmaddwd` a sub-block.
MIXQ_AVX2 void DotGroupQ6_K(const BlockQ6_Kx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  const __m128i even = _mm_setr_epi8(0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14);
  const __m128i odd = _mm_setr_epi8(1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockQ6_Kx8)>(x + b);
    __m256i sums = _mm256_setzero_si256(), offsets = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const uint8_t* q = x[b].qs[s];
      const int8_t* a = y[b].qs + 32 * s;
      const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].scales[s]));
      const __m256i scales_low = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, even));
      const __m256i scales_high = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, odd));
      __m256i low_pairs[2], high_pairs[2];
      interleaved::SixBitRunsPairs(q, a, low_pairs, high_pairs);
      for (int v = 0; v < 2; ++v) {
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(low_pairs[v], scales_low));
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(high_pairs[v], scales_high));
      }
      int32_t bsum_pair;
      std::memcpy(&bsum_pair, y[b].bsums + 2 * s, sizeof bsum_pair);
      offsets = _mm256_add_epi32(
          offsets, _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), _mm256_set1_epi32(bsum_pair)));
    }
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(y[b].d));
    const __m256i dots = _mm256_sub_epi32(sums, _mm256_slli_epi32(offsets, 5));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), d, acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace

MIXQ_AVX2 void DotGroupsQ6_KAvx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  DotGroupsK<BlockQ6_Kx8, DotGroupQ6_K>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX2 void DotGroupsQ8_0Avx2(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                 int64_t out_stride) {
  const int64_t nb = n / kQK;
  const float* scales = ActivationScalesQ8_0(act, act_bytes, n_tokens, nb);
  interleaved::ForEachGroupAndToken<1>(w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
                                    [&](const uint8_t* x, const uint8_t* y, int64_t t, float* out8, int) {
                                      DotGroupQ8_0(reinterpret_cast<const BlockQ8_0x8*>(x),
                                                   reinterpret_cast<const BlockQ8_0*>(y), scales + t * nb, nb, out8);
                                    });
}

namespace {

// Unsigned codes (0..63) times activations, pairs weighted by the int16 scales of the two 16-weight
// halves (lane 0: weights 0..15, lane 1: 16..31) and summed into 8 int32 lanes.
MIXQ_AVX2 inline __m256i ScaledDot(__m256i codes, __m256i a, int scale_lo, int scale_hi) {
  const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(scale_hi)),
                                          _mm_set1_epi16(static_cast<int16_t>(scale_lo)));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, a), scales);
}

// sum_g bsums[g] * weights16[g] over the 16 groups of 16 activations (weights16: 16 int16).
MIXQ_AVX2 inline __m256i BsumsDot(const BlockQ8_K& y, __m256i weights16) {
  return _mm256_madd_epi16(LoadBytes(y.bsums), weights16);
}

// The 6-bit scales and mins of Q4_K/Q5_K: bytes 0..7 of *scales and *mins (ggml's get_scale_min_k4,
// four at a time).
inline void ScalesMinsK4(const uint8_t packed[kKScaleSize], uint8_t scales[8], uint8_t mins[8]) {
  uint32_t u[3];
  std::memcpy(u, packed, sizeof u);
  const uint32_t s_lo = u[0] & 0x3f3f3f3fu;
  const uint32_t m_lo = u[1] & 0x3f3f3f3fu;
  const uint32_t s_hi = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
  const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
  std::memcpy(scales, &s_lo, 4);
  std::memcpy(scales + 4, &s_hi, 4);
  std::memcpy(mins, &m_lo, 4);
  std::memcpy(mins + 4, &m_hi, 4);
}

// The 16 signed scales (6-bit code - 32) of a Q3_K block.
inline void ScalesQ3_K(const uint8_t packed[kKScaleSize], int8_t scales[16]) {
  uint32_t u[3];
  std::memcpy(u, packed, sizeof u);
  const uint32_t words[4] = {
      (u[0] & 0x0f0f0f0fu) | ((u[2] & 0x03030303u) << 4),
      (u[1] & 0x0f0f0f0fu) | (((u[2] >> 2) & 0x03030303u) << 4),
      ((u[0] >> 4) & 0x0f0f0f0fu) | (((u[2] >> 4) & 0x03030303u) << 4),
      ((u[1] >> 4) & 0x0f0f0f0fu) | (((u[2] >> 6) & 0x03030303u) << 4),
  };
  uint8_t codes[16];
  std::memcpy(codes, words, sizeof codes);
  for (int s = 0; s < 16; ++s) scales[s] = static_cast<int8_t>(codes[s] - 32);
}

// 8 byte-sized mins -> 16 int16, each repeated twice (one per 16-activation bsum).
MIXQ_AVX2 inline __m256i MinsPerBsum(const uint8_t mins[8]) {
  uint64_t bits;
  std::memcpy(&bits, mins, sizeof bits);
  const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(bits)));
  return _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
}

}  // namespace

MIXQ_AVX2 float DotQ4_KAvx2(const void* w, const void* a, int64_t n, int64_t) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low_nibble = _mm256_set1_epi8(0x0f);
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint8_t scales[8], mins[8];
    ScalesMinsK4(x[i].scales, scales, mins);
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = LoadBytes(x[i].qs + 32 * c);
      const __m256i lo = _mm256_and_si256(q, low_nibble);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_nibble);
      isum = _mm256_add_epi32(isum, ScaledDot(lo, LoadBytes(y[i].qs + 64 * c), scales[2 * c], scales[2 * c]));
      isum = _mm256_add_epi32(isum,
                              ScaledDot(hi, LoadBytes(y[i].qs + 64 * c + 32), scales[2 * c + 1], scales[2 * c + 1]));
    }
    const __m256i msum = BsumsDot(y[i], MinsPerBsum(mins));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].dmin)), _mm256_cvtepi32_ps(msum), acc_min);
  }
  return HorizontalSum(acc) - HorizontalSum(acc_min);
}

MIXQ_AVX2 float DotQ5_KAvx2(const void* w, const void* a, int64_t n, int64_t) {
  const auto* x = static_cast<const BlockQ5_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low_nibble = _mm256_set1_epi8(0x0f);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint8_t scales[8], mins[8];
    ScalesMinsK4(x[i].scales, scales, mins);
    const __m256i qh = LoadBytes(x[i].qh);
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = LoadBytes(x[i].qs + 32 * c);
      // Bit 2c of qh[l] is the fifth bit of weight 64c + l, bit 2c + 1 that of weight 64c + 32 + l.
      const __m256i h_lo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
      const __m256i h_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low_nibble), h_lo);
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low_nibble), h_hi);
      isum = _mm256_add_epi32(isum, ScaledDot(lo, LoadBytes(y[i].qs + 64 * c), scales[2 * c], scales[2 * c]));
      isum = _mm256_add_epi32(isum,
                              ScaledDot(hi, LoadBytes(y[i].qs + 64 * c + 32), scales[2 * c + 1], scales[2 * c + 1]));
    }
    const __m256i msum = BsumsDot(y[i], MinsPerBsum(mins));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].dmin)), _mm256_cvtepi32_ps(msum), acc_min);
  }
  return HorizontalSum(acc) - HorizontalSum(acc_min);
}

MIXQ_AVX2 float DotQ6_KAvx2(const void* w, const void* a, int64_t n, int64_t) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i low_nibble = _mm256_set1_epi8(0x0f);
  const __m256i two_bits = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const int8_t* sc = x[i].scales;
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = LoadBytes(x[i].ql + 64 * h);
      const __m256i ql1 = LoadBytes(x[i].ql + 64 * h + 32);
      const __m256i qh = LoadBytes(x[i].qh + 32 * h);
      const __m256i codes[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low_nibble), _mm256_slli_epi16(_mm256_and_si256(qh, two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(ql1, low_nibble),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_nibble),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_nibble),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two_bits), 4)),
      };
      for (int k = 0; k < 4; ++k) {
        const int s = 8 * h + 2 * k;
        isum = _mm256_add_epi32(isum, ScaledDot(codes[k], LoadBytes(y[i].qs + 128 * h + 32 * k), sc[s], sc[s + 1]));
      }
    }
    // The codes are stored +32: take 32 * sum_s scale_s * bsum_s back out.
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(BsumsDot(y[i], scales16), 5));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return HorizontalSum(acc);
}

namespace {

// K-quant prefill: a row's super-block -- scales, mins, unpacked codes -- is decoded once (Kind::Prepare)
// and used for T tokens (Kind::Accumulate), where `dot` decodes it again for every token. Per token the
// integer and float operations are the type's `dot`'s, in its order, so each output equals `dot`'s bit for
// bit (tested).
struct KindQ4_K {
  using Block = BlockQ4_K;
  struct Super {
    __m256i codes[8];
    uint8_t scales[8], mins[8];
    __m256i mins16;
    float d, dmin;
  };
  MIXQ_AVX2 static void Prepare(const BlockQ4_K& x, Super& p) {
    const __m256i low_nibble = _mm256_set1_epi8(0x0f);
    ScalesMinsK4(x.scales, p.scales, p.mins);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = LoadBytes(x.qs + 32 * c);
      p.codes[2 * c] = _mm256_and_si256(q, low_nibble);
      p.codes[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_nibble);
    }
    p.mins16 = MinsPerBsum(p.mins);
    p.d = HalfToFloat(x.d);
    p.dmin = HalfToFloat(x.dmin);
  }
  MIXQ_AVX2 static void Accumulate(const Super& p, const BlockQ8_K& y, __m256& acc, __m256& acc_min) {
    __m256i isum = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      isum = _mm256_add_epi32(isum, ScaledDot(p.codes[k], LoadBytes(y.qs + 32 * k), p.scales[k], p.scales[k]));
    }
    const __m256i msum = BsumsDot(y, p.mins16);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y.d * p.d), _mm256_cvtepi32_ps(isum), acc);
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(y.d * p.dmin), _mm256_cvtepi32_ps(msum), acc_min);
  }
  MIXQ_AVX2 static float Finish(__m256 acc, __m256 acc_min) { return HorizontalSum(acc) - HorizontalSum(acc_min); }
};

struct KindQ6_K {
  using Block = BlockQ6_K;
  struct Super {
    __m256i codes[8];
    const int8_t* scales;
    __m256i scales16;
    float d;
  };
  MIXQ_AVX2 static void Prepare(const BlockQ6_K& x, Super& p) {
    const __m256i low_nibble = _mm256_set1_epi8(0x0f);
    const __m256i two_bits = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = LoadBytes(x.ql + 64 * h);
      const __m256i ql1 = LoadBytes(x.ql + 64 * h + 32);
      const __m256i qh = LoadBytes(x.qh + 32 * h);
      __m256i* c = p.codes + 4 * h;
      c[0] = _mm256_or_si256(_mm256_and_si256(ql0, low_nibble), _mm256_slli_epi16(_mm256_and_si256(qh, two_bits), 4));
      c[1] = _mm256_or_si256(_mm256_and_si256(ql1, low_nibble),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits), 4));
      c[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_nibble),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two_bits), 4));
      c[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_nibble),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two_bits), 4));
    }
    p.scales = x.scales;
    p.scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
    p.d = HalfToFloat(x.d);
  }
  // Code vector k = 4h + k' meets activations 128h + 32k' = 32k with scales 8h + 2k' = 2k and 2k + 1.
  MIXQ_AVX2 static void Accumulate(const Super& p, const BlockQ8_K& y, __m256& acc, __m256&) {
    __m256i isum = _mm256_setzero_si256();
    for (int k = 0; k < 8; ++k) {
      isum = _mm256_add_epi32(isum,
                              ScaledDot(p.codes[k], LoadBytes(y.qs + 32 * k), p.scales[2 * k], p.scales[2 * k + 1]));
    }
    isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(BsumsDot(y, p.scales16), 5));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y.d * p.d), _mm256_cvtepi32_ps(isum), acc);
  }
  MIXQ_AVX2 static float Finish(__m256 acc, __m256) { return HorizontalSum(acc); }
};

template <typename Kind, int T>
MIXQ_AVX2 void KRowTokens(const typename Kind::Block* x, const uint8_t* act, size_t act_bytes, int64_t nb,
                          float* out, int64_t out_stride) {
  const BlockQ8_K* y[T];
  for (int t = 0; t < T; ++t) y[t] = reinterpret_cast<const BlockQ8_K*>(act + static_cast<size_t>(t) * act_bytes);
  __m256 acc[T], acc_min[T];
  for (int t = 0; t < T; ++t) acc[t] = acc_min[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    typename Kind::Super p;
    Kind::Prepare(x[i], p);
    for (int t = 0; t < T; ++t) Kind::Accumulate(p, y[t][i], acc[t], acc_min[t]);
  }
  for (int t = 0; t < T; ++t) out[t * out_stride] = Kind::Finish(acc[t], acc_min[t]);
}

// Tokens in groups of 4 (then 3, 2) for every row; a last single token is the type's `dot` (so decode
// keeps its own path). 8 tokens at a time measured no faster than 4 on Q4_K.
template <typename Kind>
MIXQ_AVX2 void KDotRows(float (*dot)(const void*, const void*, int64_t, int64_t), const void* w, size_t row_bytes,
                        int64_t n_rows, const void* a, size_t act_bytes, int64_t n_tokens, int64_t n, float* out,
                        int64_t out_stride) {
  using Block = typename Kind::Block;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(a);
  const int64_t nb = n / kQK_K;
  for (int64_t t = 0; t < n_tokens;) {
    const int64_t left = n_tokens - t;
    const uint8_t* at = ab + static_cast<size_t>(t) * act_bytes;
    float* ot = out + t * out_stride;
    for (int64_t r = 0; r < n_rows; ++r) {
      const auto* x = reinterpret_cast<const Block*>(wb + static_cast<size_t>(r) * row_bytes);
      if (left >= 4) {
        KRowTokens<Kind, 4>(x, at, act_bytes, nb, ot + r, out_stride);
      } else if (left == 3) {
        KRowTokens<Kind, 3>(x, at, act_bytes, nb, ot + r, out_stride);
      } else if (left == 2) {
        KRowTokens<Kind, 2>(x, at, act_bytes, nb, ot + r, out_stride);
      } else {
        ot[r] = dot(x, at, n, 0);
      }
    }
    t += left >= 4 ? 4 : left;
  }
}

}  // namespace

MIXQ_AVX2 void DotRowsQ4_KAvx2(const void* w, size_t row_bytes, int64_t n_rows, const void* a, size_t act_bytes,
                               int64_t n_tokens, int64_t n, int64_t, float* out, int64_t out_stride) {
  KDotRows<KindQ4_K>(DotQ4_KAvx2, w, row_bytes, n_rows, a, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX2 void DotRowsQ6_KAvx2(const void* w, size_t row_bytes, int64_t n_rows, const void* a, size_t act_bytes,
                               int64_t n_tokens, int64_t n, int64_t, float* out, int64_t out_stride) {
  KDotRows<KindQ6_K>(DotQ6_KAvx2, w, row_bytes, n_rows, a, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX2 float DotQ3_KAvx2(const void* w, const void* a, int64_t n, int64_t) {
  const auto* x = static_cast<const BlockQ3_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i two_bits = _mm256_set1_epi8(3);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int8_t sc[16];
    ScalesQ3_K(x[i].scales, sc);
    const __m256i hmask = LoadBytes(x[i].hmask);
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q2 = LoadBytes(x[i].qs + 32 * h);
      for (int k = 0; k < 4; ++k) {
        // Codes 0..7 (the stored bit set means "no -4"); the -4 comes back through bsums below.
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * k), two_bits);
        const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + k), one), 2);
        const int s = 8 * h + 2 * k;
        isum = _mm256_add_epi32(
            isum, ScaledDot(_mm256_or_si256(low, high), LoadBytes(y[i].qs + 128 * h + 32 * k), sc[s], sc[s + 1]));
      }
    }
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(BsumsDot(y[i], scales16), 2));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return HorizontalSum(acc);
}

MIXQ_AVX2 float DotQ2_KAvx2(const void* w, const void* a, int64_t n, int64_t) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i two_bits = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const uint8_t* sc = x[i].scales;
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q2 = LoadBytes(x[i].qs + 32 * h);
      for (int k = 0; k < 4; ++k) {
        const __m256i codes = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * k), two_bits);
        const int s = 8 * h + 2 * k;
        isum = _mm256_add_epi32(
            isum, ScaledDot(codes, LoadBytes(y[i].qs + 128 * h + 32 * k), sc[s] & 0x0f, sc[s + 1] & 0x0f));
      }
    }
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sc));
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f)));
    const __m256i msum = BsumsDot(y[i], mins16);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    acc_min = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].dmin)), _mm256_cvtepi32_ps(msum), acc_min);
  }
  return HorizontalSum(acc) - HorizontalSum(acc_min);
}

MIXQ_AVX2 float DotIQ4_XSAvx2(const void* w, const void* a, int64_t n, int64_t) {
  const auto* x = static_cast<const BlockIQ4_XS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i table = Iq4nlTable();
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const int scale =
          (((x[i].scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((x[i].scales_h >> (2 * s)) & 3) << 4)) - 32;
      const __m256i values = _mm256_shuffle_epi8(table, Nibbles32(x[i].qs + 16 * s));
      const __m256i pairs = MulPairsSigned(values, LoadBytes(y[i].qs + 32 * s));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pairs, _mm256_set1_epi16(static_cast<int16_t>(scale))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * HalfToFloat(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
  }
  return HorizontalSum(acc);
}

// ---- The interleaved groups as the packed GEMM's panel blocks (InterleavedRows::unpack_panel): the
// blocks UnpackRows* give, with the same float operations for d and m, so the bytes match theirs.

namespace {

MIXQ_AVX2 inline __m256i PanelDelta(int bias, int offset) { return _mm256_set1_epi8(static_cast<char>(bias - offset)); }

// The IQ4 levels plus the panel's bias, in both lanes (NibbleLevelsToPanel).
MIXQ_AVX2 inline __m256i Iq4nlPanelLevels(int bias) {
  return _mm256_add_epi8(Iq4nlTable(), _mm256_set1_epi8(static_cast<char>(bias)));
}

// Bytes 2r + odd (r = 0..7) of 16 scale or min bytes, widened to 8 floats: the per-row pairs of Q6_K's
// scales and of Q4_K's mins.
template <bool kSigned>
MIXQ_AVX2 inline __m256 PairedBytes(const void* pairs, int odd) {
  const __m128i all = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pairs));
  const __m128i pick = odd != 0 ? _mm_setr_epi8(1, 3, 5, 7, 9, 11, 13, 15, -1, -1, -1, -1, -1, -1, -1, -1)
                                : _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m128i bytes = _mm_shuffle_epi8(all, pick);
  return _mm256_cvtepi32_ps(kSigned ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes));
}

// 8 bytes (one per row) widened to 8 floats.
template <bool kSigned>
MIXQ_AVX2 inline __m256 RowBytes(const void* bytes) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  return _mm256_cvtepi32_ps(kSigned ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b));
}

constexpr size_t kPanel32 = packed_gemm::PanelBlockBytes(kQK);
constexpr size_t kPanel16 = packed_gemm::PanelBlockBytes(16);

// Q4_K and Q5_K: sub-block s of super-block b is panel block 8b + s, d = d * scale_s, m = -dmin * min_s.
template <typename BlockKx8, int kBits>
MIXQ_AVX2 void UnpackPanelK(const void* src, int64_t n, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockKx8*>(src);
  const __m256i delta = PanelDelta(bias, 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const __m256 dd = interleaved::RowScales(x[b].d);
    const __m256 neg_dmin = _mm256_xor_ps(interleaved::RowScales(x[b].dmin), _mm256_set1_ps(-0.0f));
    for (int s = 0; s < 8; ++s) {
      uint8_t* out = panel + (8 * b + s) * kPanel32;
      interleaved::RunCodesToPanel<kBits>(x[b].qs[s], delta, out, out + 128);
      interleaved::StorePanelScales(out, kQK, _mm256_mul_ps(dd, RowBytes<false>(x[b].scales[s])),
                                    _mm256_mul_ps(neg_dmin, PairedBytes<false>(x[b].mins[s / 2], s % 2)));
    }
  }
}

}  // namespace

MIXQ_AVX2 void UnpackPanelQ4_0Avx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockQ4_0x8*>(src);
  const __m256i delta = PanelDelta(bias, 8);
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* out = panel + b * kPanel32;
    interleaved::RunCodesToPanel<4>(x[b].qs, delta, out, out + 128);
    interleaved::StorePanelScales(out, kQK, interleaved::RowScales(x[b].d), _mm256_setzero_ps());
  }
}

MIXQ_AVX2 void UnpackPanelQ8_0Avx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockQ8_0x8*>(src);
  const __m256i delta = PanelDelta(bias, 0);
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* out = panel + b * kPanel32;
    interleaved::RunCodesToPanel<8>(reinterpret_cast<const uint8_t*>(x[b].qs), delta, out, out + 128);
    interleaved::StorePanelScales(out, kQK, interleaved::RowScales(x[b].d), _mm256_setzero_ps());
  }
}

namespace {

template <typename BlockLegacyx8, int kOffset>
MIXQ_AVX2 void UnpackPanelLegacy(const void* src, int64_t n, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockLegacyx8*>(src);
  constexpr int kBits = sizeof(x->qs) == 160 ? 5 : 4;
  const __m256i delta = PanelDelta(bias, kOffset);
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* out = panel + b * kPanel32;
    interleaved::RunCodesToPanel<kBits>(x[b].qs, delta, out, out + 128);
    __m256 m = _mm256_setzero_ps();
    if constexpr (requires { x[b].m; }) m = interleaved::RowScales(x[b].m);
    interleaved::StorePanelScales(out, kQK, interleaved::RowScales(x[b].d), m);
  }
}

}  // namespace

MIXQ_AVX2 void UnpackPanelQ4_1Avx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  UnpackPanelLegacy<BlockQ4_1x8, 0>(src, n, bias, panel);
}
MIXQ_AVX2 void UnpackPanelQ5_0Avx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  UnpackPanelLegacy<BlockQ5_0x8, 16>(src, n, bias, panel);
}
MIXQ_AVX2 void UnpackPanelQ5_1Avx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  UnpackPanelLegacy<BlockQ5_1x8, 0>(src, n, bias, panel);
}

MIXQ_AVX2 void UnpackPanelIQ4_NLAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockQ4_0x8*>(src);
  const __m256i levels = Iq4nlPanelLevels(bias);
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint8_t* out = panel + b * kPanel32;
    interleaved::NibbleLevelsToPanel(x[b].qs, levels, out);
    interleaved::StorePanelScales(out, kQK, interleaved::RowScales(x[b].d), _mm256_setzero_ps());
  }
}

MIXQ_AVX2 void UnpackPanelIQ4_XSAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockIQ4_XSx8*>(src);
  const __m256i levels = Iq4nlPanelLevels(bias);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const __m256 dd = interleaved::RowScales(x[b].d);
    for (int s = 0; s < 8; ++s) {
      uint8_t* out = panel + (8 * b + s) * kPanel32;
      interleaved::NibbleLevelsToPanel(x[b].qs[s], levels, out);
      // m = -0 * 0, as UnpackK<BlockIQ4_XS> gives it.
      interleaved::StorePanelScales(out, kQK, _mm256_mul_ps(dd, RowBytes<true>(x[b].scales[s])),
                                    _mm256_set1_ps(-0.0f));
    }
  }
}

MIXQ_AVX2 void UnpackPanelQ4_KAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  UnpackPanelK<BlockQ4_Kx8, 4>(src, n, bias, panel);
}
MIXQ_AVX2 void UnpackPanelQ5_KAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  UnpackPanelK<BlockQ5_Kx8, 5>(src, n, bias, panel);
}

// Q6_K's blocks are 16 codes wide: sub-block s of super-block b is panel blocks 16b + 2s (codes 0-15,
// scale 2r of the pairs) and 16b + 2s + 1 (codes 16-31, scale 2r + 1).
MIXQ_AVX2 void UnpackPanelQ6_KAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockQ6_Kx8*>(src);
  const __m256i delta = PanelDelta(bias, 32);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const __m256 dd = interleaved::RowScales(x[b].d);
    for (int s = 0; s < 8; ++s) {
      uint8_t* first = panel + (16 * b + 2 * s) * kPanel16;
      uint8_t* second = first + kPanel16;
      interleaved::RunCodesToPanel<6>(x[b].qs[s], delta, first, second);
      interleaved::StorePanelScales(first, 16, _mm256_mul_ps(dd, PairedBytes<true>(x[b].scales[s], 0)),
                                    _mm256_setzero_ps());
      interleaved::StorePanelScales(second, 16, _mm256_mul_ps(dd, PairedBytes<true>(x[b].scales[s], 1)),
                                    _mm256_setzero_ps());
    }
  }
}

// Q2_K and Q3_K likewise: block t's codes 0-15 (sub-block 2t) are panel block 16b + 2t, codes 16-31 the next.
MIXQ_AVX2 void UnpackPanelQ2_KAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockQ2_Kx8*>(src);
  const __m256i delta = PanelDelta(bias, 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const __m256 dd = interleaved::RowScales(x[b].d);
    const __m256 neg_dmin = _mm256_xor_ps(interleaved::RowScales(x[b].dmin), _mm256_set1_ps(-0.0f));
    for (int t = 0; t < 8; ++t) {
      uint8_t* first = panel + (16 * b + 2 * t) * kPanel16;
      interleaved::RunCodesToPanel<2>(x[b].qs[t], delta, first, first + kPanel16);
      for (int half = 0; half < 2; ++half) {
        uint8_t* out = first + half * kPanel16;
        const __m256i bytes = _mm256_cvtepu8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].scales_mins[2 * t + half])));
        const __m256 scales = _mm256_cvtepi32_ps(_mm256_and_si256(bytes, _mm256_set1_epi32(0x0f)));
        const __m256 mins = _mm256_cvtepi32_ps(_mm256_srli_epi32(bytes, 4));
        interleaved::StorePanelScales(out, 16, _mm256_mul_ps(dd, scales), _mm256_mul_ps(neg_dmin, mins));
      }
    }
  }
}

MIXQ_AVX2 void UnpackPanelQ3_KAvx2(const void* src, int64_t n, int64_t, int bias, uint8_t* panel) {
  const auto* x = static_cast<const BlockQ3_Kx8*>(src);
  const __m256i delta = PanelDelta(bias, 4);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const __m256 dd = interleaved::RowScales(x[b].d);
    for (int t = 0; t < 8; ++t) {
      uint8_t* first = panel + (16 * b + 2 * t) * kPanel16;
      interleaved::RunCodesToPanel<3>(x[b].qs[t], delta, first, first + kPanel16);
      for (int half = 0; half < 2; ++half) {
        uint8_t* out = first + half * kPanel16;
        // m = -0 * 0, as UnpackK<BlockQ3_K> gives it.
        interleaved::StorePanelScales(out, 16, _mm256_mul_ps(dd, RowBytes<true>(x[b].scales[2 * t + half])),
                                      _mm256_set1_ps(-0.0f));
      }
    }
  }
}

}  // namespace mixq::ggml_dot

#endif  // __x86_64__
