// AVX-512 VNNI kernels of ggml's 32-weight types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), compiled per
// function with target attributes; ggml_dot.cc calls them only after CpuHasAvx512Vnni().
//
// Why they are faster than the AVX2 ones (which spend ~21 instructions per 32-weight block):
// - `vpdpbusd` (unsigned bytes x signed bytes, four products summed into each int32 lane) replaces
//   maddubs + madd, and the weight codes stay unsigned: a type whose value is code - K (Q4_0: K = 8,
//   Q5_0: 16, Q8_0 and IQ4_NL after a +128 bias: 128) starts its accumulator at -K * (sum of the four
//   activations of the lane), which depends only on the activation block.
// - A block costs the unpack, one vpdpbusd, a convert, a multiply by the activation scale and an FMA
//   whose weight-scale operand is a broadcast table load. Decode walks one row at a time (ggml_dot_tile.h
//   says why); in prefill, tiles of 4 rows x 4 tokens share each weight block's unpack and scale and each
//   activation block's preparation.
// - Q5_0/Q5_1 set their fifth bits with one byte-masked add from a mask register (kmov of qh).
// Registers are 256 bits (AVX512VL), one block each: on AMD Zen 4 512-bit operations run as two 256-bit
// halves, so a block per ymm costs the same and needs no cross-block shuffles.
// The integer block sums are exact; only the float accumulation order differs from the references.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "mixq/formats/ggml_blocks.h"
#include "mixq/kernels/ggml_dot_internal.h"

#define MIXQ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define MIXQ_TILE_TARGET MIXQ_AVX512
#include "mixq/kernels/ggml_dot_tile.h"
#define MIXQ_INTERLEAVED_TARGET MIXQ_AVX512
#include "mixq/kernels/interleaved_rows_avx2.h"

namespace mixq::ggml_dot {

using namespace ggml;

namespace {

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

// The activation side of a block: its bytes, and the accumulator start -K * (sum of the four activations
// of each int32 lane) for a type whose value is code - K.
template <int kOffset>
struct PreparedOffset {
  __m256i a;
  __m256i base;
};
template <int kOffset>
MIXQ_AVX512 inline PreparedOffset<kOffset> PrepareOffset(const int8_t* qs) {
  PreparedOffset<kOffset> p;
  p.a = LoadBytes(qs);
  p.base = _mm256_setzero_si256();
  if constexpr (kOffset != 0) {
    const __m256i offset = _mm256_set1_epi8(static_cast<char>(kOffset));
    p.base = _mm256_sub_epi32(p.base, _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, p.a));
  }
  return p;
}

// Per type (the Kind interface of ggml_dot_tile.h): unsigned codes, value = code - kOffset (in units of
// d), or code * d + m for the kHasMin types; every block dot is one vpdpbusd from the prepared base.
template <typename WeightBlock, typename ActivationBlock, int kOffset, bool kMin>
struct KindVnni {
  using Weight = WeightBlock;
  using Activation = ActivationBlock;
  using Prepared = PreparedOffset<kOffset>;
  static constexpr bool kHasMin = kMin;
  MIXQ_AVX512 static Prepared Prepare(const Activation& y) { return PrepareOffset<kOffset>(y.qs); }
  MIXQ_AVX512 static __m256i Dot(__m256i codes, const Prepared& p) { return _mm256_dpbusd_epi32(p.base, codes, p.a); }
};

struct KindQ8_0 : KindVnni<BlockQ8_0, BlockQ8_0, 128, false> {
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return _mm256_xor_si256(LoadBytes(b.qs), _mm256_set1_epi8(-128)); }
};
struct KindQ4_0 : KindVnni<BlockQ4_0, BlockQ8_0, 8, false> {
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return Nibbles32(b.qs); }
};
struct KindQ5_0 : KindVnni<BlockQ5_0, BlockQ8_0, 16, false> {
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return WithFifthBits(Nibbles32(b.qs), b.qh); }
};
struct KindIQ4_NL : KindVnni<BlockIQ4_NL, BlockQ8_0, 128, false> {
  // The level table biased by +128 (levels -127..113 -> 1..241), looked up per 128-bit half by pshufb.
  MIXQ_AVX512 static __m256i Codes(const Weight& b) {
    const __m256i table = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues))),
        _mm256_set1_epi8(-128));
    return _mm256_shuffle_epi8(table, Nibbles32(b.qs));
  }
};
struct KindQ4_1 : KindVnni<BlockQ4_1, BlockQ8_1, 0, true> {
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return Nibbles32(b.qs); }
};
struct KindQ5_1 : KindVnni<BlockQ5_1, BlockQ8_1, 0, true> {
  MIXQ_AVX512 static __m256i Codes(const Weight& b) { return WithFifthBits(Nibbles32(b.qs), b.qh); }
};

}  // namespace

// Prefill tiles: 4 rows x 4 tokens (16 accumulators) share each weight unpack and activation block four ways.
constexpr int kTileRows = 4, kTileTokens = 4;

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

// Interleaved decode of the IQ4 types (8 rows a block, the AVX2 layouts of ggml_dot_internal.h). The
// AVX2 kernels must take |level| against the activation with the level's sign and widen every product
// pair by `vpmaddwd` (17 instructions per 32-byte run); here the table holds level + 128 (1..241,
// unsigned), so a looked-up run goes straight into `vpdpbusd` against the broadcast activation dword,
// and the accumulator starts at -128 * (the activation block's sum), the same for all 8 rows: 8
// instructions per run.
namespace {

MIXQ_AVX512 inline __m256i Iq4LevelsPlus128() {
  return _mm256_xor_si256(
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues))),
      _mm256_set1_epi8(-128));
}

// sum level * q over one block of 32 code indices of 8 rows (four nibble runs) plus `start`, per row.
MIXQ_AVX512 inline __m256i IQ4RunsDotVnni(const uint8_t* runs, const int8_t* q, __m256i levels, __m256i start) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i acc = start, acc_high = _mm256_setzero_si256();  // two chains: see BlockDotInt4Vnni (int_dot_avx512.cc)
  for (int j = 0; j < 4; ++j) {
    const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
    const __m256i w_low = _mm256_shuffle_epi8(levels, _mm256_and_si256(run, low));
    const __m256i w_high = _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(run, 4), low));
    acc = _mm256_dpbusd_epi32(acc, w_low, interleaved::BroadcastDword(q + 4 * j));
    acc_high = _mm256_dpbusd_epi32(acc_high, w_high, interleaved::BroadcastDword(q + 16 + 4 * j));
  }
  return _mm256_add_epi32(acc, acc_high);
}

// The sum of the 32 codes of an activation block.
MIXQ_AVX512 inline int32_t SumCodes(const int8_t* q) {
  const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), LoadBytes(q));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// sum w * q over one block of 32 signed bytes of 8 rows (eight byte runs, Q8_0's layout) plus `start`:
// each run xor 0x80 is w + 128, unsigned, as `vpdpbusd` takes it.
MIXQ_AVX512 inline __m256i ByteRunsDotVnni(const int8_t* runs, const int8_t* q, __m256i start) {
  __m256i acc[2] = {start, _mm256_setzero_si256()};  // two chains, as IQ4RunsDotVnni
  for (int j = 0; j < 8; ++j) {
    const __m256i w = _mm256_xor_si256(LoadBytes(runs + 32 * j), _mm256_set1_epi8(-128));
    acc[j % 2] = _mm256_dpbusd_epi32(acc[j % 2], w, interleaved::BroadcastDword(q + 4 * j));
  }
  return _mm256_add_epi32(acc[0], acc[1]);
}

// sum (c + 8) * q over one block of Q4_0's nibble runs plus `start`: the stored nibbles are c + 8, unsigned
// already, so they go into `vpdpbusd` as they are (the AVX2 kernel's maddubs, int16 adds and madd become
// 8 instructions), in two chains as IQ4RunsDotVnni.
MIXQ_AVX512 inline __m256i NibbleRunsDotVnni(const uint8_t* runs, const int8_t* q, __m256i start) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i acc = start, acc_high = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(run, low), interleaved::BroadcastDword(q + 4 * j));
    acc_high = _mm256_dpbusd_epi32(acc_high, _mm256_and_si256(_mm256_srli_epi16(run, 4), low),
                                   interleaved::BroadcastDword(q + 16 + 4 * j));
  }
  return _mm256_add_epi32(acc, acc_high);
}

// The 32-weight types whose 8-row blocks go into `vpdpbusd` as w + kBias (unsigned bytes): Dot gives
// sum (w + kBias) * q plus `start`, which DotGroupBiasedVnni sets to -kBias * sum(q).
struct IQ4_NLRuns {
  static constexpr int kBias = 128;
  MIXQ_AVX512 static __m256i Dot(const BlockQ4_0x8& x, const int8_t* q, __m256i start) {
    return IQ4RunsDotVnni(x.qs, q, Iq4LevelsPlus128(), start);
  }
};
struct Q4_0Runs {
  static constexpr int kBias = 8;
  MIXQ_AVX512 static __m256i Dot(const BlockQ4_0x8& x, const int8_t* q, __m256i start) {
    return NibbleRunsDotVnni(x.qs, q, start);
  }
};
struct Q8_0Runs {
  static constexpr int kBias = 128;
  MIXQ_AVX512 static __m256i Dot(const BlockQ8_0x8& x, const int8_t* q, __m256i start) {
    return ByteRunsDotVnni(x.qs, q, start);
  }
};

// One group of 8 interleaved rows of a 32-weight type biased by Runs::kBias with one token: per block
// d_w * d_a * (sum (w + kBias) * q - kBias * sum q), the second term from `starts`, d_a from `scales`.
template <typename Runs, typename BlockX8>
MIXQ_AVX512 void DotGroupBiasedVnni(const BlockX8* x, const BlockQ8_0* y, const int32_t* starts, const float* scales,
                                    int64_t nb, float* out) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockX8)>(x + b);
    const __m256 dots = _mm256_cvtepi32_ps(Runs::Dot(x[b], y[b].qs, _mm256_set1_epi32(starts[b])));
    acc = _mm256_fmadd_ps(dots, _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(scales[b])), acc);
  }
  _mm256_storeu_ps(out, acc);
}

// The walk of their groups, each token's block starts and scales computed once per call rather than once
// per group. The scales as floats, not looked up in HalfTable per block: a 11008-wide row's 344 blocks
// touch up to 344 lines of that 256 KiB table, which beside the activations outgrew L1 and held Q4_0's
// ffn_down to about two thirds of a plain read of its bytes (docs/kernels.md, session 20).
template <typename Runs, typename BlockX8>
MIXQ_AVX512 void DotGroupsBiasedVnni(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                     size_t act_bytes, int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = n / kQK;
  const float* half = HalfTable();
  thread_local std::vector<int32_t> starts;
  thread_local std::vector<float> scales;
  starts.resize(static_cast<size_t>(nb * n_tokens));
  scales.resize(static_cast<size_t>(nb * n_tokens));
  const auto* ab = static_cast<const uint8_t*>(act);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(ab + static_cast<size_t>(t) * act_bytes);
    for (int64_t b = 0; b < nb; ++b) {
      starts[t * nb + b] = -Runs::kBias * SumCodes(y[b].qs);
      scales[t * nb + b] = half[y[b].d];
    }
  }
  interleaved::ForEachGroupAndToken<1>(w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
                                       [&](const uint8_t* x, const uint8_t* y, int64_t t, float* out8, int) {
                                         DotGroupBiasedVnni<Runs>(reinterpret_cast<const BlockX8*>(x),
                                                                  reinterpret_cast<const BlockQ8_0*>(y),
                                                                  starts.data() + t * nb, scales.data() + t * nb,
                                                                  nb, out8);
                                       });
}

// Each sub-block's exact sums times its 8 rows' scales (int32 `vpmulld`), then d_w * d_a per super-block.
// The accumulator start comes from Q8_K's bsums (two per sub-block).
MIXQ_AVX512 void DotGroupIQ4_XSVnni(const BlockIQ4_XSx8* x, const BlockQ8_K* y, int64_t nb, float* out) {
  const __m256i levels = Iq4LevelsPlus128();
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    interleaved::PrefetchAhead<sizeof(BlockIQ4_XSx8)>(x + b);
    __m256i sums = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const __m256i start = _mm256_set1_epi32(-128 * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]));
      const __m256i scales =
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].scales[s])));
      sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(IQ4RunsDotVnni(x[b].qs[s], y[b].qs + 32 * s, levels, start),
                                                       scales));
    }
    const __m256 d = _mm256_mul_ps(interleaved::RowScales(x[b].d), _mm256_set1_ps(y[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc);
  }
  _mm256_storeu_ps(out, acc);
}

}  // namespace

MIXQ_AVX512 void DotGroupsIQ4_NLVnni(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                     size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                     int64_t out_stride) {
  DotGroupsBiasedVnni<IQ4_NLRuns, BlockQ4_0x8>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out,
                                              out_stride);
}

MIXQ_AVX512 void DotGroupsQ8_0Vnni(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                   size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                   int64_t out_stride) {
  DotGroupsBiasedVnni<Q8_0Runs, BlockQ8_0x8>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX512 void DotGroupsQ4_0Vnni(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                   size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                   int64_t out_stride) {
  DotGroupsBiasedVnni<Q4_0Runs, BlockQ4_0x8>(w, group_bytes, n_groups, act, act_bytes, n_tokens, n, out, out_stride);
}

MIXQ_AVX512 void DotGroupsIQ4_XSVnni(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                     size_t act_bytes, int64_t n_tokens, int64_t n, int64_t, float* out,
                                     int64_t out_stride) {
  const int64_t nb = n / kQK_K;
  interleaved::ForEachGroupAndToken<1>(w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
                                       [&](const uint8_t* x, const uint8_t* y, int64_t, float* out8, int) {
                                         DotGroupIQ4_XSVnni(reinterpret_cast<const BlockIQ4_XSx8*>(x),
                                                            reinterpret_cast<const BlockQ8_K*>(y), nb, out8);
                                       });
}

}  // namespace mixq::ggml_dot

#endif  // __x86_64__
