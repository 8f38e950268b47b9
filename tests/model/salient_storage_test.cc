// Salient (sparse FP16) parts of weight matrices: the CSR checks, MatMul's fused correction against the
// dequantize-then-multiply reference, GGUF round trips through q/k row permutation, bits per weight, and
// the loader's refusals of broken companion tensors.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/weight_format.h"
#include "mixq/kernels/matmul.h"
#include "mixq/model/forward.h"
#include "mixq/model/model.h"
#include "mixq/model/save_gguf.h"
#include "mixq/quant/quantize_model.h"
#include "mixq/tensor/sparse_rows.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;

// The k largest |w| of every row, as a CSR of their FP16 values.
SparseRows TopPerRow(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t k) {
  SparseRows s;
  s.row_ptr.push_back(0);
  std::vector<int64_t> idx(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) idx[static_cast<size_t>(c)] = c;
    const float* row = w.data() + r * cols;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int64_t a, int64_t b) { return std::fabs(row[a]) > std::fabs(row[b]); });
    std::sort(idx.begin(), idx.begin() + k);
    for (int64_t j = 0; j < k; ++j) {
      s.cols.push_back(static_cast<uint16_t>(idx[static_cast<size_t>(j)]));
      s.values.push_back(F32ToF16(row[idx[static_cast<size_t>(j)]]));
    }
    s.row_ptr.push_back(static_cast<uint32_t>(s.cols.size()));
  }
  return s;
}

// W quantized to `format` with the salient positions zeroed first: RTN stores 0 as the group's zero-point
// code, which dequantizes to exactly 0, so dense + sparse is exactly the FP16 value there.
std::vector<std::byte> DenseWithoutSalient(const WeightFormat& format, std::vector<float> w, int64_t rows,
                                           int64_t cols, const SparseRows& s) {
  for (int64_t r = 0; r < rows; ++r) {
    for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) w[static_cast<size_t>(r * cols + s.cols[k])] = 0.0f;
  }
  std::vector<std::byte> dense(*TensorBytes(format.dtype, {rows, cols}, format.group));
  QuantizeMatrix(format, w.data(), rows, cols, dense.data());
  return dense;
}

TEST(SparseRows, ValidationNamesTheTensorAndTheProblem) {
  SparseRows s{{0, 1, 3}, {2, 0, 4}, {F32ToF16(1.0f), F32ToF16(2.0f), F32ToF16(3.0f)}};
  EXPECT_NO_THROW(ValidateSparseRows(s.view(), 2, 5, "f.gguf", "blk.0.attn_q.weight"));
  const auto expect_error = [](const SparseRows& bad, int64_t cols, const std::string& what) {
    try {
      ValidateSparseRows(bad.view(), 2, cols, "f.gguf", "blk.0.attn_q.weight");
      FAIL() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(s, 4, "column 4");                                             // column past the row
  expect_error({{1, 1, 3}, s.cols, s.values}, 5, "starts at 1");             // first pointer not 0
  expect_error({{0, 3, 2}, s.cols, s.values}, 5, "row 1 spans");             // decreasing pointers
  expect_error({{0, 1, 2}, s.cols, s.values}, 5, "ends at 2");               // last pointer short of nnz
  expect_error({{0, 1, 3}, {2, 4, 0}, s.values}, 5, "columns must increase");  // unsorted within a row
  expect_error({{0, 1, 3}, s.cols, {s.values[0], 0x7e00, s.values[2]}}, 5, "non-finite");
  expect_error(s, kMaxSalientCols + 1, "at most");
}

struct FusedCase {
  const char* format;
  int64_t tokens;
};

class SalientMatMul : public ::testing::TestWithParam<FusedCase> {};

// The fused kernel (dense integer dot + sparse FP16 correction in one walk over row blocks) against the
// double-precision product of the dequantized dense part plus the sparse part. The integer kernels
// round activations to 8 bits per block of 32, so the bound is that rounding's (about 0.5% of the
// product's scale), far below what a missing, doubled or misplaced sparse part gives (~30% here: the
// salient values are each row's largest).
TEST_P(SalientMatMul, EqualsDequantizeThenMultiply) {
  const auto [format_name, n_tokens] = GetParam();
  const WeightFormat format = *ParseWeightFormat(format_name);
  const int64_t rows = 37, cols = 203;
  std::mt19937 rng(7);
  std::student_t_distribution<float> heavy(3.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = heavy(rng);
  const SparseRows s = TopPerRow(w, rows, cols, 3);
  const std::vector<std::byte> dense = DenseWithoutSalient(format, w, rows, cols, s);
  TensorView view{"w", format.dtype, {rows, cols}, dense.data(), dense.size(), format.group};
  view.salient = s.view();
  std::vector<float> x(static_cast<size_t>(n_tokens * cols));
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);

  std::vector<float> y(static_cast<size_t>(n_tokens * rows)), ref(y.size()), dense_only(y.size());
  MatMul(view, x.data(), n_tokens, y.data());
  MatMulRef(view, x.data(), n_tokens, ref.data());
  TensorView no_sparse = view;
  no_sparse.salient = {};
  MatMulRef(no_sparse, x.data(), n_tokens, dense_only.data());
  double err = 0.0, norm = 0.0, sparse_part = 0.0;
  for (size_t i = 0; i < y.size(); ++i) {
    err += (y[i] - ref[i]) * (y[i] - ref[i]);
    norm += ref[i] * ref[i];
    sparse_part += (ref[i] - dense_only[i]) * (ref[i] - dense_only[i]);
  }
  EXPECT_LT(std::sqrt(err / norm), 0.01) << format_name;
  EXPECT_GT(std::sqrt(sparse_part / norm), 0.1) << "the sparse part should matter in this test";

  // Exact at the salient positions: dense is 0 there, so the reconstruction is the FP16 value.
  std::vector<float> full(w.size());
  TensorToFloat(view, full.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (uint32_t k = s.row_ptr[r]; k < s.row_ptr[r + 1]; ++k) {
      ASSERT_EQ(full[static_cast<size_t>(r * cols + s.cols[k])], F16ToF32(F32ToF16(w[static_cast<size_t>(r * cols + s.cols[k])])));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, SalientMatMul,
                         ::testing::Values(FusedCase{"int4-g32", 1}, FusedCase{"int4-g32", 9},
                                           FusedCase{"int3-g64-sym", 1}, FusedCase{"int2-pc", 5},
                                           FusedCase{"f32", 1}, FusedCase{"f16", 4}));

std::vector<float> Logits(const LlamaConfig& config, const LlamaWeights& weights, const std::vector<int32_t>& tokens) {
  InferenceState state = MakeInferenceState(config, 64, 16);
  const float* logits = Forward(config, weights, state, tokens, 0, /*all_logits=*/true);
  return std::vector<float>(logits, logits + tokens.size() * static_cast<size_t>(config.vocab_size));
}

// Every linear of a model as int4-g32 plus its two largest weights per row in FP16, in memory.
struct SalientCopy {
  LlamaWeights weights;
  std::vector<std::vector<std::byte>> dense;
  std::vector<SparseRows> sparse;
  int64_t nnz = 0;
};

SalientCopy MakeSalientCopy(const Model& base) {
  SalientCopy copy;
  copy.weights = base.weights;
  const WeightFormat format = *ParseWeightFormat("int4-g32");
  std::vector<TensorView*> linears;
  for (LayerWeights& lw : copy.weights.layers) {
    for (int k = 0; k < kLinearKinds; ++k) linears.push_back(&LinearWeight(lw, static_cast<LinearKind>(k)));
  }
  copy.dense.reserve(linears.size());
  copy.sparse.reserve(linears.size());
  for (TensorView* v : linears) {
    std::vector<float> w(static_cast<size_t>(v->elements()));
    TensorToFloat(*v, w.data());
    copy.sparse.push_back(TopPerRow(w, v->rows(), v->cols(), 2));
    copy.dense.push_back(DenseWithoutSalient(format, w, v->rows(), v->cols(), copy.sparse.back()));
    v->dtype = format.dtype;
    v->group = format.group;
    v->data = copy.dense.back().data();
    v->bytes = copy.dense.back().size();
    v->salient = copy.sparse.back().view();
    copy.nnz += copy.sparse.back().nnz();
  }
  return copy;
}

// Writes `weights` (views of `base`'s shapes) as GGUF, each linear's salient part through the encoder;
// `tamper` may break a tensor's sparse part before it is written.
void WriteSalientModel(const Model& base, const LlamaWeights& weights, const std::string& path,
                       const std::function<void(const std::string&, SparseRows&)>& tamper = nullptr) {
  std::map<std::string, const TensorView*> by_name;
  ForEachTensor(base.config, weights, [&](const TensorSlot& slot) { by_name[slot.name] = slot.view; });
  WriteGgufModel(base, path, std::nullopt, [&](const TensorSlot& slot) {
    const TensorView& q = *by_name.at(slot.name);
    TensorEncoding e{q.dtype, q.group, [q](std::byte* dst) { std::memcpy(dst, q.data, q.bytes); }};
    if (!q.salient.empty()) {
      e.salient_nnz = q.salient.nnz;
      e.salient = std::make_shared<SparseRows>();
      e.produce = [q, salient = e.salient, tamper, name = slot.name](std::byte* dst) {
        std::memcpy(dst, q.data, q.bytes);
        salient->row_ptr.assign(q.salient.row_ptr, q.salient.row_ptr + q.rows() + 1);
        salient->cols.assign(q.salient.cols, q.salient.cols + q.salient.nnz);
        salient->values.assign(q.salient.values, q.salient.values + q.salient.nnz);
        if (tamper) tamper(name, *salient);
      };
    }
    return e;
  });
}

const Model& Docs5M() {
  static const Model* model = new Model(LoadModel(SharedPath("models/docs-5M")));
  return *model;
}

// docs-5M is a Hugging Face folder (rotate-half q/k), so writing GGUF permutes q/k rows: the sparse rows
// must move with them. The loaded file runs as the in-memory model does.
TEST(SalientGguf, RoundTripRunsAsInMemoryThroughTheQkPermutation) {
  const Model& base = Docs5M();
  ASSERT_EQ(base.config.rope_style, RopeStyle::kHalf);
  const SalientCopy copy = MakeSalientCopy(base);
  const std::string path = ::testing::TempDir() + "/docs-salient.gguf";
  WriteSalientModel(base, copy.weights, path);
  const Model loaded = LoadModel(path);
  ASSERT_FALSE(loaded.weights.layers[0].wq.salient.empty());
  EXPECT_EQ(loaded.weights.layers[1].w_down.salient.nnz, 2 * loaded.weights.layers[1].w_down.rows());

  const std::vector<int32_t> tokens = {1, 42, 517, 3, 999, 12, 7, 300};
  const std::vector<float> want = Logits(base.config, copy.weights, tokens);
  const std::vector<float> got = Logits(loaded.config, loaded.weights, tokens);
  LlamaWeights dense_only = copy.weights;
  for (LayerWeights& lw : dense_only.layers) {
    for (int k = 0; k < kLinearKinds; ++k) LinearWeight(lw, static_cast<LinearKind>(k)).salient = {};
  }
  const std::vector<float> without = Logits(base.config, dense_only, tokens);
  double err = 0.0, norm = 0.0, gap = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (got[i] - want[i]) * (got[i] - want[i]);
    gap += (without[i] - want[i]) * (without[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LT(std::sqrt(err / norm), 1e-5);
  EXPECT_GT(std::sqrt(gap / norm), 1e-3) << "dropping the sparse part should show";

  // Bits per weight count the sparse part: (rows + 1) row pointers, a column and a value per entry.
  int64_t sparse_bytes = 0;
  for (const SparseRows& s : copy.sparse) sparse_bytes += static_cast<int64_t>(s.row_ptr.size()) * 4 + s.nnz() * 4;
  int64_t dense_bytes = 0;
  ForEachTensor(loaded.config, loaded.weights, [&](const TensorSlot& slot) {
    dense_bytes += static_cast<int64_t>(slot.view->bytes);
  });
  EXPECT_EQ(ComputeModelSize(loaded).bytes, dense_bytes + sparse_bytes);

  // Re-saving keeps the sparse part (tensors copied as stored carry it along).
  const std::string again = ::testing::TempDir() + "/docs-salient-again.gguf";
  WriteGgufModel(loaded, again, std::nullopt, [](const TensorSlot& slot) {
    return TensorEncoding{slot.view->dtype, slot.view->group, nullptr};
  });
  const Model reloaded = LoadModel(again);
  EXPECT_EQ(Logits(reloaded.config, reloaded.weights, tokens), got);
  // Converting to F16 folds it into the dense weights.
  const std::string f16 = ::testing::TempDir() + "/docs-salient-f16.gguf";
  SaveGgufModel(loaded, f16, DType::kF16);
  const Model folded = LoadModel(f16);
  EXPECT_TRUE(folded.weights.layers[0].wq.salient.empty());
  std::vector<float> a(static_cast<size_t>(loaded.weights.layers[0].w_down.elements())), b(a.size());
  TensorToFloat(loaded.weights.layers[0].w_down, a.data());
  TensorToFloat(folded.weights.layers[0].w_down, b.data());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(F32ToF16(a[i]), F32ToF16(b[i])) << i;
}

std::string LoadError(const std::string& path) {
  try {
    LoadModel(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SalientGguf, BrokenSparsePartsAreRefusedByName) {
  const Model& base = Docs5M();
  const SalientCopy copy = MakeSalientCopy(base);
  const std::string target = "blk.1.ffn_up.weight";
  const std::string decreasing = ::testing::TempDir() + "/salient-decreasing.gguf";
  WriteSalientModel(base, copy.weights, decreasing, [&](const std::string& name, SparseRows& s) {
    if (name == target) std::swap(s.row_ptr[3], s.row_ptr[4]);
  });
  std::string error = LoadError(decreasing);
  EXPECT_NE(error.find(target), std::string::npos) << error;
  EXPECT_NE(error.find("spans"), std::string::npos) << error;

  const std::string nan = ::testing::TempDir() + "/salient-nan.gguf";
  WriteSalientModel(base, copy.weights, nan, [&](const std::string& name, SparseRows& s) {
    if (name == target) s.values[5] = 0x7c01;
  });
  error = LoadError(nan);
  EXPECT_NE(error.find(target), std::string::npos) << error;
  EXPECT_NE(error.find("non-finite"), std::string::npos) << error;

  // One of the three companion tensors renamed away (same length, so the file stays well-formed).
  const std::string good = ::testing::TempDir() + "/salient-good.gguf";
  WriteSalientModel(base, copy.weights, good);
  std::string bytes = ReadFileToString(good);
  const std::string name = SalientColsName(target);
  const size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  bytes[at + name.size() - 1] = 'z';
  const std::string missing = ::testing::TempDir() + "/salient-missing.gguf";
  std::ofstream(missing, std::ios::binary) << bytes;
  error = LoadError(missing);
  EXPECT_NE(error.find("without '" + name + "'"), std::string::npos) << error;
}

}  // namespace
}  // namespace mixq
