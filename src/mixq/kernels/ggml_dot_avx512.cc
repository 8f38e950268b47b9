// AVX-512 VNNI kernels of ggml's 32-weight types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), compiled per
// function with target attributes; ggml_dot.cc calls them only after CpuHasAvx512Vnni().
//
// Why they are faster than the AVX2 ones (which spend ~21 instructions per 32-weight block):
// - `vpdpbusd` (unsigned bytes x signed bytes, four products summed into each int32 lane) replaces
//   maddubs + madd, and the weight codes stay unsigned: a type whose value is code - K (Q4_0: K = 8,
//   Q5_0: 16, Q8_0 and IQ4_NL after a +128 bias: 128) starts its accumulator at -K * (sum of the four
//   activations of the lane), which depends only on the activation block.
// - `dot_rows` walks R rows at once: each activation block is loaded, its F16 scale converted and its
//   -K * sum computed once for R rows, so a row's block costs the unpack, one vpdpbusd, a convert, a
//   multiply by the activation scale and an FMA whose weight-scale operand is a broadcast table load.
// - Q5_0/Q5_1 set their fifth bits with one byte-masked add from a mask register (kmov of qh).
// Registers are 256 bits (AVX512VL), one block each: on AMD Zen 4 512-bit operations run as two 256-bit
// halves, so a block per ymm costs the same and needs no cross-block shuffles.
// The integer block sums are exact; only the float accumulation order differs from the references.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstring>

#include "mixq/formats/ggml_blocks.h"
#include "mixq/kernels/ggml_dot_internal.h"

#define MIXQ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace mixq::ggml_dot {

using namespace ggml;

namespace {

MIXQ_AVX512 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

MIXQ_AVX512 inline __m256i LoadBytes(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of nibbles -> 32 unsigned codes: low nibbles in bytes 0..15, high nibbles in 16..31 (weight j
// in the low nibble of byte j, weight j+16 in its high nibble). The 16 bytes are broadcast to both
// halves and the upper half shifted right by 4 per 16-bit word: one load and two operations.
MIXQ_AVX512 inline __m256i Nibbles32(const uint8_t* qs) {
  const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m256i shifts = _mm256_setr_epi64x(0, 0, 0x0004000400040004, 0x0004000400040004);
  return _mm256_and_si256(_mm256_srlv_epi16(both, shifts), _mm256_set1_epi8(0x0f));
}

// Adds 16 to byte j of `codes` where bit j of qh is set (the fifth bit of Q5_0/Q5_1).
MIXQ_AVX512 inline __m256i WithFifthBits(__m256i codes, const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  return _mm256_mask_add_epi8(codes, _cvtu32_mask32(bits), codes, _mm256_set1_epi8(16));
}

// Per type: the weight and activation blocks, the unsigned codes of a weight block, the offset K
// (value = code - K, in units of d) and whether the block has an offset m (value = code * d + m).
struct KindQ8_0 {
  using Weight = BlockQ8_0;
  using Activation = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return _mm256_xor_si256(LoadBytes(b.qs), _mm256_set1_epi8(-128)); }
};
struct KindQ4_0 {
  using Weight = BlockQ4_0;
  using Activation = BlockQ8_0;
  static constexpr int kOffset = 8;
  static constexpr bool kHasMin = false;
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return Nibbles32(b.qs); }
};
struct KindQ5_0 {
  using Weight = BlockQ5_0;
  using Activation = BlockQ8_0;
  static constexpr int kOffset = 16;
  static constexpr bool kHasMin = false;
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return WithFifthBits(Nibbles32(b.qs), b.qh); }
};
struct KindIQ4_NL {
  using Weight = BlockIQ4_NL;
  using Activation = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  // The level table biased by +128 (levels -127..113 -> 1..241), looked up per 128-bit half by pshufb.
  MIXQ_AVX512 static __m256i Codes(const Weight& b) {
    const __m256i table = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues))),
        _mm256_set1_epi8(-128));
    return _mm256_shuffle_epi8(table, Nibbles32(b.qs));
  }
};
struct KindQ4_1 {
  using Weight = BlockQ4_1;
  using Activation = BlockQ8_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return Nibbles32(b.qs); }
};
struct KindQ5_1 {
  using Weight = BlockQ5_1;
  using Activation = BlockQ8_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return WithFifthBits(Nibbles32(b.qs), b.qh); }
};

// One activation block i against block i of R rows: sum[r] += d_w * d_a * (block's integer dot), and for
// Q4_1/Q5_1 sum_min[r] += m_w * s_a / 8 in all 8 lanes (exact: a power-of-two scale), a second chain so
// the two FMAs of a row do not wait on each other.
template <typename Kind, int R>
MIXQ_AVX512 inline void Step(const typename Kind::Weight* const x[R], const typename Kind::Activation& y,
                             int64_t i, const float* half, __m256* sum, __m256* sum_min) {
  const __m256i a = LoadBytes(y.qs);
  const __m256 da = _mm256_set1_ps(half[y.d]);
  __m256i base = _mm256_setzero_si256();
  if constexpr (Kind::kOffset != 0) {
    const __m256i offset = _mm256_set1_epi8(static_cast<char>(Kind::kOffset));
    base = _mm256_sub_epi32(base, _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, a));
  }
  __m256 s_eighth = _mm256_setzero_ps();
  if constexpr (Kind::kHasMin) s_eighth = _mm256_set1_ps(half[y.s] * 0.125f);
  for (int r = 0; r < R; ++r) {
    const __m256i dot = _mm256_dpbusd_epi32(base, Kind::Codes(x[r][i]), a);
    sum[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), da), _mm256_set1_ps(half[x[r][i].d]), sum[r]);
    if constexpr (Kind::kHasMin) sum_min[r] = _mm256_fmadd_ps(_mm256_set1_ps(half[x[r][i].m]), s_eighth, sum_min[r]);
  }
}

// out[r] = dot of row w + r * row_bytes (r < R) with the activation row, nb blocks of 32. With fewer
// than 4 rows the loop alternates two accumulator sets between even and odd blocks, so the FMA latency
// does not bound it.
template <typename Kind, int R>
MIXQ_AVX512 inline void DotRows32(const uint8_t* w, size_t row_bytes, const void* act, int64_t nb, float* out) {
  using Weight = typename Kind::Weight;
  constexpr int kSets = R < 4 ? 2 : 1;
  const auto* y = static_cast<const typename Kind::Activation*>(act);
  const float* half = HalfTable();
  const Weight* x[R];
  for (int r = 0; r < R; ++r) x[r] = reinterpret_cast<const Weight*>(w + static_cast<size_t>(r) * row_bytes);
  __m256 acc[kSets][R], acc_min[kSets][R];
  for (int s = 0; s < kSets; ++s) {
    for (int r = 0; r < R; ++r) acc[s][r] = acc_min[s][r] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  if constexpr (kSets == 2) {
    for (; i + 1 < nb; i += 2) {
      Step<Kind, R>(x, y[i], i, half, acc[0], acc_min[0]);
      Step<Kind, R>(x, y[i + 1], i + 1, half, acc[1], acc_min[1]);
    }
  }
  for (; i < nb; ++i) Step<Kind, R>(x, y[i], i, half, acc[0], acc_min[0]);
  for (int r = 0; r < R; ++r) {
    __m256 total = _mm256_add_ps(acc[0][r], acc_min[0][r]);
    if constexpr (kSets == 2) total = _mm256_add_ps(total, _mm256_add_ps(acc[1][r], acc_min[1][r]));
    out[r] = HorizontalSum(total);
  }
}

// Rows per DotRows32 call: 8 shares each activation block's load, scale and offset eight ways while the
// accumulators (and Q4_1/Q5_1's second set) and the shared values fit in the 32 vector registers.
constexpr int kRowsPerStep = 8;

template <typename Kind>
MIXQ_AVX512 void DotRowsAny(const void* w, size_t row_bytes, int64_t n_rows, const void* act, int64_t n, float* out) {
  const auto* bytes = static_cast<const uint8_t*>(w);
  const int64_t nb = n / kQK;
  int64_t r = 0;
  for (; r + kRowsPerStep <= n_rows; r += kRowsPerStep) {
    DotRows32<Kind, kRowsPerStep>(bytes + static_cast<size_t>(r) * row_bytes, row_bytes, act, nb, out + r);
  }
  if (r + 4 <= n_rows) {
    DotRows32<Kind, 4>(bytes + static_cast<size_t>(r) * row_bytes, row_bytes, act, nb, out + r);
    r += 4;
  }
  for (; r + 2 <= n_rows; r += 2) DotRows32<Kind, 2>(bytes + static_cast<size_t>(r) * row_bytes, row_bytes, act, nb, out + r);
  if (r < n_rows) DotRows32<Kind, 1>(bytes + static_cast<size_t>(r) * row_bytes, row_bytes, act, nb, out + r);
}

}  // namespace

#define MIXQ_GGML_DOT_DEFINE_ROWS(type)                                                                          \
  MIXQ_AVX512 float Dot##type##Avx512(const void* w, const void* a, int64_t n, int64_t) {                        \
    float out;                                                                                                   \
    DotRows32<Kind##type, 1>(static_cast<const uint8_t*>(w), 0, a, n / kQK, &out);                               \
    return out;                                                                                                  \
  }                                                                                                              \
  MIXQ_AVX512 void DotRows##type##Avx512(const void* w, size_t row_bytes, int64_t n_rows, const void* a, int64_t n, \
                                         int64_t, float* out) {                                                  \
    DotRowsAny<Kind##type>(w, row_bytes, n_rows, a, n, out);                                                     \
  }

MIXQ_GGML_DOT_DEFINE_ROWS(Q8_0)
MIXQ_GGML_DOT_DEFINE_ROWS(Q4_0)
MIXQ_GGML_DOT_DEFINE_ROWS(Q4_1)
MIXQ_GGML_DOT_DEFINE_ROWS(Q5_0)
MIXQ_GGML_DOT_DEFINE_ROWS(Q5_1)
MIXQ_GGML_DOT_DEFINE_ROWS(IQ4_NL)

#undef MIXQ_GGML_DOT_DEFINE_ROWS

}  // namespace mixq::ggml_dot

#endif  // __x86_64__
