// The AVX2 integer core of the 4-bit interleaved layouts (interleaved_rows.h), shared by ggml_dot_avx2.cc
// (Q4_0) and int_dot_avx2.cc (INT4): each includes it after defining MIXQ_INTERLEAVED_TARGET (its
// target attribute). The anonymous namespace keeps each includer's copy its own.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mixq/kernels/interleaved_rows.h"

#ifndef MIXQ_INTERLEAVED_TARGET
#error "define MIXQ_INTERLEAVED_TARGET before including interleaved_rows_avx2.h"
#endif

namespace mixq::interleaved {
namespace {

// Decode streams each thread's groups front to back once per token. The hardware prefetchers alone kept
// the kernel at about two thirds of the read bandwidth on a 2-core Zen 3; asking for the cache lines 2 KiB
// ahead of each block took Q4_0 generation from 40-48 to 49-57 t/s (4-layer LLaMA-2-7B shape, alternating
// builds; docs/kernels.md).
//
// On the Zen 4 of sessions 15-19 every line is asked for twice: into L2 far ahead, then into L1 from there
// nearer. One thread's decode kernel over a plain read of the same ~400 MiB (`OMP_NUM_THREADS=1
// build-bench/decode_stream_bench`, docs/kernels.md session 19), against L1 at 2 KiB alone: Q4_0 0.87-0.88
// -> 0.99, Q4_K 0.86-0.87 -> 0.93, IQ4_XS 0.87-0.89 -> 0.92-0.93, Q6_K 0.87-0.88 -> 0.94-0.95, Q8_0 the same.
// The distances depend on the block: blocks up to 192 bytes take 2 KiB and 384 bytes (a scratch walk of
// 128/144-byte blocks: 0.94-0.95 for a near distance anywhere in 320-512, 0.73-0.76 from 640 on); larger
// ones 3 KiB and 1.5 KiB (2 KiB and 384 measured INT7 0.45, Q8_0 0.80, and cost Q4_K a fifth of its
// decode speed; Q4_K at 4.5 KiB and 2.25 KiB as good, at 4 and 2 times its block size Q6_K fell to 0.60).
// With L2 alone 2 KiB ahead, 144-byte blocks streamed at 0.92 but 128-byte ones at 0.55-0.61: not
// understood, and the reason not to drop the L1 request.
//
// kBytes: the block's size; blocks are back to back, and floor(kBytes / 64) lines from each block's start
// are asked for. For sizes not a multiple of 64 that leaves some lines to the hardware prefetcher (one in
// nine of Q4_0's 144-byte blocks); asking for the block's last byte too measured no gain (Q4_0 and Q6_K
// decode, session 19).
template <int kBytes>
constexpr int kPrefetchFarBytes = kBytes <= 192 ? 2048 : 3072;
template <int kBytes>
constexpr int kPrefetchNearBytes = kBytes <= 192 ? 384 : 1536;
// As `prefetcht1` / `prefetcht0` in asm volatile rather than _mm_prefetch: GCC 12 deleted PrefetchSkipped's
// loop of _mm_prefetch outright once the loop sat behind a run-time condition (no prefetch left in the
// binary, INT4-g64 streaming at 0.41), as a run-time distance once made it drop every prefetch of a walk.
template <int kBytes>
MIXQ_INTERLEAVED_TARGET inline void PrefetchLine(const char* p) {
  asm volatile("prefetcht1 %0" : : "m"(p[kPrefetchFarBytes<kBytes>]));
  asm volatile("prefetcht0 %0" : : "m"(p[kPrefetchNearBytes<kBytes>]));
}
template <int kBytes>
MIXQ_INTERLEAVED_TARGET inline void PrefetchAhead(const void* p) {
  static_assert(kBytes >= 64);
  for (int line = 0; line < kBytes / 64; ++line) PrefetchLine<kBytes>(static_cast<const char*>(p) + 64 * line);
}

// What PrefetchAhead<kBytes> would have asked for over [p, p + bytes) had the walk read those bytes as
// blocks: for a walk that skips them (the INT groups' scales and zero-points, read apart from the codes).
// Gaps of up to 384 bytes are left to the hardware prefetcher, which bridged them in a scratch walk (0.83
// of the read loop with 384-byte gaps every 16 KiB, 0.60-0.69 from 512 on; int_dot_groups.h): asking for
// INT4-g256's 320 bytes took its stream from 0.95-0.96 of the read loop to 0.86-0.88, while INT4-g64's
// 1280 left alone cost it half (0.41-0.45 against 0.98-0.99; bench/decode_stream_bench.cc, one thread).
constexpr size_t kHardwareBridgedGap = 384;
template <int kBytes>
MIXQ_INTERLEAVED_TARGET inline void PrefetchSkipped(const void* p, size_t bytes) {
  if (bytes > kHardwareBridgedGap) {
    for (size_t line = 0; line < bytes; line += 64) PrefetchLine<kBytes>(static_cast<const char*>(p) + line);
  }
}

// Four activation bytes q[0..4) in every dword of a register: what one byte of each row meets.
MIXQ_INTERLEAVED_TARGET inline __m256i BroadcastDword(const int8_t* q) {
  int32_t four;
  std::memcpy(&four, q, sizeof four);
  return _mm256_set1_epi32(four);
}

// sum_i code_i * q_i over one block of 32 codes for each of 8 rows of kGroups groups (runs[i]: group i's
// block), as two int16 halves per row (lanes 2r, 2r + 1: row r). The codes stay unsigned (0..15), so an
// offset such as Q4_0's 8 or a zero-point is the caller's. Eight `vpmaddubsw` results add up in int16:
// |sum| <= 8 * 2 * 15 * 127 = 30480, no saturation; a `vpmaddwd` then sums the halves, by ones
// (NibbleRunsDot) or by a per-row scale (Q4_K). Each activation dword is broadcast once for all kGroups
// groups (2 halve the broadcasts per weight: Q4_0 decode +10.5%; Q4_K, whose sub-block scales and mins
// add registers per group, spilled and lost 14%; docs/kernels.md).
template <int kGroups>
MIXQ_INTERLEAVED_TARGET inline void NibbleRunsPairs(const uint8_t* const runs[kGroups], const int8_t* q,
                                                    __m256i sums[kGroups]) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  for (int i = 0; i < kGroups; ++i) sums[i] = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256i a_low = BroadcastDword(q + 4 * j), a_high = BroadcastDword(q + 16 + 4 * j);
    for (int i = 0; i < kGroups; ++i) {
      const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs[i] + 32 * j));
      sums[i] = _mm256_add_epi16(sums[i], _mm256_maddubs_epi16(_mm256_and_si256(run, low), a_low));
      sums[i] = _mm256_add_epi16(
          sums[i], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(run, 4), low), a_high));
    }
  }
}

// The same, summed per row: lane r is row r.
template <int kGroups>
MIXQ_INTERLEAVED_TARGET inline void NibbleRunsDot(const uint8_t* const runs[kGroups], const int8_t* q,
                                                  __m256i dots[kGroups]) {
  NibbleRunsPairs<kGroups>(runs, q, dots);
  for (int i = 0; i < kGroups; ++i) dots[i] = _mm256_madd_epi16(dots[i], _mm256_set1_epi16(1));
}

// sum code * q over one block of 32 five-bit codes of 8 rows (four nibble runs at q, the fifth bits at
// q + 128, as BlockQ5_Kx8 lays them out) as int16 pair sums (lanes 2r, 2r + 1: row r) in two halves, runs
// 0-1 and 2-3: codes reach 31, so four `vpmaddubsw` results are as many as int16 holds (<= 4 * 2 * 31 *
// 127 = 31496). Each fifth bit is shifted to bit 4 and or-ed into its nibble.
MIXQ_INTERLEAVED_TARGET inline void FiveBitRunsPairs(const uint8_t* q, const int8_t* a, __m256i pairs[2]) {
  const __m256i low = _mm256_set1_epi8(0x0f), fifth = _mm256_set1_epi8(0x10);
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 128));
  // Run j's fifth bits: its low-nibble codes' at bit 2j, its high-nibble codes' at bit 2j + 1.
  const __m256i fifth_low[4] = {_mm256_slli_epi16(h, 4), _mm256_slli_epi16(h, 2), h, _mm256_srli_epi16(h, 2)};
  const __m256i fifth_high[4] = {_mm256_slli_epi16(h, 3), _mm256_slli_epi16(h, 1), _mm256_srli_epi16(h, 1),
                                 _mm256_srli_epi16(h, 3)};
  for (int half = 0; half < 2; ++half) {
    pairs[half] = _mm256_setzero_si256();
    for (int j = 2 * half; j < 2 * half + 2; ++j) {
      const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
      const __m256i codes_low = _mm256_or_si256(_mm256_and_si256(run, low), _mm256_and_si256(fifth_low[j], fifth));
      const __m256i codes_high = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(run, 4), low),
                                                 _mm256_and_si256(fifth_high[j], fifth));
      pairs[half] =
          _mm256_add_epi16(pairs[half], _mm256_maddubs_epi16(codes_low, BroadcastDword(a + 4 * j)));
      pairs[half] = _mm256_add_epi16(
          pairs[half], _mm256_maddubs_epi16(codes_high, BroadcastDword(a + 16 + 4 * j)));
    }
  }
}

// sum code * q over one block of 32 six-bit codes of 8 rows (four nibble runs at q, bits 4-5 as two
// 32-byte vectors at q + 128, interleaved_rows.h) as int16 pair sums: low[v] over the low-nibble codes of
// runs 2v and 2v + 1 (codes 8v..8v+7 of each row's first 16), high[v] over their high-nibble codes
// (16 + 8v..). Two `vpmaddubsw` results each: <= 2 * 2 * 63 * 127 = 32004.
MIXQ_INTERLEAVED_TARGET inline void SixBitRunsPairs(const uint8_t* q, const int8_t* a, __m256i low_pairs[2],
                                                    __m256i high_pairs[2]) {
  const __m256i low = _mm256_set1_epi8(0x0f), high = _mm256_set1_epi8(0x30);
  for (int v = 0; v < 2; ++v) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 128 + 32 * v));
    const __m256i run0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * v));
    const __m256i run1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * v + 32));
    const __m256i low0 = _mm256_or_si256(_mm256_and_si256(run0, low), _mm256_and_si256(_mm256_slli_epi16(h, 4), high));
    const __m256i high0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(run0, 4), low),
                                          _mm256_and_si256(_mm256_slli_epi16(h, 2), high));
    const __m256i low1 = _mm256_or_si256(_mm256_and_si256(run1, low), _mm256_and_si256(h, high));
    const __m256i high1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(run1, 4), low),
                                          _mm256_and_si256(_mm256_srli_epi16(h, 2), high));
    low_pairs[v] = _mm256_add_epi16(_mm256_maddubs_epi16(low0, BroadcastDword(a + 8 * v)),
                                    _mm256_maddubs_epi16(low1, BroadcastDword(a + 8 * v + 4)));
    high_pairs[v] = _mm256_add_epi16(_mm256_maddubs_epi16(high0, BroadcastDword(a + 16 + 8 * v)),
                                     _mm256_maddubs_epi16(high1, BroadcastDword(a + 16 + 8 * v + 4)));
  }
}

// sum code * q over one block of 32 seven-bit codes of 8 rows (the runs at q, bits 4-5 as SixBitRunsPairs
// reads them at q + 128, bit 6 as a fifth-bit vector at q + 192) as 8 int32 row sums. A pair reaches 2 *
// 127 * 127, so each `vpmaddubsw` goes to int32 by its own `vpmaddwd`.
MIXQ_INTERLEAVED_TARGET inline __m256i SevenBitRunsDot(const uint8_t* q, const int8_t* a) {
  const __m256i low = _mm256_set1_epi8(0x0f), pair = _mm256_set1_epi8(0x30), top = _mm256_set1_epi8(0x40);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 192));
  // Run j's bit 6: its low-nibble codes' at bit 2j of t, its high-nibble codes' at bit 2j + 1.
  const __m256i top_low[4] = {_mm256_slli_epi16(t, 6), _mm256_slli_epi16(t, 4), _mm256_slli_epi16(t, 2), t};
  const __m256i top_high[4] = {_mm256_slli_epi16(t, 5), _mm256_slli_epi16(t, 3), _mm256_slli_epi16(t, 1),
                               _mm256_srli_epi16(t, 1)};
  __m256i sums = _mm256_setzero_si256();
  for (int v = 0; v < 2; ++v) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 128 + 32 * v));
    // Bits 4-5 of run 2v's codes at bits 0-1 / 2-3 of h, run 2v + 1's at 4-5 / 6-7.
    const __m256i pair_low[2] = {_mm256_slli_epi16(h, 4), h};
    const __m256i pair_high[2] = {_mm256_slli_epi16(h, 2), _mm256_srli_epi16(h, 2)};
    for (int u = 0; u < 2; ++u) {
      const int j = 2 * v + u;
      const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
      const __m256i codes_low =
          _mm256_or_si256(_mm256_or_si256(_mm256_and_si256(run, low), _mm256_and_si256(pair_low[u], pair)),
                          _mm256_and_si256(top_low[j], top));
      const __m256i codes_high = _mm256_or_si256(
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(run, 4), low), _mm256_and_si256(pair_high[u], pair)),
          _mm256_and_si256(top_high[j], top));
      sums = _mm256_add_epi32(
          sums, _mm256_madd_epi16(_mm256_maddubs_epi16(codes_low, BroadcastDword(a + 4 * j)), ones));
      sums = _mm256_add_epi32(
          sums, _mm256_madd_epi16(_mm256_maddubs_epi16(codes_high, BroadcastDword(a + 16 + 4 * j)), ones));
    }
  }
  return sums;
}

// sum_i w_i * q_i over one block of 32 signed bytes for each of 8 rows, from eight 32-byte runs (run j:
// bytes 4j..4j+3 of each row, in row order): `vpmaddubsw` with the sign trick, |w| x (q with w's sign),
// one `vpmaddwd` per run (a pair reaches 2 * 128 * 127, so two runs cannot share an int16 sum).
MIXQ_INTERLEAVED_TARGET inline __m256i ByteRunsDot(const int8_t* runs, const int8_t* q) {
  __m256i sums = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(BroadcastDword(q + 4 * j), w));
    sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  return sums;
}

// One 32-code block of 8 rows of 2- or 3-bit codes (interleaved_rows.h's crumb runs: 64 or 96 bytes) as 8
// vectors: vector s holds codes 4s..4s+3 of each row (byte 4r + i: row r's code 4s + i), its low 2 bits
// shifted out of crumb run s / 4 and a third bit moved to bit 2 (right shifts up to 6 and left shifts up to
// 2 of 16-bit lanes never carry a neighbour's bit into the masked ones).
template <int kBits>
MIXQ_INTERLEAVED_TARGET inline void CrumbRunCodes(const uint8_t* block, __m256i u[8]) {
  static_assert(kBits == 2 || kBits == 3);
  const __m256i crumb = _mm256_set1_epi8(0x03);
  for (int j = 0; j < 2; ++j) {
    const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * j));
    const __m256i low[4] = {run, _mm256_srli_epi16(run, 2), _mm256_srli_epi16(run, 4), _mm256_srli_epi16(run, 6)};
    for (int k = 0; k < 4; ++k) u[4 * j + k] = _mm256_and_si256(low[k], crumb);
  }
  if constexpr (kBits == 3) {
    const __m256i third = _mm256_set1_epi8(0x04);
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kCrumbRunBytes));
    const __m256i at2[8] = {_mm256_slli_epi16(h, 2), _mm256_slli_epi16(h, 1), h, _mm256_srli_epi16(h, 1),
                            _mm256_srli_epi16(h, 2), _mm256_srli_epi16(h, 3), _mm256_srli_epi16(h, 4),
                            _mm256_srli_epi16(h, 5)};
    for (int s = 0; s < 8; ++s) u[s] = _mm256_or_si256(u[s], _mm256_and_si256(at2[s], third));
  }
}

// One block of 32 codes of kBits (2 to 8) bits of 8 rows in its run layout (interleaved_rows.h: crumb
// runs, nibble runs and high bits, or byte runs) as the packed GEMM's panel codes (packed_gemm_internal.h): vector s
// holds codes 4s..4s+3 of every row, byte 4r + i row r's code 4s + i, which is where the runs already keep
// them, so no transpose: run j's low nibbles are vector j, its high nibbles vector 4 + j, each with its
// high bits shifted beside it as FiveBitRunsPairs / SixBitRunsPairs / SevenBitRunsDot do. `delta` is added
// to every byte (the panel's bias less the layout's own). Vectors 0-3 (codes 0-15) go to `low`, 4-7 to
// `high`: one panel block of width 32 (high = low + 128) or two of width 16.
template <int kBits>
MIXQ_INTERLEAVED_TARGET inline void RunCodesToPanel(const uint8_t* block, __m256i delta, uint8_t* low,
                                                    uint8_t* high) {
  static_assert(kBits >= 2 && kBits <= 8);
  __m256i codes[8];
  if constexpr (kBits < 4) {
    CrumbRunCodes<kBits>(block, codes);
  } else if constexpr (kBits == 8) {
    for (int s = 0; s < 8; ++s) codes[s] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * s));
  } else {
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    for (int j = 0; j < 4; ++j) {
      const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * j));
      codes[j] = _mm256_and_si256(run, nibble);
      codes[4 + j] = _mm256_and_si256(_mm256_srli_epi16(run, 4), nibble);
    }
    if constexpr (kBits == 5) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kBlockRunBytes));
      const __m256i bit = _mm256_set1_epi8(0x10);
      const __m256i at_low[4] = {_mm256_slli_epi16(h, 4), _mm256_slli_epi16(h, 2), h, _mm256_srli_epi16(h, 2)};
      const __m256i at_high[4] = {_mm256_slli_epi16(h, 3), _mm256_slli_epi16(h, 1), _mm256_srli_epi16(h, 1),
                                  _mm256_srli_epi16(h, 3)};
      for (int j = 0; j < 4; ++j) {
        codes[j] = _mm256_or_si256(codes[j], _mm256_and_si256(at_low[j], bit));
        codes[4 + j] = _mm256_or_si256(codes[4 + j], _mm256_and_si256(at_high[j], bit));
      }
    }
    if constexpr (kBits >= 6) {
      const __m256i pair = _mm256_set1_epi8(0x30);
      for (int v = 0; v < 2; ++v) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kBlockRunBytes + 32 * v));
        // Run 2v's pairs at bits 0-1 (low nibble's code) and 2-3, run 2v + 1's at 4-5 and 6-7.
        codes[2 * v] = _mm256_or_si256(codes[2 * v], _mm256_and_si256(_mm256_slli_epi16(h, 4), pair));
        codes[4 + 2 * v] = _mm256_or_si256(codes[4 + 2 * v], _mm256_and_si256(_mm256_slli_epi16(h, 2), pair));
        codes[2 * v + 1] = _mm256_or_si256(codes[2 * v + 1], _mm256_and_si256(h, pair));
        codes[5 + 2 * v] = _mm256_or_si256(codes[5 + 2 * v], _mm256_and_si256(_mm256_srli_epi16(h, 2), pair));
      }
    }
    if constexpr (kBits == 7) {
      const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kBlockRunBytes + kHighPairsBytes));
      const __m256i top = _mm256_set1_epi8(0x40);
      const __m256i at_low[4] = {_mm256_slli_epi16(t, 6), _mm256_slli_epi16(t, 4), _mm256_slli_epi16(t, 2), t};
      const __m256i at_high[4] = {_mm256_slli_epi16(t, 5), _mm256_slli_epi16(t, 3), _mm256_slli_epi16(t, 1),
                                  _mm256_srli_epi16(t, 1)};
      for (int j = 0; j < 4; ++j) {
        codes[j] = _mm256_or_si256(codes[j], _mm256_and_si256(at_low[j], top));
        codes[4 + j] = _mm256_or_si256(codes[4 + j], _mm256_and_si256(at_high[j], top));
      }
    }
  }
  for (int s = 0; s < 4; ++s) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(low + 32 * s), _mm256_add_epi8(codes[s], delta));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(high + 32 * s), _mm256_add_epi8(codes[4 + s], delta));
  }
}

// The same for 4-bit indices into a table of 16 levels (IQ4_NL, IQ4_XS): `levels` holds each level plus the
// panel's bias, in both 128-bit lanes. One panel block of width 32 at `out`.
MIXQ_INTERLEAVED_TARGET inline void NibbleLevelsToPanel(const uint8_t* runs, __m256i levels, uint8_t* out) {
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  for (int j = 0; j < 4; ++j) {
    const __m256i run = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs + 32 * j));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * j),
                        _mm256_shuffle_epi8(levels, _mm256_and_si256(run, nibble)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 128 + 32 * j),
                        _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(run, 4), nibble)));
  }
}

// A panel block's 8 rows' d and m, after its `width` * 8 code bytes.
MIXQ_INTERLEAVED_TARGET inline void StorePanelScales(uint8_t* block, int width, __m256 d, __m256 m) {
  _mm256_storeu_ps(reinterpret_cast<float*>(block + 8 * width), d);
  _mm256_storeu_ps(reinterpret_cast<float*>(block + 8 * width + 32), m);
}

// The 8 rows' F16 scales of a block (side by side in every layout) as 8 floats.
MIXQ_INTERLEAVED_TARGET inline __m256 RowScales(const void* h) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}

// The walk every dot_groups shares: kGroups groups at a time (fewer at the end), each token meeting
// them while their bytes are in cache. `dot(groups, activation_row, t, out, n)` writes the 8 sums of
// each of the n <= kGroups groups from `groups` (group_bytes apart) for token t to out[0..8n) (a plain
// call: no vector crosses it, so it may be a lambda, which takes no target attribute).
template <int kGroups, typename GroupDot>
inline void ForEachGroupAndToken(const void* w, size_t group_bytes, int64_t n_groups, const void* act,
                                 size_t act_bytes, int64_t n_tokens, float* out, int64_t out_stride,
                                 const GroupDot& dot) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(act);
  for (int64_t g = 0; g < n_groups; g += kGroups) {
    const int n = static_cast<int>(std::min<int64_t>(kGroups, n_groups - g));
    for (int64_t t = 0; t < n_tokens; ++t) {
      dot(wb + static_cast<size_t>(g) * group_bytes, ab + static_cast<size_t>(t) * act_bytes, t,
          out + t * out_stride + 8 * g, n);
    }
  }
}

}  // namespace
}  // namespace mixq::interleaved
