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

// One group of 8 interleaved INT2..INT8 rows (int_dot.h) with one activation row: per weight group k,
// the 8 rows' sum_b d_b * sum_i c_i q_i in one register, times their 8 scales (one `vcvtph2ps`); the
// zero-point term s_k * z_k * G_k of the 8 rows likewise (INT4's zero-points spread from one uint32 by a
// variable shift, the wider codes' widened from 8 bytes). One group a call: two groups at once (sharing the
// activation broadcasts, as Q4_0 does) ran out of registers here (accumulators per group and weight group)
// and measured 4.3% slower in the model (INT4).
//
// The walk asks for the lines a fixed distance past the codes it reads (PrefetchAhead). Row groups lie back
// to back, so the previous group's walk has asked for everything up to x + distance and this one asks from
// x + codes + distance on: the header's worth of lines between (scales and zero-points, 640 B for a
// 4096-wide INT4-g128 group) are asked for first here (PrefetchSkipped). Left to demand misses, a gap of 8
// lines or more cost a third of one thread's streaming rate (a scratch walk over ~400 MiB skipping H bytes
// every 16 KiB: 0.83 of a read loop's rate up to H = 384, 0.60-0.69 from H = 512); this is why INT4-g128
// and finer groups streamed worse than -pc and -g256, whose headers are 20 and 320 bytes.
template <int kBits, bool kSym, typename BlockDot>
MIXQ_INTERLEAVED_TARGET void DotGroupInt(const uint8_t* x, const IntActivationBlock* block, const float* group_sums,
                           int64_t n_groups, int64_t blocks_per_group, size_t zeros, size_t codes, int symmetric_zero,
                           float* out) {
  interleaved::PrefetchSkipped<IntInterleavedBlockBytes(kBits)>(x, codes);
  __m256 total = _mm256_setzero_ps(), zero_total = _mm256_setzero_ps();
  const uint8_t* runs = x + codes;
  constexpr int64_t kRun = IntInterleavedBlockBytes(kBits);
  for (int64_t k = 0; k < n_groups; ++k) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= blocks_per_group; b += 2, block += 2, runs += 2 * kRun) {
      interleaved::PrefetchAhead<kRun>(runs);
      interleaved::PrefetchAhead<kRun>(runs + kRun);
      acc0 = _mm256_fmadd_ps(BlockDot::Dot(runs, block[0]), _mm256_set1_ps(block[0].scale), acc0);
      acc1 = _mm256_fmadd_ps(BlockDot::Dot(runs + kRun, block[1]), _mm256_set1_ps(block[1].scale), acc1);
    }
    if (b < blocks_per_group) {
      interleaved::PrefetchAhead<kRun>(runs);
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
  interleaved::ForEachGroupAndToken<1>(
      w, group_bytes, n_groups, act, act_bytes, n_tokens, out, out_stride,
      [&](const uint8_t* x, const uint8_t* y, int64_t, float* out8, int) {
        const auto* block = reinterpret_cast<const IntActivationBlock*>(y);
        const auto* group_sums = reinterpret_cast<const float*>(block + activation_blocks);
        DotGroupInt<kBits, kSym, BlockDot>(x, block, group_sums, layout.n_groups, blocks_per_group, zeros, codes,
                                           layout.SymmetricZero(), out8);
      });
}

template <int kBits, typename BlockDot>
int_dot_avx2::DotGroupsFn DotGroupsFor(bool symmetric) {
  return symmetric ? &DotGroupsImpl<kBits, true, BlockDot> : &DotGroupsImpl<kBits, false, BlockDot>;
}

}  // namespace
}  // namespace mixq::int_dot_groups
