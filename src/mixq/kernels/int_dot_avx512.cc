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
#include <optional>

#include "mixq/base/check.h"
#include "mixq/kernels/int_dot.h"
#include "mixq/tensor/int_layout.h"

#define MIXQ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define MIXQ_INT_UNPACK_TARGET MIXQ_AVX512
#include "mixq/kernels/int_dot_unpack.h"
#define MIXQ_INTERLEAVED_TARGET MIXQ_AVX512
#include "mixq/kernels/interleaved_rows.h"
#include "mixq/kernels/interleaved_rows_avx2.h"
#include "mixq/kernels/int_dot_groups.h"

namespace mixq::int_dot_avx512 {
namespace {

// 32 codes of a block as unsigned bytes (UnpackCodes shifts 8-bit codes to signed; vpdpbusd wants them raw).
template <int kBits>
MIXQ_AVX512 inline __m256i UnsignedCodes(const uint8_t* p) {
  if constexpr (kBits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return UnpackCodes<kBits>(p);
}

// The row layout, remembered per thread for the last (n, group): MatMul calls the dot once per row with the
// same shape, and building the layout (a traits lookup and divisions) costs a tenth of a 4096-wide row.
template <int kBits, bool kSym>
const IntRowLayout& LayoutFor(int64_t n, int64_t group) {
  thread_local int64_t cached_n = -1, cached_group = -1;
  thread_local std::optional<IntRowLayout> layout;
  if (n != cached_n || group != cached_group) {
    layout.emplace(*IntDType(kBits, kSym), n, group);
    cached_n = n;
    cached_group = group;
  }
  return *layout;
}


// The dot product of one stored row with its activation blocks, for an ISA whose `Block::Dot(src, block,
// zero)` returns a block's exact sum_i (c_i - z) q_i spread over 8 int32 lanes (`src` readable for
// kReadBytes). Per group: sum_b d_b * Dot_b in two alternating chains (so consecutive FMAs do not wait on
// each other's latency), then one FMA by the group's scale. Blocks within one vector load of the row's
// end are copied into a zeroed buffer first: the codes past the end meet zero activations.
template <int kBits, bool kSym, typename Block>
MIXQ_AVX512 inline float DotRowBlocks(const void* w_row, const void* activation, int64_t n, int64_t group) {
  constexpr int64_t kBlockBytes = 4 * kBits;  // 32 codes
  const IntRowLayout& layout = LayoutFor<kBits, kSym>(n, group);
  const auto* row = static_cast<const uint8_t*>(w_row);
  const uint8_t* row_end = row + layout.row_bytes;
  const auto* block = static_cast<const IntActivationBlock*>(activation);
  __m256 total = _mm256_setzero_ps();
  alignas(32) uint8_t tail[64];
  for (int64_t k = 0; k < layout.n_groups; ++k) {
    uint16_t scale_bits;
    std::memcpy(&scale_bits, row + 2 * k, sizeof(scale_bits));
    const float scale = _cvtsh_ss(scale_bits);
    const int zero = kSym ? layout.SymmetricZero() : static_cast<int>(ReadPackedCode(row + layout.zeros_offset, k, kBits));
    const uint8_t* codes = row + layout.GroupCodesOffset(k);
    const int64_t len = layout.GroupLength(k);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    // Pairs of blocks whose vector loads stay inside the row need no bounds handling.
    for (; i + 2 * kIntActivationBlockSize <= len && codes + kBlockBytes + kReadBytes<kBits> <= row_end;
         i += 2 * kIntActivationBlockSize, codes += 2 * kBlockBytes, block += 2) {
      const __m256i d0 = Block::Dot(codes, block[0], zero);
      const __m256i d1 = Block::Dot(codes + kBlockBytes, block[1], zero);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(block[0].scale), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_set1_ps(block[1].scale), acc1);
    }
    for (; i < len; i += kIntActivationBlockSize, codes += kBlockBytes, ++block) {
      const uint8_t* src = codes;
      if (codes + kReadBytes<kBits> > row_end) {
        std::memset(tail, 0, sizeof(tail));
        std::memcpy(tail, codes, static_cast<size_t>(row_end - codes));
        src = tail;
      }
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Block::Dot(src, *block, zero)), _mm256_set1_ps(block->scale), acc0);
    }
    total = _mm256_fmadd_ps(_mm256_add_ps(acc0, acc1), _mm256_set1_ps(scale), total);
  }
  return HorizontalSum(total);
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

// One interleaved INT4 block of 8 rows (nibble runs, interleaved_rows.h) for the shared group walk
// (int_dot_groups.h): the codes are unsigned already, so each run's low and high nibbles go straight into
// `vpdpbusd` against the broadcast activation dwords (the AVX2 kernel's `vpmaddubsw`, int16 adds and
// `vpmaddwd` become 8 instructions), in two chains (one chain of 8, latency 4 each, ran no faster than the
// AVX2 kernel; four, the same as two). One thread, rows in cache (`OMP_NUM_THREADS=1
// build-bench/int_dot_bench --benchmark_filter='BM_IntGemvInterleavedCached/(1028|1044)/128/0'`, against
// MIXQ_MAX_ISA=avx2, 3 alternations): INT4-g128-sym 10.0-10.1 -> 9.2-9.3 us, INT4-g128 10.2-11.7 ->
// 9.8-11.2 (both with the activation row's quantization, the same in each).
struct BlockDotInt4Vnni {
  MIXQ_AVX512 static __m256 Dot(const uint8_t* runs, const IntActivationBlock& block) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i acc_low = _mm256_setzero_si256(), acc_high = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
      acc_low =
          _mm256_dpbusd_epi32(acc_low, _mm256_and_si256(run, low), interleaved::BroadcastDword(block.q + 4 * j));
      acc_high = _mm256_dpbusd_epi32(acc_high, _mm256_and_si256(_mm256_srli_epi16(run, 4), low),
                                     interleaved::BroadcastDword(block.q + 16 + 4 * j));
    }
    return _mm256_cvtepi32_ps(_mm256_add_epi32(acc_low, acc_high));
  }
};

}  // namespace

int_dot_avx2::DotGroupsFn DotGroups(int bits, bool symmetric) {
  return bits == 4 ? int_dot_groups::DotGroupsFor<4, BlockDotInt4Vnni>(symmetric) : nullptr;
}

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
