// The dtype traits table: ggml ids, block sizes and byte counts as ggml defines them.
#include "mixq/tensor/dtype.h"

#include <gtest/gtest.h>

namespace mixq {

TEST(DTypeTest, GgmlIdsRoundTrip) {
  for (uint32_t id = 0; id < 64; ++id) {
    const auto dtype = DTypeFromGgmlId(id);
    if (dtype) {
      EXPECT_EQ(static_cast<uint32_t>(*dtype), id);
    }
  }
  EXPECT_FALSE(DTypeFromGgmlId(4).has_value());  // removed Q4_2
  EXPECT_FALSE(DTypeFromGgmlId(1000).has_value());
}

TEST(DTypeTest, BlockBytesMatchGgml) {
  EXPECT_EQ(*StorageBytes(DType::kQ4_0, 64), 36u);
  EXPECT_EQ(*StorageBytes(DType::kQ4_K, 512), 288u);
  EXPECT_EQ(*StorageBytes(DType::kQ6_K, 256), 210u);
  EXPECT_EQ(*StorageBytes(DType::kF16, 3), 6u);
  EXPECT_FALSE(StorageBytes(DType::kQ8_0, 33).has_value());
  EXPECT_FALSE(StorageBytes(DType::kF32, -1).has_value());
}

TEST(DTypeTest, NamesAreCaseInsensitive) {
  EXPECT_EQ(DTypeFromName("q4_k"), DType::kQ4_K);
  EXPECT_EQ(DTypeFromName("BF16"), DType::kBF16);
  EXPECT_FALSE(DTypeFromName("q9_0").has_value());
}

}  // namespace mixq
