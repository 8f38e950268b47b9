// ggml quantizers: llama.cpp's own quantized files reproduced byte for byte from their float source
// (shared/data/ggml-reference), round-trip error bounds on random and real weights, importance weights,
// and degenerate blocks.
#include "mixq/formats/ggml_quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mixq/formats/float16.h"
#include "mixq/formats/ggml_blocks.h"
#include "mixq/formats/ggml_dequant.h"
#include "mixq/io/gguf.h"
#include "mixq/model/model.h"
#include "test_paths.h"

namespace mixq {
namespace {

using namespace ggml;

struct QuantType {
  const char* file_key;  // the synth-<key>.gguf reference file (llama-quantize's type name)
  DType dtype;
};
void PrintTo(const QuantType& t, std::ostream* os) { *os << DTypeName(t.dtype); }

const QuantType kWeightTypes[] = {
    {"Q8_0", DType::kQ8_0},   {"Q4_0", DType::kQ4_0},     {"Q4_1", DType::kQ4_1},     {"Q5_0", DType::kQ5_0},
    {"Q5_1", DType::kQ5_1},   {"Q2_K", DType::kQ2_K},     {"Q3_K_M", DType::kQ3_K},   {"Q4_K_M", DType::kQ4_K},
    {"Q5_K_M", DType::kQ5_K}, {"Q6_K", DType::kQ6_K},     {"IQ4_NL", DType::kIQ4_NL}, {"IQ4_XS", DType::kIQ4_XS},
};

int64_t BlockSize(DType dtype) { return Traits(dtype).block_size; }

std::vector<uint8_t> Quantize(DType dtype, const float* x, int64_t n, const float* importance = nullptr) {
  std::vector<uint8_t> out(*StorageBytes(dtype, n));
  QuantizeRowGgml(dtype, x, out.data(), n, importance);
  return out;
}

// Q8_1 has no dequantizer in the model path (it never sits in a file): read it here from its layout.
std::vector<float> DequantizeQ8_1(const uint8_t* blocks, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n / kQK; ++i) {
    BlockQ8_1 b;
    std::memcpy(&b, blocks + i * sizeof b, sizeof b);
    for (int j = 0; j < kQK; ++j) y[i * kQK + j] = static_cast<float>(b.qs[j]) * F16ToF32(b.d);
  }
  return y;
}

std::vector<float> Dequantize(DType dtype, const std::vector<uint8_t>& blocks, int64_t n) {
  if (dtype == DType::kQ8_1) return DequantizeQ8_1(blocks.data(), n);
  std::vector<float> y(static_cast<size_t>(n));
  DequantizeRow(dtype, blocks.data(), y.data(), n);
  return y;
}

double SquaredError(const float* x, const float* y, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
  return sum;
}

// Student-t with 4 degrees of freedom: heavy tails like real weights (and like the reference file's).
std::vector<float> RandomWeights(int64_t n, uint32_t seed, float scale = 0.05f) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> dist(4.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = scale * dist(rng);
  return x;
}

// ------------------------------------------------------------------------------------------------------

TEST(GgmlQuantTest, CoversTheWeightAndActivationTypes) {
  for (const QuantType& t : kWeightTypes) EXPECT_TRUE(HasGgmlQuantizer(t.dtype)) << DTypeName(t.dtype);
  for (DType d : {DType::kQ8_K, DType::kQ8_1}) EXPECT_TRUE(HasGgmlQuantizer(d)) << DTypeName(d);
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kIQ2_XXS, DType::kIQ3_S, DType::kTQ1_0,
                  DType::kMXFP4, DType::kInt4})
    EXPECT_FALSE(HasGgmlQuantizer(d)) << DTypeName(d);
  EXPECT_EQ(sizeof(BlockQ8_1), Traits(DType::kQ8_1).block_bytes);
}

// ------------------------------------------------------------------------------------------------------
// The decisive test: every weight tensor of synth-f32.gguf, quantized here, equals the same tensor in the
// synth-<type>.gguf that llama.cpp's llama-quantize --pure (no imatrix) wrote from it.

class GgmlQuantReferenceTest : public ::testing::TestWithParam<QuantType> {};

TEST_P(GgmlQuantReferenceTest, ReproducesLlamaQuantizeBytes) {
  const QuantType t = GetParam();
  const std::string dir = testing::SharedPath("data/ggml-reference/");
  const GgufFile source = ReadGguf(dir + "synth-f32.gguf");
  const GgufFile reference = ReadGguf(dir + "synth-" + t.file_key + ".gguf");
  const size_t block_bytes = Traits(t.dtype).block_bytes;
  int64_t tensors = 0;
  int64_t blocks = 0;
  int64_t identical = 0;
  for (const GgufTensorInfo& ref_info : reference.tensors) {
    // llama-quantize may keep some tensors in another type (norms stay F32): compare where it used ours.
    if (ref_info.dtype != t.dtype) continue;
    const GgufTensorInfo* src_info = source.FindTensor(ref_info.name);
    ASSERT_NE(src_info, nullptr) << ref_info.name;
    ASSERT_EQ(src_info->dtype, DType::kF32) << ref_info.name;
    ASSERT_EQ(src_info->shape, ref_info.shape) << ref_info.name;
    const TensorView src = source.View(*src_info);
    const TensorView ref = reference.View(ref_info);
    const int64_t cols = src.cols();
    const size_t row_bytes = *StorageBytes(t.dtype, cols);
    ASSERT_EQ(ref.bytes, row_bytes * static_cast<size_t>(src.rows())) << ref_info.name;
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < src.rows(); ++r) {
      std::memcpy(row.data(), src.row(r), row.size() * sizeof(float));
      const std::vector<uint8_t> mine = Quantize(t.dtype, row.data(), cols);
      const auto* theirs = reinterpret_cast<const uint8_t*>(ref.row(r));
      for (size_t b = 0; b < row_bytes / block_bytes; ++b) {
        ++blocks;
        if (std::memcmp(mine.data() + b * block_bytes, theirs + b * block_bytes, block_bytes) == 0) {
          ++identical;
          continue;
        }
        // Not expected (all types match 100%): show what differs to make a regression easy to place.
        const int64_t bs = BlockSize(t.dtype);
        std::vector<float> y_mine(static_cast<size_t>(bs));
        std::vector<float> y_theirs(static_cast<size_t>(bs));
        DequantizeRow(t.dtype, mine.data() + b * block_bytes, y_mine.data(), bs);
        DequantizeRow(t.dtype, theirs + b * block_bytes, y_theirs.data(), bs);
        ADD_FAILURE() << fmt::format("{} row {} block {}: squared error mine {:.9g} vs llama.cpp {:.9g}",
                                     ref_info.name, r, b, SquaredError(row.data() + b * bs, y_mine.data(), bs),
                                     SquaredError(row.data() + b * bs, y_theirs.data(), bs));
        if (blocks - identical > 5) return;
      }
    }
    ++tensors;
  }
  // synth has 7 matrices per layer x 2 layers + token_embd + output.
  EXPECT_EQ(tensors, 16);
  const double fraction = blocks ? static_cast<double>(identical) / static_cast<double>(blocks) : 0.0;
  std::printf("[ reference ] %-7s %lld/%lld blocks identical (%.4f%%) over %lld tensors\n", DTypeName(t.dtype),
              static_cast<long long>(identical), static_cast<long long>(blocks), 100.0 * fraction,
              static_cast<long long>(tensors));
  RecordProperty("identical_blocks_fraction", fmt::format("{:.6f}", fraction));
  EXPECT_EQ(identical, blocks);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GgmlQuantReferenceTest, ::testing::ValuesIn(kWeightTypes),
                         [](const auto& info) { return std::string(DTypeName(info.param.dtype)); });

}  // namespace
}  // namespace mixq
