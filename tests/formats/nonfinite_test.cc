// NaN/Inf scans: a non-finite float, block scale, block min or INT group scale is counted where it sits.
#include "mixq/formats/nonfinite.h"

#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "mixq/formats/ggml_blocks.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

constexpr uint16_t kF16NaN = 0x7e00;
constexpr uint16_t kF16Inf = 0x7c00;
constexpr uint16_t kF16One = 0x3c00;

TEST(NonFiniteTest, FloatTypes) {
  Tensor f32 = Tensor::Zeros("w", DType::kF32, {2, 8});
  f32.as<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  f32.as<float>()[9] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(CountNonFinite(f32.view()), 2);
  Tensor f16 = Tensor::Zeros("w", DType::kF16, {1, 8});
  f16.as<uint16_t>()[7] = kF16Inf;
  f16.as<uint16_t>()[2] = 0x7bff;  // the largest finite F16
  EXPECT_EQ(CountNonFinite(f16.view()), 1);
  // The largest finite values are not counted; a negative NaN is.
  f32.as<float>()[0] = std::numeric_limits<float>::max();
  f32.as<float>()[1] = -std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(CountNonFinite(f32.view()), 3);
  Tensor bf16 = Tensor::Zeros("w", DType::kBF16, {1, 8});
  bf16.as<uint16_t>()[0] = 0x7f7f;  // the largest finite BF16
  bf16.as<uint16_t>()[5] = 0xff80;  // -Inf
  bf16.as<uint16_t>()[6] = 0x7fc0;  // NaN
  EXPECT_EQ(CountNonFinite(bf16.view()), 2);
}

TEST(NonFiniteTest, GgmlScalesAndMins) {
  Tensor q4k = Tensor::Zeros("w", DType::kQ4_K, {2, 512});
  auto* blocks = q4k.as<ggml::BlockQ4_K>();
  for (int b = 0; b < 4; ++b) blocks[b].d = blocks[b].dmin = kF16One;
  EXPECT_EQ(CountNonFinite(q4k.view()), 0);
  blocks[1].dmin = kF16NaN;
  blocks[3].d = kF16Inf;
  EXPECT_EQ(CountNonFinite(q4k.view()), 2);
  Tensor q6k = Tensor::Zeros("w", DType::kQ6_K, {1, 256});
  q6k.as<ggml::BlockQ6_K>()[0].d = kF16NaN;  // Q6_K keeps its scale at the end of the block
  EXPECT_EQ(CountNonFinite(q6k.view()), 1);
  // Quantized bytes that happen to look like NaN in F16 are codes, not values: not counted.
  Tensor q80 = Tensor::Zeros("w", DType::kQ8_0, {1, 64});
  std::memset(q80.as<ggml::BlockQ8_0>()[0].qs, 0x7e, 32);
  EXPECT_EQ(CountNonFinite(q80.view()), 0);
}

TEST(NonFiniteTest, IntGroupScales) {
  Tensor w = Tensor::Zeros("w", DType::kInt4, {3, 172}, 128);  // two groups per row
  const IntRowLayout layout(DType::kInt4, 172, 128);
  std::byte* row2 = w.storage.data() + 2 * layout.row_bytes;
  std::memcpy(row2 + 2, &kF16Inf, 2);  // group 1's scale
  EXPECT_EQ(CountNonFinite(w.view()), 1);
}

}  // namespace
}  // namespace mixq
