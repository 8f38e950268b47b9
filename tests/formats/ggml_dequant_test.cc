// ggml block dequantization: hand-built blocks whose values follow from the documented layout, and
// llama.cpp's own quantized files against ggml's dequantization of them (shared/data/ggml-reference).
#include "mixq/formats/ggml_dequant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mixq/formats/convert.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_blocks.h"
#include "mixq/io/gguf.h"
#include "test_paths.h"

namespace mixq {
namespace {

using namespace ggml;

constexpr uint16_t kHalfOne = 0x3c00;  // 1.0 in F16

// The types this slice reads, as the reference files name them.
struct RefType {
  const char* manifest_key;
  DType dtype;
};
void PrintTo(const RefType& t, std::ostream* os) { *os << t.manifest_key; }
const RefType kRefTypes[] = {
    {"Q4_0", DType::kQ4_0},     {"Q4_1", DType::kQ4_1},     {"Q5_0", DType::kQ5_0},
    {"Q5_1", DType::kQ5_1},     {"Q8_0", DType::kQ8_0},     {"Q2_K", DType::kQ2_K},
    {"Q3_K_M", DType::kQ3_K},   {"Q4_K_M", DType::kQ4_K},   {"Q5_K_M", DType::kQ5_K},
    {"Q6_K", DType::kQ6_K},     {"IQ4_NL", DType::kIQ4_NL}, {"IQ4_XS", DType::kIQ4_XS},
};

template <typename Block>
std::vector<float> Dequantize(DType dtype, const Block& block) {
  std::vector<float> out(static_cast<size_t>(Traits(dtype).block_size));
  DequantizeRow(dtype, &block, out.data(), static_cast<int64_t>(out.size()));
  return out;
}

TEST(GgmlBlocksTest, StructSizesMatchTheTraitsTable) {
  EXPECT_EQ(sizeof(BlockQ4_0), Traits(DType::kQ4_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4_1), Traits(DType::kQ4_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_0), Traits(DType::kQ5_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_1), Traits(DType::kQ5_1).block_bytes);
  EXPECT_EQ(sizeof(BlockQ8_0), Traits(DType::kQ8_0).block_bytes);
  EXPECT_EQ(sizeof(BlockQ2_K), Traits(DType::kQ2_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ3_K), Traits(DType::kQ3_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ4_K), Traits(DType::kQ4_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ5_K), Traits(DType::kQ5_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ6_K), Traits(DType::kQ6_K).block_bytes);
  EXPECT_EQ(sizeof(BlockQ8_K), Traits(DType::kQ8_K).block_bytes);
  EXPECT_EQ(sizeof(BlockIQ4_NL), Traits(DType::kIQ4_NL).block_bytes);
  EXPECT_EQ(sizeof(BlockIQ4_XS), Traits(DType::kIQ4_XS).block_bytes);
}

TEST(GgmlDequantTest, CoversExactlyTheReadTypes) {
  for (const RefType& t : kRefTypes) EXPECT_TRUE(HasDequantizer(t.dtype)) << DTypeName(t.dtype);
  EXPECT_TRUE(HasDequantizer(DType::kQ8_K));
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_1, DType::kIQ2_XXS, DType::kIQ3_S,
                  DType::kTQ1_0, DType::kMXFP4})
    EXPECT_FALSE(HasDequantizer(d)) << DTypeName(d);
  // Reading is not running: the codec and kernel predicates stay float-only.
  EXPECT_FALSE(HasFloatCodec(DType::kQ4_K));
}

// In every hand-built block below, the codes are scattered weight by weight from the layout comments
// in ggml_blocks.h (the dequantizers gather them), scales differ per sub-block, and all values are small
// integers or halves, so the expected floats are exact.

TEST(GgmlDequantTest, Q4_0HandBuilt) {
  BlockQ4_0 b{};
  b.d = kHalfOne;
  for (int i = 0; i < 32; ++i) b.qs[i % 16] |= static_cast<uint8_t>((i % 16) << (i < 16 ? 0 : 4));
  // Weight i has code i % 16 whichever half it is in.
  const auto y = Dequantize(DType::kQ4_0, b);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], static_cast<float>(i % 16 - 8)) << i;
  // The second half lives in the high nibbles: weight 16 is byte 0's high nibble.
  BlockQ4_0 c{};
  c.d = kHalfOne;
  c.qs[0] = 0xf0;
  const auto z = Dequantize(DType::kQ4_0, c);
  EXPECT_EQ(z[0], -8.0f);
  EXPECT_EQ(z[16], 7.0f);
  EXPECT_EQ(z[1], -8.0f);
}

TEST(GgmlDequantTest, Q4_1HandBuilt) {
  BlockQ4_1 b{};
  b.d = F32ToF16(0.5f);
  b.m = F32ToF16(-3.0f);
  for (int i = 0; i < 32; ++i) b.qs[i % 16] |= static_cast<uint8_t>(((i * 7) % 16) << (i < 16 ? 0 : 4));
  const auto y = Dequantize(DType::kQ4_1, b);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], ((i * 7) % 16) * 0.5f - 3.0f) << i;
}

template <typename Block>
void PackQ5Codes(Block& b, int (*code)(int)) {
  uint32_t qh = 0;
  for (int i = 0; i < 32; ++i) {
    const int q = code(i);
    b.qs[i % 16] |= static_cast<uint8_t>((q & 15) << (i < 16 ? 0 : 4));
    qh |= static_cast<uint32_t>(q >> 4) << i;
  }
  for (int k = 0; k < 4; ++k) b.qh[k] = static_cast<uint8_t>(qh >> (8 * k));  // little-endian
}

TEST(GgmlDequantTest, Q5_0HandBuilt) {
  BlockQ5_0 b{};
  b.d = F32ToF16(2.0f);
  PackQ5Codes(b, [](int i) { return (i * 11 + 3) % 32; });
  const auto y = Dequantize(DType::kQ5_0, b);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 2.0f * ((i * 11 + 3) % 32 - 16)) << i;
}

TEST(GgmlDequantTest, Q5_1HandBuilt) {
  BlockQ5_1 b{};
  b.d = kHalfOne;
  b.m = F32ToF16(-0.5f);
  PackQ5Codes(b, [](int i) { return (i * 13 + 5) % 32; });
  const auto y = Dequantize(DType::kQ5_1, b);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], ((i * 13 + 5) % 32) - 0.5f) << i;
}

TEST(GgmlDequantTest, Q8_0HandBuilt) {
  BlockQ8_0 b{};
  b.d = F32ToF16(0.5f);
  for (int i = 0; i < 32; ++i) b.qs[i] = static_cast<int8_t>(i * 8 - 128);
  const auto y = Dequantize(DType::kQ8_0, b);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.5f * (i * 8 - 128)) << i;
}

// Q2_K / Q3_K low bits: weight 128h + 32k + l is bits 2k..2k+1 of qs[32h + l].
void SetLow2(uint8_t* qs, int i, int q) {
  const int h = i / 128, k = (i % 128) / 32, l = i % 32;
  qs[32 * h + l] |= static_cast<uint8_t>((q & 3) << (2 * k));
}

TEST(GgmlDequantTest, Q2_KHandBuilt) {
  BlockQ2_K b{};
  b.d = kHalfOne;
  b.dmin = F32ToF16(0.5f);
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<uint8_t>(((s + 1) & 15) | ((15 - s) << 4));
  for (int i = 0; i < 256; ++i) SetLow2(b.qs, i, (i / 3) % 4);
  const auto y = Dequantize(DType::kQ2_K, b);
  for (int i = 0; i < 256; ++i) {
    const int s = i / 16;
    EXPECT_EQ(y[i], static_cast<float>(((s + 1) & 15) * ((i / 3) % 4)) - 0.5f * (15 - s)) << i;
  }
}

TEST(GgmlDequantTest, Q3_KHandBuilt) {
  BlockQ3_K b{};
  b.d = F32ToF16(0.5f);
  auto scale = [](int s) { return (s * 4 + 1) % 64; };  // 6-bit, spans below and above the 32 offset
  for (int s = 0; s < 16; ++s) {
    const int v = scale(s);
    if (s < 8) b.scales[s] |= static_cast<uint8_t>(v & 15);
    else b.scales[s - 8] |= static_cast<uint8_t>((v & 15) << 4);
    b.scales[8 + s % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (s / 4)));
  }
  auto code = [](int i) { return (i * 5 + i / 32) % 8; };
  for (int i = 0; i < 256; ++i) {
    SetLow2(b.qs, i, code(i));
    const int h = i / 128, k = (i % 128) / 32, l = i % 32;
    if (code(i) >= 4) b.hmask[l] |= static_cast<uint8_t>(1 << (4 * h + k));
  }
  const auto y = Dequantize(DType::kQ3_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.5f * (scale(i / 16) - 32) * (code(i) - 4)) << i;
}

// Q4_K / Q5_K scales: the inverse of get_scale_min_k4 for sub-block s.
void PackScaleMinK4(uint8_t* q, int s, int scale, int min) {
  if (s < 4) {
    q[s] |= static_cast<uint8_t>(scale);
    q[s + 4] |= static_cast<uint8_t>(min);
  } else {
    q[s + 4] |= static_cast<uint8_t>((scale & 15) | ((min & 15) << 4));
    q[s - 4] |= static_cast<uint8_t>((scale >> 4) << 6);
    q[s] |= static_cast<uint8_t>((min >> 4) << 6);
  }
}

int KScale(int s) { return 63 - 9 * s; }  // 63 .. 0: uses all six bits
int KMin(int s) { return 5 + 8 * s; }     // 5 .. 61

TEST(GgmlDequantTest, Q4_KHandBuilt) {
  BlockQ4_K b{};
  b.d = F32ToF16(0.5f);
  b.dmin = F32ToF16(0.25f);
  for (int s = 0; s < 8; ++s) PackScaleMinK4(b.scales, s, KScale(s), KMin(s));
  auto code = [](int i) { return (i * 7 + i / 64) % 16; };
  for (int i = 0; i < 256; ++i) {
    const int c = i / 64, r = i % 64;
    b.qs[32 * c + r % 32] |= static_cast<uint8_t>(code(i) << (r < 32 ? 0 : 4));
  }
  const auto y = Dequantize(DType::kQ4_K, b);
  for (int i = 0; i < 256; ++i) {
    const int s = i / 32;
    EXPECT_EQ(y[i], 0.5f * KScale(s) * code(i) - 0.25f * KMin(s)) << i;
  }
}

TEST(GgmlDequantTest, Q5_KHandBuilt) {
  BlockQ5_K b{};
  b.d = kHalfOne;
  b.dmin = F32ToF16(0.5f);
  for (int s = 0; s < 8; ++s) PackScaleMinK4(b.scales, s, KScale(s), KMin(s));
  auto code = [](int i) { return (i * 11 + i / 32) % 32; };
  for (int i = 0; i < 256; ++i) {
    const int c = i / 64, r = i % 64;
    b.qs[32 * c + r % 32] |= static_cast<uint8_t>((code(i) & 15) << (r < 32 ? 0 : 4));
    b.qh[r % 32] |= static_cast<uint8_t>((code(i) >> 4) << (2 * c + (r < 32 ? 0 : 1)));
  }
  const auto y = Dequantize(DType::kQ5_K, b);
  for (int i = 0; i < 256; ++i) {
    const int s = i / 32;
    EXPECT_EQ(y[i], static_cast<float>(KScale(s) * code(i)) - 0.5f * KMin(s)) << i;
  }
}

TEST(GgmlDequantTest, Q6_KHandBuilt) {
  BlockQ6_K b{};
  b.d = F32ToF16(0.5f);
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(s * 16 - 120);  // negative and positive
  auto code = [](int i) { return (i * 13 + i / 64) % 64; };
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, g = (i % 128) / 32, l = i % 32;
    const int q = code(i);
    b.ql[64 * h + l + (g % 2) * 32] |= static_cast<uint8_t>((q & 15) << (g < 2 ? 0 : 4));
    b.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * g));
  }
  const auto y = Dequantize(DType::kQ6_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.5f * b.scales[i / 16] * (code(i) - 32)) << i;
}

TEST(GgmlDequantTest, Q8_KHandBuilt) {
  BlockQ8_K b{};
  b.d = 0.25f;
  for (int i = 0; i < 256; ++i) b.qs[i] = static_cast<int8_t>(i - 128);
  const auto y = Dequantize(DType::kQ8_K, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.25f * (i - 128)) << i;
}

TEST(GgmlDequantTest, IQ4_NLHandBuilt) {
  BlockIQ4_NL b{};
  b.d = F32ToF16(2.0f);
  for (int i = 0; i < 32; ++i) b.qs[i % 16] |= static_cast<uint8_t>(((i * 5) % 16) << (i < 16 ? 0 : 4));
  const auto y = Dequantize(DType::kIQ4_NL, b);
  // ggml's kvalues_iq4nl, restated here so a typo in the library's copy shows up.
  const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 2.0f * levels[(i * 5) % 16]) << i;
}

TEST(GgmlDequantTest, IQ4_XSHandBuilt) {
  BlockIQ4_XS b{};
  b.d = F32ToF16(0.5f);
  auto scale = [](int s) { return 3 + 8 * s; };  // 3 .. 59, crosses the 32 offset
  for (int s = 0; s < 8; ++s) {
    b.scales_l[s / 2] |= static_cast<uint8_t>((scale(s) & 15) << (4 * (s % 2)));
    b.scales_h |= static_cast<uint16_t>((scale(s) >> 4) << (2 * s));
  }
  auto code = [](int i) { return (i * 3 + i / 32) % 16; };
  for (int i = 0; i < 256; ++i) {
    const int s = i / 32, r = i % 32;
    b.qs[16 * s + r % 16] |= static_cast<uint8_t>(code(i) << (r < 16 ? 0 : 4));
  }
  const auto y = Dequantize(DType::kIQ4_XS, b);
  const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], 0.5f * (scale(i / 32) - 32) * levels[code(i)]) << i;
}

TEST(GgmlDequantTest, RowsOfSeveralBlocksAndRowToFloatAgree) {
  // Three Q4_K blocks with different scales: block b must land at dst[256 b ...].
  std::vector<BlockQ4_K> blocks(3);
  for (int k = 0; k < 3; ++k) {
    blocks[k] = BlockQ4_K{};
    blocks[k].d = F32ToF16(static_cast<float>(k + 1));
    for (int s = 0; s < 8; ++s) PackScaleMinK4(blocks[k].scales, s, 1, 0);
    for (auto& q : blocks[k].qs) q = 0x11;
  }
  std::vector<float> y(768), z(768);
  DequantizeRow(DType::kQ4_K, blocks.data(), y.data(), 768);
  RowToFloat(DType::kQ4_K, blocks.data(), z.data(), 768);
  for (int i = 0; i < 768; ++i) EXPECT_EQ(y[i], static_cast<float>(i / 256 + 1)) << i;
  EXPECT_EQ(std::memcmp(y.data(), z.data(), y.size() * sizeof(float)), 0);
}

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

// llama.cpp's files, every row of both reference tensors, against ggml's own dequantization. The bar is
// bit equality (the same float operations in the same order); the reported relative error is for the
// record and is what a looser reader would be held to (1e-6).
class GgmlReferenceTest : public ::testing::TestWithParam<RefType> {};

TEST_P(GgmlReferenceTest, MatchesLlamaCppDequantization) {
  const RefType ref = GetParam();
  const std::string dir = testing::SharedPath("data/ggml-reference/");
  std::ifstream manifest_in(dir + "manifest.json");
  ASSERT_TRUE(manifest_in.good()) << dir << "manifest.json";
  const nlohmann::json manifest = nlohmann::json::parse(manifest_in);
  const nlohmann::json& entry = manifest.at(ref.manifest_key);
  const GgufFile file = ReadGguf(dir + entry.at("file").get<std::string>());
  const std::vector<float> expected = ReadFloats(dir + entry.at("dequant_file").get<std::string>());

  int64_t checked = 0, differing_bits = 0, nonzero = 0;
  double max_abs = 0.0, max_rel = 0.0;
  for (const nlohmann::json& d : entry.at("dequant")) {
    const std::string name = d.at("name").get<std::string>();
    const GgufTensorInfo* info = file.FindTensor(name);
    ASSERT_NE(info, nullptr) << name;
    ASSERT_EQ(info->dtype, ref.dtype) << name;
    const TensorView view = file.View(*info);
    const int64_t offset = d.at("offset_floats").get<int64_t>();
    const int64_t count = d.at("count").get<int64_t>();
    ASSERT_EQ(count, view.elements()) << name;
    ASSERT_LE(static_cast<size_t>(offset + count), expected.size()) << name;
    std::vector<float> row(static_cast<size_t>(view.cols()));
    for (int64_t r = 0; r < view.rows(); ++r) {
      DequantizeRow(view.dtype, view.row(r), row.data(), view.cols());
      const float* want = expected.data() + offset + r * view.cols();
      for (int64_t c = 0; c < view.cols(); ++c) {
        const double err = std::fabs(static_cast<double>(row[c]) - want[c]);
        max_abs = std::max(max_abs, err);
        if (want[c] != 0.0f) max_rel = std::max(max_rel, err / std::fabs(want[c]));
        if (std::memcmp(&row[c], &want[c], sizeof(float)) != 0) ++differing_bits;
        if (want[c] != 0.0f) ++nonzero;
        ++checked;
      }
    }
  }
  std::printf("%s (%s): %lld values, %lld not bit-identical, max abs err %.3g, max rel err %.3g\n",
              ref.manifest_key, DTypeName(ref.dtype), static_cast<long long>(checked),
              static_cast<long long>(differing_bits), max_abs, max_rel);
  EXPECT_EQ(checked, 65536 + 131072);
  EXPECT_GT(nonzero, checked / 2);  // the comparison is not between two zero tensors
  EXPECT_LE(max_rel, 1e-6);
  EXPECT_EQ(differing_bits, 0);
}

INSTANTIATE_TEST_SUITE_P(GgmlTypes, GgmlReferenceTest, ::testing::ValuesIn(kRefTypes),
                         [](const auto& info) { return std::string(info.param.manifest_key); });

}  // namespace
}  // namespace mixq
