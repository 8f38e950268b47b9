// Byte layout of one row of mixq's integer formats (INT2..INT8, asymmetric or symmetric, grouped):
// the single place that says where a row's scales, zero-points and codes are. docs/int-formats.md
// describes the same layout for readers of the files.
//
// A row of n weights is cut into groups of `group` consecutive weights (the last one shorter when group
// does not divide n; group 0 means the whole row is one group, which is how per-channel and per-tensor
// quantization are stored). Each row is self-contained, so rows can be read independently and in parallel:
//
//   scales  n_groups x float16 (little-endian)
//   zeros   asymmetric only: n_groups codes of `bits` bits, bit-packed LSB-first, padded to a whole byte
//   codes   group after group; each group's n_k codes of `bits` bits bit-packed LSB-first (code i of a
//           group occupies bits [i*bits, (i+1)*bits) of the group's bytes), padded to a whole byte
//
// A weight is scale * (code - zero): zero is the group's stored zero-point (asymmetric) or 2^(bits-1)
// (symmetric, so codes 0..2^bits-1 stand for -2^(bits-1)..2^(bits-1)-1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mixq/tensor/dtype.h"

namespace mixq {

struct IntRowLayout {
  int64_t n = 0;          // weights in the row
  int64_t group = 0;      // weights per group (the row length when stored as 0)
  int64_t n_groups = 0;
  int bits = 0;
  bool symmetric = false;
  size_t zeros_offset = 0;      // bytes from the row start
  size_t codes_offset = 0;
  size_t group_code_bytes = 0;  // bytes of a full group's codes
  size_t row_bytes = 0;

  // `dtype` must be a mixq INT type; n >= 0, group >= 0.
  IntRowLayout(DType dtype, int64_t n_, int64_t group_) {
    const DTypeTraits& t = Traits(dtype);
    bits = t.bits;
    symmetric = t.symmetric;
    n = n_;
    group = (group_ == 0 || group_ > n_) ? n_ : group_;
    n_groups = group == 0 ? 0 : (n + group - 1) / group;
    zeros_offset = 2 * static_cast<size_t>(n_groups);
    const size_t zero_bytes = symmetric ? 0 : PackedBytes(n_groups, bits);
    codes_offset = zeros_offset + zero_bytes;
    group_code_bytes = PackedBytes(group, bits);
    const int64_t full = group == 0 ? 0 : n / group;
    row_bytes = codes_offset + static_cast<size_t>(full) * group_code_bytes + PackedBytes(n - full * group, bits);
  }

  int64_t GroupLength(int64_t k) const { return k + 1 < n_groups ? group : n - k * group; }
  int64_t GroupStart(int64_t k) const { return k * group; }
  size_t GroupCodesOffset(int64_t k) const { return codes_offset + static_cast<size_t>(k) * group_code_bytes; }
  // The zero-point every code of a symmetric group is read against.
  int SymmetricZero() const { return 1 << (bits - 1); }

  static size_t PackedBytes(int64_t count, int bits) {
    return static_cast<size_t>((count * bits + 7) / 8);
  }
};

// Code i (of `bits` bits) from an LSB-first bit stream; reads at most the bytes that hold its bits.
inline uint32_t ReadPackedCode(const uint8_t* stream, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const uint8_t* p = stream + bit / 8;
  const int shift = static_cast<int>(bit % 8);
  uint32_t word = p[0];
  if (shift + bits > 8) word |= static_cast<uint32_t>(p[1]) << 8;
  return (word >> shift) & ((1u << bits) - 1);
}

// The 32 codes of block b (codes 32b..32b+31) of an LSB-first bit stream: 4 * bits bytes from byte
// 4 * bits * b, read 8 codes per `bits` bytes as one word (as fast as a load-time repack needs; code by
// code, ReadPackedCode took most of it).
inline void ReadPackedBlock(const uint8_t* stream, int64_t b, int bits, uint8_t codes[32]) {
  const uint8_t* p = stream + static_cast<size_t>(4 * bits) * static_cast<size_t>(b);
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  for (int q = 0; q < 4; ++q) {
    uint64_t word = 0;
    for (int k = 0; k < bits; ++k) word |= static_cast<uint64_t>(p[bits * q + k]) << (8 * k);
    for (int j = 0; j < 8; ++j) codes[8 * q + j] = static_cast<uint8_t>((word >> (bits * j)) & mask);
  }
}

// Writes code i into an LSB-first bit stream whose bytes were zeroed first.
inline void WritePackedCode(uint8_t* stream, int64_t i, int bits, uint32_t code) {
  const int64_t bit = i * bits;
  uint8_t* p = stream + bit / 8;
  const int shift = static_cast<int>(bit % 8);
  const uint32_t word = code << shift;
  p[0] |= static_cast<uint8_t>(word);
  if (shift + bits > 8) p[1] |= static_cast<uint8_t>(word >> 8);
}

}  // namespace mixq
