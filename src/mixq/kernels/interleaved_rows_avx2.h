// The AVX2 integer core of the 4-bit interleaved layouts (interleaved_rows.h), shared by ggml_dot_avx2.cc
// (Q4_0) and int_dot_avx2.cc (INT4): each includes it after defining MIXQ_INTERLEAVED_TARGET (its
// target attribute). The anonymous namespace keeps each includer's copy its own.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#ifndef MIXQ_INTERLEAVED_TARGET
#error "define MIXQ_INTERLEAVED_TARGET before including interleaved_rows_avx2.h"
#endif

namespace mixq::interleaved {
namespace {

// Decode streams each thread's groups front to back once per token. The hardware prefetchers alone kept
// the kernel at about two thirds of the read bandwidth on a 2-core Zen 3; asking for the two cache lines
// 2 KiB ahead of each 128-byte block took Q4_0 generation from 40-48 to 49-57 t/s (4-layer LLaMA-2-7B
// shape, alternating builds; 4 and 6 KiB measured the same, 16 KiB no gain; docs/kernels.md).
constexpr int kPrefetchBytes = 2048;
MIXQ_INTERLEAVED_TARGET inline void PrefetchAhead(const void* p) {
  const char* ahead = static_cast<const char*>(p) + kPrefetchBytes;
  _mm_prefetch(ahead, _MM_HINT_T0);
  _mm_prefetch(ahead + 64, _MM_HINT_T0);
}

// sum_i code_i * q_i over one block of 32 codes for each of 8 rows: lane r is row r. The codes stay
// unsigned (0..15), so an offset such as Q4_0's 8 or a zero-point is the caller's. Eight `vpmaddubsw`
// results add up in int16 before one `vpmaddwd`: |sum| <= 8 * 2 * 15 * 127 = 30480, no saturation.
MIXQ_INTERLEAVED_TARGET inline __m256i NibbleRunsDot(const uint8_t* runs, const int8_t* q) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i sums = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
    int32_t q_low, q_high;
    std::memcpy(&q_low, q + 4 * j, sizeof q_low);
    std::memcpy(&q_high, q + 16 + 4 * j, sizeof q_high);
    sums = _mm256_add_epi16(sums, _mm256_maddubs_epi16(_mm256_and_si256(run, low), _mm256_set1_epi32(q_low)));
    sums = _mm256_add_epi16(
        sums, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(run, 4), low), _mm256_set1_epi32(q_high)));
  }
  return _mm256_madd_epi16(sums, _mm256_set1_epi16(1));
}

}  // namespace
}  // namespace mixq::interleaved
