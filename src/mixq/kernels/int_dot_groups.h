// The walk of the interleaved INT2..INT8 groups (int_dot.h) for decode, shared by the AVX2 kernels
// (int_dot_avx2.cc) and the AVX-512 VNNI ones (int_dot_avx512.cc): each includes it after
// interleaved_rows_avx2.h (MIXQ_INTERLEAVED_TARGET defined) with its own block kernel, a type whose
// `static __m256 Dot(const uint8_t* runs, const IntActivationBlock& block)` gives the 8 rows' sum c_i q_i
// over one 32-code block as floats. The anonymous namespace keeps each includer's copy its own.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mixq/kernels/int_dot.h"
#include "mixq/kernels/int_dot_avx2.h"
#include "mixq/kernels/interleaved_rows.h"
#include "mixq/tensor/dtype.h"
#include "mixq/tensor/int_layout.h"

#ifndef MIXQ_INTERLEAVED_TARGET
#error "define MIXQ_INTERLEAVED_TARGET (and include interleaved_rows_avx2.h) before including int_dot_groups.h"
#endif

namespace mixq::int_dot_groups {
namespace {

// Where the walk asks for cache lines ahead of the block it reads. Rows of several weight groups take
// 1 KiB rather than the 2 KiB of the other interleaved kernels: one thread streaming INT4-g128 from memory
// went from 0.58 to 0.63-0.69 of a plain read loop's rate over the same bytes (a scratch loop over ~400 MiB,
// AVX-512 VNNI kernel), and one-thread decode of the 4-layer LLaMA-2-7B INT4-g128 from 57-61% to 62-66%
// of the bound (docs/kernels.md, session 18). One group per row (-pc) measured 2 KiB better (0.80-0.86
// against 0.77-0.82); other types gained nothing from 1 KiB. Why the weight groups' epilogue moves the
// best distance is not understood.
constexpr int kPrefetchBytesGrouped = 1024;

// One group of 8 interleaved INT2..INT8 rows (int_dot.h) with one activation row: per weight group k,
// the 8 rows' sum_b d_b * sum_i c_i q_i in one register, times their 8 scales (one `vcvtph2ps`); the
// zero-point term s_k * z_k * G_k of the 8 rows likewise (INT4's zero-points spread from one uint32 by a
// variable shift, the wider codes' widened from 8 bytes). One group a call: two groups at once (sharing the
// activation broadcasts, as Q4_0 does) ran out of registers here (accumulators per group and weight group)
// and measured 4.3% slower in the model (INT4). kPrefetch: as above.
template <int kBits, bool kSym, typename BlockDot, int kPrefetch>
MIXQ_INTERLEAVED_TARGET void DotGroupInt(const uint8_t* x, const IntActivationBlock* block, const float* group_sums,
                           int64_t n_groups, int64_t blocks_per_group, size_t zeros, size_t codes, int symmetric_zero,
                           float* out) {
  __m256 total = _mm256_setzero_ps(), zero_total = _mm256_setzero_ps();
  const uint8_t* runs = x + codes;
  constexpr int64_t kRun = IntInterleavedBlockBytes(kBits);
  for (int64_t k = 0; k < n_groups; ++k) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= blocks_per_group; b += 2, block += 2, runs += 2 * kRun) {
      interleaved::PrefetchAhead<kRun, kPrefetch>(runs);
      interleaved::PrefetchAhead<kRun, kPrefetch>(runs + kRun);
      acc0 = _mm256_fmadd_ps(BlockDot::Dot(runs, block[0]), _mm256_set1_ps(block[0].scale), acc0);
      acc1 = _mm256_fmadd_ps(BlockDot::Dot(runs + kRun, block[1]), _mm256_set1_ps(block[1].scale), acc1);
    }
    if (b < blocks_per_group) {
      interleaved::PrefetchAhead<kRun, kPrefetch>(runs);
      acc0 = _mm256_fmadd_ps(BlockDot::Dot(runs, *block), _mm256_set1_ps(block->scale), acc0);
      ++block;
      runs += kRun;
    }
    const __m256 s = interleaved::RowScales(x + 16 * k);
    total = _mm256_fmadd_ps(_mm256_add_ps(acc0, acc1), s, total);
    __m256 z;
    if constexpr (kSym) {
      z = _mm256_set1_ps(static_cast<float>(symmetric_zero));
    } else if constexpr (kBits == 4) {
      uint32_t packed;
      std::memcpy(&packed, x + zeros + 4 * k, sizeof packed);
      const __m256i nibbles = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(packed)),
                                                _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
      z = _mm256_cvtepi32_ps(_mm256_and_si256(nibbles, _mm256_set1_epi32(0xf)));
    } else {
      z = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + zeros + 8 * k))));
    }
    zero_total = _mm256_fmadd_ps(_mm256_mul_ps(s, z), _mm256_set1_ps(group_sums[k]), zero_total);
  }
  _mm256_storeu_ps(out, _mm256_sub_ps(total, zero_total));
}

template <int kBits, bool kSym, typename BlockDot>
MIXQ_INTERLEAVED_TARGET void DotGroupsImpl(const void* w, size_t group_bytes, int64_t n_groups, const void* act, size_t act_bytes,
                             int64_t n_tokens, int64_t n, int64_t group, float* out, int64_t out_stride) {
  const IntRowLayout layout(*IntDType(kBits, kSym), n, group);
  const int64_t blocks_per_group = layout.group / interleaved::kBlockCodes;
  const size_t zeros = 16 * static_cast<size_t>(layout.n_groups);
  const size_t codes = zeros + (kSym ? 0 : IntInterleavedZeroBytes(kBits) * static_cast<size_t>(layout.n_groups));
  const int64_t activation_blocks = IntActivationBlockCount(n, group);
  const auto dot_group = layout.n_groups > 1 ? &DotGroupInt<kBits, kSym, BlockDot, kPrefetchBytesGrouped>
                                              : &DotGroupInt<kBits, kSym, BlockDot, interleaved::kPrefetchBytes>;
  interleaved::ForEachGroupAndToken<1>(
      w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
      [&](const uint8_t* x, const uint8_t* y, int64_t, float* out8, int) {
        const auto* block = reinterpret_cast<const IntActivationBlock*>(y);
        const auto* group_sums = reinterpret_cast<const float*>(block + activation_blocks);
        dot_group(x, block, group_sums, layout.n_groups, blocks_per_group, zeros, codes, layout.SymmetricZero(),
                  out8);
      });
}

template <int kBits, typename BlockDot>
int_dot_avx2::DotGroupsFn DotGroupsFor(bool symmetric) {
  return symmetric ? &DotGroupsImpl<kBits, true, BlockDot> : &DotGroupsImpl<kBits, false, BlockDot>;
}

}  // namespace
}  // namespace mixq::int_dot_groups
