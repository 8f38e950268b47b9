// AVX-512 VNNI kernels of ggml's 32-weight types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), compiled per
// function with target attributes; ggml_dot.cc calls them only after CpuHasAvx512Vnni().
//
// Why they are faster than the AVX2 ones (which spend ~21 instructions per 32-weight block):
// - `vpdpbusd` (unsigned bytes x signed bytes, four products summed into each int32 lane) replaces
//   maddubs + madd, and the weight codes stay unsigned: a type whose value is code - K (Q4_0: K = 8,
//   Q5_0: 16, Q8_0 and IQ4_NL after a +128 bias: 128) starts its accumulator at -K * (sum of the four
//   activations of the lane), which depends only on the activation block.
// - `dot_rows` walks 8 rows at once (decode): each activation block is loaded, its F16 scale converted
//   and its -K * sum computed once for 8 rows, so a row's block costs the unpack, one vpdpbusd, a
//   convert, a multiply by the activation scale and an FMA whose weight-scale operand is a broadcast
//   table load. In prefill, tiles of 4 rows x 4 tokens also share each weight block's unpack and scale.
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

// Block i of R weight rows against block i of T activation rows: sum[r][t] += d_w * d_a * (the block's
// integer dot). The activation's load, scale and -K * sum are shared by the R rows, the weight's unpack
// and scale by the T tokens. Q4_1/Q5_1 add m_w * s_a / 8 in all 8 lanes (exact: a power-of-two scale),
// into sum_min, a second chain, when the tile is small enough for its FMA latency to show (kSplitMin),
// else into sum.
template <typename Kind, int R, int T>
struct Tile {
  using Weight = typename Kind::Weight;
  using Activation = typename Kind::Activation;
  static constexpr bool kSplitMin = R * T <= 8;

  MIXQ_AVX512 static inline void Step(const Weight* const x[R], const Activation* const y[T], int64_t i,
                                      const float* half, __m256 sum[R][T], __m256 sum_min[R][T]) {
    __m256i a[T], base[T];
    __m256 da[T], s_eighth[T];
    for (int t = 0; t < T; ++t) {
      a[t] = LoadBytes(y[t][i].qs);
      da[t] = _mm256_set1_ps(half[y[t][i].d]);
      base[t] = _mm256_setzero_si256();
      if constexpr (Kind::kOffset != 0) {
        const __m256i offset = _mm256_set1_epi8(static_cast<char>(Kind::kOffset));
        base[t] = _mm256_sub_epi32(base[t], _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, a[t]));
      }
      if constexpr (Kind::kHasMin) s_eighth[t] = _mm256_set1_ps(half[y[t][i].s] * 0.125f);
    }
    for (int r = 0; r < R; ++r) {
      const __m256i codes = Kind::Codes(x[r][i]);
      const __m256 dw = _mm256_set1_ps(half[x[r][i].d]);
      for (int t = 0; t < T; ++t) {
        const __m256i dot = _mm256_dpbusd_epi32(base[t], codes, a[t]);
        sum[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), da[t]), dw, sum[r][t]);
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
  MIXQ_AVX512 static inline void Run(const uint8_t* w, size_t row_bytes, const uint8_t* act, size_t act_bytes,
                                     int64_t nb, float* out, int64_t out_stride) {
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
    if constexpr (kSets == 2) {
      for (; i + 1 < nb; i += 2) {
        Step(x, y, i, half, acc[0], acc_min[0]);
        Step(x, y, i + 1, half, acc[1], acc_min[1]);
      }
    }
    for (; i < nb; ++i) Step(x, y, i, half, acc[0], acc_min[0]);
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        __m256 total = _mm256_add_ps(acc[0][r][t], acc_min[0][r][t]);
        if constexpr (kSets == 2) total = _mm256_add_ps(total, _mm256_add_ps(acc[1][r][t], acc_min[1][r][t]));
        out[t * out_stride + r] = HorizontalSum(total);
      }
    }
  }
};

// One token (decode): 8 rows per step share each activation block's load, scale and offset eight ways,
// while the accumulators (and Q4_1/Q5_1's second set) and the shared values fit in the 32 vector
// registers; then 4, 2 and 1 for the tail. Several tokens (prefill): tiles of 4 rows x 4 tokens share
// the weight unpack four ways as well (16 accumulators); leftover tokens go one at a time.
template <typename Kind>
MIXQ_AVX512 void DotRowsAny(const void* w, size_t row_bytes, int64_t n_rows, const void* act, size_t act_bytes,
                            int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(act);
  const int64_t nb = n / kQK;
  auto row = [&](int64_t r) { return wb + static_cast<size_t>(r) * row_bytes; };
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    const uint8_t* a = ab + static_cast<size_t>(t) * act_bytes;
    float* o = out + t * out_stride;
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4) Tile<Kind, 4, 4>::Run(row(r), row_bytes, a, act_bytes, nb, o + r, out_stride);
    for (; r < n_rows; ++r) Tile<Kind, 1, 4>::Run(row(r), row_bytes, a, act_bytes, nb, o + r, out_stride);
  }
  for (; t < n_tokens; ++t) {
    const uint8_t* a = ab + static_cast<size_t>(t) * act_bytes;
    float* o = out + t * out_stride;
    int64_t r = 0;
    for (; r + 8 <= n_rows; r += 8) Tile<Kind, 8, 1>::Run(row(r), row_bytes, a, 0, nb, o + r, 0);
    if (r + 4 <= n_rows) {
      Tile<Kind, 4, 1>::Run(row(r), row_bytes, a, 0, nb, o + r, 0);
      r += 4;
    }
    for (; r + 2 <= n_rows; r += 2) Tile<Kind, 2, 1>::Run(row(r), row_bytes, a, 0, nb, o + r, 0);
    if (r < n_rows) Tile<Kind, 1, 1>::Run(row(r), row_bytes, a, 0, nb, o + r, 0);
  }
}

}  // namespace

#define MIXQ_GGML_DOT_DEFINE_ROWS(type)                                                                         \
  MIXQ_AVX512 float Dot##type##Avx512(const void* w, const void* a, int64_t n, int64_t) {                       \
    float out;                                                                                                  \
    Tile<Kind##type, 1, 1>::Run(static_cast<const uint8_t*>(w), 0, static_cast<const uint8_t*>(a), 0, n / kQK, \
                                &out, 0);                                                                       \
    return out;                                                                                                 \
  }                                                                                                             \
  MIXQ_AVX512 void DotRows##type##Avx512(const void* w, size_t row_bytes, int64_t n_rows, const void* a,        \
                                         size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,   \
                                         int64_t out_stride) {                                                  \
    DotRowsAny<Kind##type>(w, row_bytes, n_rows, a, act_bytes, n_tokens, n, out, out_stride);                   \
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
