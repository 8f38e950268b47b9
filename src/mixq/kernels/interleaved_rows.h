// The pieces the interleaved row layouts share (QuantKernel::interleaved; Q4_0, Q8_0 and INT4 on AVX2).
// 4-bit codes: a block of 32 codes of 8 rows as four 32-byte runs. Byte 4 * row + i of run j holds the row's code
// 4j + i in its low nibble and code 16 + 4j + i in its high nibble, so one 32-byte load and two masks give
// 4 consecutive codes of each of the 8 rows twice over, and one broadcast activation dword meets them in
// `vpmaddubsw` (interleaved_rows_avx2.h).
#pragma once

#include <cstdint>
#include <cstring>

namespace mixq::interleaved {

constexpr int kBlockCodes = 32;
constexpr int kBlockRunBytes = 128;  // one block of 8 rows: 8 x 32 codes of 4 bits

// The low 4 bits of row `lane`'s 32 codes (one per byte) into the runs of its block.
inline void PutNibbleRuns(const uint8_t codes[kBlockCodes], int lane, uint8_t* runs) {
  for (int j = 0; j < 4; ++j) {
    for (int i = 0; i < 4; ++i) {
      runs[32 * j + 4 * lane + i] = static_cast<uint8_t>((codes[4 * j + i] & 0x0f) | (codes[16 + 4 * j + i] & 0x0f) << 4);
    }
  }
}

// Every row's 32 codes out of a block's runs, less `bias`, into codes[r][offset..offset + 32): how the
// packed GEMM reads a whole group (InterleavedRows::unpack_rows).
inline void UnpackNibbleRuns(const uint8_t* runs, int bias, int8_t* const codes[8], int64_t offset) {
  for (int r = 0; r < 8; ++r) {
    int8_t* __restrict c = codes[r] + offset;
    for (int j = 0; j < 4; ++j) {
      for (int i = 0; i < 4; ++i) {
        const uint8_t byte = runs[32 * j + 4 * r + i];
        c[4 * j + i] = static_cast<int8_t>((byte & 0x0f) - bias);
        c[16 + 4 * j + i] = static_cast<int8_t>((byte >> 4) - bias);
      }
    }
  }
}

// The inverse: row `lane`'s 32 codes out of the runs.
inline void GetNibbleRuns(const uint8_t* runs, int lane, uint8_t codes[kBlockCodes]) {
  for (int j = 0; j < 4; ++j) {
    for (int i = 0; i < 4; ++i) {
      const uint8_t byte = runs[32 * j + 4 * lane + i];
      codes[4 * j + i] = byte & 0x0f;
      codes[16 + 4 * j + i] = byte >> 4;
    }
  }
}

// 5- and 6-bit codes keep their low 4 bits in the nibble runs and their high bits beside them, where one
// shift and one mask put them next to their nibble (FiveBitRunsPairs, SixBitRunsPairs in
// interleaved_rows_avx2.h).
// Fifth bits: 32 bytes after the runs; byte 4 * row + i holds at bit 2j the fifth bit of the row's code
// 4j + i (run j's low nibble) and at bit 2j + 1 that of code 16 + 4j + i (its high nibble).
constexpr int kFifthBitsBytes = 32;
constexpr int FifthBitIndex(int k, int lane) { return 4 * lane + k % 4; }
constexpr int FifthBitShift(int k) { return 2 * ((k % 16) / 4) + k / 16; }
// Bits 4-5 of 6-bit codes: 64 bytes after the runs, one 32-byte vector per pair of runs; byte 4 * row + i
// of vector v holds from bit 0 up the pairs of run 2v's codes 4j + i and 16 + 4j + i (j = 2v), then run
// 2v + 1's.
constexpr int kHighPairsBytes = 64;
constexpr int HighPairIndex(int k, int lane) { return 32 * (((k % 16) / 4) / 2) + 4 * lane + k % 4; }
constexpr int HighPairShift(int k) { return 4 * (((k % 16) / 4) % 2) + 2 * (k / 16); }

// 7-bit codes: bits 4-5 as the 6-bit pairs, then bit 6 in a third 32-byte vector laid out as the fifth
// bits are.
constexpr int kSeventhBitsBytes = kHighPairsBytes + kFifthBitsBytes;

// Bytes after a block's runs for codes of kBits (5, 6 or 7) bits.
template <int kBits>
constexpr int HighBitsBytes() {
  static_assert(kBits >= 5 && kBits <= 7);
  return kBits == 5 ? kFifthBitsBytes : kBits == 6 ? kHighPairsBytes : kSeventhBitsBytes;
}

// Row `lane`'s high bits of 32 codes (bit 4, bits 4-5, or bits 4-6) into a block's bytes after its runs,
// and back (or-ed into codes that hold the low 4 bits). `high` must start zeroed.
template <int kBits>
inline void PutHighBits(const uint8_t codes[kBlockCodes], int lane, uint8_t* high) {
  static_assert(kBits >= 5 && kBits <= 7);
  for (int k = 0; k < kBlockCodes; ++k) {
    if constexpr (kBits == 5) {
      high[FifthBitIndex(k, lane)] |= static_cast<uint8_t>(((codes[k] >> 4) & 1) << FifthBitShift(k));
    } else {
      high[HighPairIndex(k, lane)] |= static_cast<uint8_t>(((codes[k] >> 4) & 3) << HighPairShift(k));
      if constexpr (kBits == 7) {
        high[kHighPairsBytes + FifthBitIndex(k, lane)] |= static_cast<uint8_t>(((codes[k] >> 6) & 1) << FifthBitShift(k));
      }
    }
  }
}
template <int kBits>
inline void GetHighBits(const uint8_t* high, int lane, uint8_t codes[kBlockCodes]) {
  static_assert(kBits >= 5 && kBits <= 7);
  for (int k = 0; k < kBlockCodes; ++k) {
    if constexpr (kBits == 5) {
      codes[k] = static_cast<uint8_t>(codes[k] | ((high[FifthBitIndex(k, lane)] >> FifthBitShift(k)) & 1) << 4);
    } else {
      codes[k] = static_cast<uint8_t>(codes[k] | ((high[HighPairIndex(k, lane)] >> HighPairShift(k)) & 3) << 4);
      if constexpr (kBits == 7) {
        const int bit = (high[kHighPairsBytes + FifthBitIndex(k, lane)] >> FifthBitShift(k)) & 1;
        codes[k] = static_cast<uint8_t>(codes[k] | bit << 6);
      }
    }
  }
}

// 2- and 3-bit codes keep the bits they have: a block of 32 codes of 8 rows is two 32-byte "crumb runs",
// bits 2k..2k+1 of byte 4 * row + i of run j holding the low 2 bits of the row's code 16j + 4k + i, then
// for 3-bit codes 32 bytes of third bits, byte 4 * row + i holding at bit s that of code 4s + i. One shift
// and mask of a run gives codes 4s..4s+3 of the 8 rows (s = 4j + k), as the nibble runs do
// (CrumbRunCodes in interleaved_rows_avx2.h).
constexpr int kCrumbRunBytes = 64;
template <int kBits>
inline void PutCrumbRuns(const uint8_t codes[kBlockCodes], int lane, uint8_t* block) {
  static_assert(kBits == 2 || kBits == 3);
  for (int c = 0; c < kBlockCodes; ++c) {
    const int j = c / 16, k = (c % 16) / 4, i = c % 4;
    block[32 * j + 4 * lane + i] |= static_cast<uint8_t>((codes[c] & 3) << (2 * k));
    if constexpr (kBits == 3) {
      block[kCrumbRunBytes + 4 * lane + i] |= static_cast<uint8_t>(((codes[c] >> 2) & 1) << (c / 4));
    }
  }
}
template <int kBits>
inline void GetCrumbRuns(const uint8_t* block, int lane, uint8_t codes[kBlockCodes]) {
  static_assert(kBits == 2 || kBits == 3);
  for (int c = 0; c < kBlockCodes; ++c) {
    const int j = c / 16, k = (c % 16) / 4, i = c % 4;
    codes[c] = static_cast<uint8_t>((block[32 * j + 4 * lane + i] >> (2 * k)) & 3);
    if constexpr (kBits == 3) {
      codes[c] = static_cast<uint8_t>(codes[c] | ((block[kCrumbRunBytes + 4 * lane + i] >> (c / 4)) & 1) << 2);
    }
  }
}

// Row `lane`'s 32 codes of kBits (2 to 7) bits into a block (crumb runs; or its nibble runs, then the high
// bits), and back. The block must start zeroed. Put* are the layouts' definition, one row at a time: the
// load-time interleaves write whole blocks with PutRunBlock, which is tested against them.
template <int kBits>
inline void PutRunCodes(const uint8_t codes[kBlockCodes], int lane, uint8_t* block) {
  if constexpr (kBits < 4) {
    PutCrumbRuns<kBits>(codes, lane, block);
  } else {
    PutNibbleRuns(codes, lane, block);
    if constexpr (kBits > 4) PutHighBits<kBits>(codes, lane, block + kBlockRunBytes);
  }
}
template <int kBits>
inline void GetRunCodes(const uint8_t* block, int lane, uint8_t codes[kBlockCodes]) {
  if constexpr (kBits < 4) {
    GetCrumbRuns<kBits>(block, lane, codes);
  } else {
    GetNibbleRuns(block, lane, codes);
    if constexpr (kBits > 4) GetHighBits<kBits>(block + kBlockRunBytes, lane, codes);
  }
}

// All 8 rows' codes of one block (codes[r][0..32), kBits of 2 to 8; 8-bit codes as stored bytes) into the
// block's layout at once, every byte of it assigned (no zeroing first): the same bytes as PutRunCodes
// (PutByteRuns for 8 bits) row by row. First the 4-byte transpose v[s][4r + i] = codes[r][4s + i] (the
// vectors RunCodesToPanel reads back), then byte p of the runs from byte p of the vectors, 8 bytes per
// uint64 operation (every shift is masked to bits of its own byte). At load, row by row had taken most of
// the time to repack a model (Q6_K: 66%).
template <int kBits>
inline void PutRunBlock(const uint8_t codes[8][kBlockCodes], uint8_t* block) {
  static_assert(kBits >= 2 && kBits <= 8);
  constexpr uint64_t kOnes = 0x0101010101010101u;
  uint64_t v[8][4];
  for (int s = 0; s < 8; ++s) {
    auto* bytes = reinterpret_cast<uint8_t*>(v[s]);
    for (int r = 0; r < 8; ++r) std::memcpy(bytes + 4 * r, &codes[r][4 * s], 4);
  }
  const auto store = [block](int offset, int w, uint64_t x) { std::memcpy(block + offset + 8 * w, &x, 8); };
  // Bit `shift` of each byte of vectors j (bits 2j) and 4 + j (bits 2j + 1): the fifth and seventh bits.
  const auto one_bit_vector = [&](int shift, int offset) {
    for (int w = 0; w < 4; ++w) {
      uint64_t bits = 0;
      for (int j = 0; j < 4; ++j) {
        bits |= ((v[j][w] >> shift) & kOnes) << (2 * j) | ((v[4 + j][w] >> shift) & kOnes) << (2 * j + 1);
      }
      store(offset, w, bits);
    }
  };
  for (int w = 0; w < 4; ++w) {
    if constexpr (kBits == 8) {
      for (int s = 0; s < 8; ++s) store(32 * s, w, v[s][w]);
    } else if constexpr (kBits < 4) {
      for (int j = 0; j < 2; ++j) {
        store(32 * j, w, (v[4 * j][w] & 3 * kOnes) | (v[4 * j + 1][w] & 3 * kOnes) << 2 |
                             (v[4 * j + 2][w] & 3 * kOnes) << 4 | (v[4 * j + 3][w] & 3 * kOnes) << 6);
      }
      if constexpr (kBits == 3) {
        uint64_t third = 0;
        for (int s = 0; s < 8; ++s) third |= ((v[s][w] >> 2) & kOnes) << s;
        store(kCrumbRunBytes, w, third);
      }
    } else {
      for (int j = 0; j < 4; ++j) store(32 * j, w, (v[j][w] & 0x0f * kOnes) | (v[4 + j][w] & 0x0f * kOnes) << 4);
      if constexpr (kBits >= 6) {
        for (int h = 0; h < 2; ++h) {
          store(kBlockRunBytes + 32 * h, w,
                ((v[2 * h][w] >> 4) & 3 * kOnes) | ((v[4 + 2 * h][w] >> 4) & 3 * kOnes) << 2 |
                    ((v[2 * h + 1][w] >> 4) & 3 * kOnes) << 4 | ((v[5 + 2 * h][w] >> 4) & 3 * kOnes) << 6);
        }
      }
    }
  }
  if constexpr (kBits == 5) one_bit_vector(4, kBlockRunBytes);
  if constexpr (kBits == 7) one_bit_vector(6, kBlockRunBytes + kHighPairsBytes);
}

// 8-bit codes: a block of 32 bytes of 8 rows as eight 32-byte runs, run j holding bytes 4j..4j+3 of each
// row in row order (ByteRunsDot in interleaved_rows_avx2.h).
constexpr int kByteRunBytes = 256;
inline void PutByteRuns(const int8_t codes[kBlockCodes], int lane, int8_t* runs) {
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < 4; ++i) runs[32 * j + 4 * lane + i] = codes[4 * j + i];
  }
}
inline void GetByteRuns(const int8_t* runs, int lane, int8_t codes[kBlockCodes]) {
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < 4; ++i) codes[4 * j + i] = runs[32 * j + 4 * lane + i];
  }
}

}  // namespace mixq::interleaved
