// The AVX2 code unpacking of the INT kernels, shared by int_dot_avx2.cc and int_dot_avx512.cc: each
// includes it after defining MIXQ_INT_UNPACK_TARGET (its target attribute; AVX2 or a superset). The
// anonymous namespace keeps each includer's copies its own.
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>

#include "mixq/kernels/int_dot.h"
#include "mixq/tensor/int_layout.h"

#ifndef MIXQ_INT_UNPACK_TARGET
#error "define MIXQ_INT_UNPACK_TARGET (the including file's target attribute) before including int_dot_unpack.h"
#endif

namespace mixq {
namespace {

// Bytes an unpacker may read from a block's first code byte (more than the block's 4 * bits bytes: the
// loads are whole vectors). Blocks this close to the row end are copied into a zeroed buffer first.
template <int kBits>
constexpr int64_t kReadBytes = kBits == 8 ? 32 : kBits == 4 ? 16 : kBits == 2 ? 8 : 3 * kBits + 16;

// pshufb pattern and multipliers that turn 16 bytes holding 8 consecutive `bits`-bit codes (starting at
// byte 0) into 8 16-bit lanes holding one code each: lane j gets bytes (bits*j)/8 and the next, and
// multiplying by 2^(16 - bits - shift_j) moves its code to the top bits, which a shift brings down.
struct GenericUnpack {
  std::array<int8_t, 16> shuffle;
  std::array<int16_t, 8> multiplier;
};

constexpr GenericUnpack MakeGenericUnpack(int bits) {
  GenericUnpack u{};
  for (int j = 0; j < 8; ++j) {
    const int bit = bits * j;
    u.shuffle[2 * j] = static_cast<int8_t>(bit / 8);
    u.shuffle[2 * j + 1] = static_cast<int8_t>(bit / 8 + 1);
    u.multiplier[j] = static_cast<int16_t>(static_cast<uint16_t>(1u << (16 - bits - bit % 8)));
  }
  return u;
}

// Codes 0..7 of the 8-code runs at lo and hi as 16 16-bit lanes (lo's in the low 128 bits).
template <int kBits>
MIXQ_INT_UNPACK_TARGET inline __m256i EightCodePairs(const uint8_t* lo, const uint8_t* hi) {
  static constexpr GenericUnpack kU = MakeGenericUnpack(kBits);
  const __m256i shuffle =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kU.shuffle.data())));
  const __m256i mult =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kU.multiplier.data())));
  const __m256i bytes =
      _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
  return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(bytes, shuffle), mult), 16 - kBits);
}

// 32 codes starting at p (byte-aligned) as 32 bytes, in order. 8-bit codes come back as signed c - 128.
// 2, 4 and 8 bits have their own shuffles; 3, 5, 6 and 7 bits take the generic EightCodePairs path.
template <int kBits>
MIXQ_INT_UNPACK_TARGET inline __m256i UnpackCodes(const uint8_t* p) {
  if constexpr (kBits == 8) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_set1_epi8(-128));
  } else if constexpr (kBits == 4) {
    // Byte j holds codes 2j (low nibble) and 2j+1 (high nibble): widened to 16 bits, b | b << 4 masked by
    // 0x0f0f puts the low nibble in the lane's low byte and the high nibble in its high byte.
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_and_si256(_mm256_or_si256(b, _mm256_slli_epi16(b, 4)), _mm256_set1_epi8(0x0f));
  } else if constexpr (kBits == 2) {
    // Byte i holds codes 4i..4i+3: widened to 32 bits, b | b << 6 | b << 12 | b << 18 masked by 0x03030303
    // puts code 4i+j in byte j of lane i.
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i spread = _mm256_or_si256(_mm256_or_si256(b, _mm256_slli_epi32(b, 6)),
                                           _mm256_or_si256(_mm256_slli_epi32(b, 12), _mm256_slli_epi32(b, 18)));
    return _mm256_and_si256(spread, _mm256_set1_epi8(0x03));
  } else {
    const __m256i a = EightCodePairs<kBits>(p, p + kBits);                 // codes 0..7 | 8..15
    const __m256i b = EightCodePairs<kBits>(p + 2 * kBits, p + 3 * kBits);  // codes 16..23 | 24..31
    // packus interleaves per 128-bit lane: [0..7, 16..23 | 8..15, 24..31]; the permute restores order.
    return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xd8);
  }
}

MIXQ_INT_UNPACK_TARGET inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
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
MIXQ_INT_UNPACK_TARGET inline float DotRowBlocks(const void* w_row, const void* activation, int64_t n, int64_t group) {
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

}  // namespace
}  // namespace mixq
