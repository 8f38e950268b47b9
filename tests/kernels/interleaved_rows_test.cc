// The block-at-once repacking (PutRunBlock, what every interleave runs at load) writes exactly the bytes
// that the row-by-row definitions of the layouts (PutRunCodes, PutByteRuns) write, for every code width.
#include "mixq/kernels/interleaved_rows.h"

#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace mixq::interleaved {
namespace {

template <int kBits>
void ExpectBlockEqualsRows(std::mt19937& rng) {
  constexpr int kBlockBytes = kBits == 8 ? kByteRunBytes : 4 * kBits * 8;
  std::uniform_int_distribution<int> code(0, (1 << kBits) - 1);
  for (int trial = 0; trial < 50; ++trial) {
    uint8_t codes[8][kBlockCodes];
    for (auto& row : codes) {
      for (uint8_t& c : row) c = static_cast<uint8_t>(code(rng));
    }
    // Extreme codes in some trials: all zero, all ones, alternating.
    if (trial < 3) {
      for (int r = 0; r < 8; ++r) {
        for (int i = 0; i < kBlockCodes; ++i) {
          codes[r][i] = static_cast<uint8_t>(trial == 0 ? 0 : trial == 1 ? (1 << kBits) - 1 : ((r + i) % 2) * ((1 << kBits) - 1));
        }
      }
    }
    std::vector<uint8_t> by_rows(kBlockBytes, 0), at_once(kBlockBytes, 0xa5);  // at_once must overwrite every byte
    for (int r = 0; r < 8; ++r) {
      if constexpr (kBits == 8) {
        PutByteRuns(reinterpret_cast<const int8_t*>(codes[r]), r, reinterpret_cast<int8_t*>(by_rows.data()));
      } else {
        PutRunCodes<kBits>(codes[r], r, by_rows.data());
      }
    }
    PutRunBlock<kBits>(codes, at_once.data());
    ASSERT_EQ(at_once, by_rows) << kBits << "-bit codes, trial " << trial;
    // And every row reads back.
    if constexpr (kBits < 8) {
      for (int r = 0; r < 8; ++r) {
        uint8_t back[kBlockCodes];
        GetRunCodes<kBits>(at_once.data(), r, back);
        for (int i = 0; i < kBlockCodes; ++i) ASSERT_EQ(back[i], codes[r][i]) << kBits << "-bit row " << r << " code " << i;
      }
    }
  }
}

TEST(InterleavedRows, BlockAtOnceEqualsRowByRow) {
  std::mt19937 rng(16);
  ExpectBlockEqualsRows<2>(rng);
  ExpectBlockEqualsRows<3>(rng);
  ExpectBlockEqualsRows<4>(rng);
  ExpectBlockEqualsRows<5>(rng);
  ExpectBlockEqualsRows<6>(rng);
  ExpectBlockEqualsRows<7>(rng);
  ExpectBlockEqualsRows<8>(rng);
}

}  // namespace
}  // namespace mixq::interleaved
