// The AVX2 code unpacking of the INT kernels, shared by int_dot_avx2.cc and int_dot_avx512.cc: each
// includes it after defining MIXQ_INT_UNPACK_TARGET (its target attribute; AVX2 or a superset). The
// anonymous namespace keeps each includer's copies its own.
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>

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

}  // namespace
}  // namespace mixq
