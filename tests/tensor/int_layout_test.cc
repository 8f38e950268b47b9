// mixq INT row layout: byte counts for whole, short and odd groups, and the LSB-first bit packing.
#include "mixq/tensor/int_layout.h"

#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

TEST(IntLayoutTest, RowBytesFollowTheDocumentedLayout) {
  // int4-g128, asymmetric, 4096 weights: 32 groups -> 64 B scales + 16 B zeros + 2048 B codes.
  EXPECT_EQ(*RowBytes(DType::kInt4, 4096, 128), 64u + 16u + 2048u);
  EXPECT_EQ(*RowBytes(DType::kInt4Sym, 4096, 128), 64u + 2048u);
  // stories260K's 172-wide rows at g128: groups of 128 and 44; 3 bits: 48 + 17 code bytes, 2 zero codes.
  const IntRowLayout l(DType::kInt3, 172, 128);
  EXPECT_EQ(l.n_groups, 2);
  EXPECT_EQ(l.GroupLength(1), 44);
  EXPECT_EQ(l.row_bytes, 4u + 1u + 48u + 17u);
  // Per channel (group 0) is one group; a group longer than the row is too.
  EXPECT_EQ(*RowBytes(DType::kInt8, 172, 0), 2u + 1u + 172u);
  EXPECT_EQ(*RowBytes(DType::kInt8, 172, 4096), *RowBytes(DType::kInt8, 172, 0));
  // 33 weights in groups of 7: four of 7 (14 bits -> 2 B each) and one of 5 (10 bits -> 2 B), 5 scales.
  EXPECT_EQ(*TensorBytes(DType::kInt2Sym, {3, 33}, 7), 3u * (10u + 8u + 2u));
  EXPECT_FALSE(StorageBytes(DType::kInt4, 4096).has_value());  // needs a group: RowBytes
  EXPECT_FALSE(RowBytes(DType::kInt4, -1, 0).has_value());
}

TEST(IntLayoutTest, PackedCodesRoundTripForEveryWidth) {
  std::mt19937 rng(7);
  for (int bits = 2; bits <= 8; ++bits) {
    const int n = 37;
    std::vector<uint32_t> codes(n);
    for (auto& c : codes) c = rng() & ((1u << bits) - 1);
    std::vector<uint8_t> stream(IntRowLayout::PackedBytes(n, bits), 0);
    for (int i = 0; i < n; ++i) WritePackedCode(stream.data(), i, bits, codes[i]);
    for (int i = 0; i < n; ++i) EXPECT_EQ(ReadPackedCode(stream.data(), i, bits), codes[i]) << bits << " " << i;
  }
  // 4 bits: code 2j in the low nibble of byte j, 2j+1 in the high nibble.
  uint8_t b[1] = {0};
  WritePackedCode(b, 0, 4, 0x3);
  WritePackedCode(b, 1, 4, 0xA);
  EXPECT_EQ(b[0], 0xA3);
}

}  // namespace
}  // namespace mixq
