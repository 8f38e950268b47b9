// `QuantizeModel` end to end on real checkpoints: every format quantizes stories260K into a GGUF that
// loads and runs, Q8_0/INT8 stay within 0.5% of FP32 perplexity, the file holds exactly the quantizer's
// blocks, K-quants run docs-5M (a Hugging Face model whose q/k rows are permuted on the way), and bad
// requests fail by name.
#include "mixq/quant/quantize_model.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <tuple>

#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/eval/perplexity.h"
#include "mixq/formats/convert.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/model/forward.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories260KPath;

const std::string& StoriesText() {
  static const std::string text = ReadFileToString(SharedPath("data/tinystories/TinyStories-valid.head30k.txt"));
  return text;
}

double StoriesPpl(const Model& model) {
  PerplexityOptions options;
  options.ctx = 256;
  options.progress = false;
  return EvaluatePerplexity(model, TokenizeForPerplexity(model, StoriesText()), options).ppl;
}

const Model& Stories() {
  static const Model* model = new Model(LoadModel(Stories260KPath()));
  return *model;
}

double StoriesF32Ppl() {
  static const double ppl = StoriesPpl(Stories());
  return ppl;
}

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

QuantizeReport Quantize(const Model& model, const std::string& format, const std::string& path) {
  QuantizeOptions options;
  options.type = ParseWeightFormat(format);
  EXPECT_TRUE(options.type.has_value()) << format;
  return QuantizeModel(model, path, options);
}

class StoriesEveryFormat : public ::testing::TestWithParam<std::string> {};

// Each format's perplexity bound over FP32 on stories260K (ctx 256), about 1.5x the measured loss
// (measured ratios in the comments). 8-bit formats stay within 0.5%, as the issue demands. stories260K's
// 64- and 172-wide rows fit no 256-block, so its K-quants and IQ4_XS run as llama.cpp's fallbacks (Q5_0,
// Q5_1, Q8_0, IQ4_NL; F16 for 172-wide rows that fit no 32-block either): K-quant kernels are exercised by
// the docs-5M test below and by llama.cpp's own files (tests/model/quantized_model_test.cc). INT formats
// hold every row. A tiny model loses much at 3 and 2 bits under plain RTN: those bounds only catch breakage.
double AllowedPplRatio(const std::string& format) {
  static const std::map<std::string, double> ratios = {
      {"q8_0", 1.005},          // 1.0005
      {"q6_k", 1.005},          // 1.0005 (as Q8_0)
      {"q5_0", 1.04},           // 1.027
      {"q5_1", 1.03},           // 1.018
      {"q5_k", 1.03},           // 1.018 (as Q5_1)
      {"q4_0", 1.23},           // 1.150
      {"q4_1", 1.13},           // 1.086
      {"q4_k", 1.04},           // 1.027 (as Q5_0)
      {"iq4_nl", 1.12},         // 1.081
      {"iq4_xs", 1.12},         // 1.081 (as IQ4_NL)
      {"q3_k", 1.12},           // 1.081 (as IQ4_NL)
      {"q2_k", 1.12},           // 1.081 (as IQ4_NL)
      {"int8-pc", 1.005},       // 1.0001
      {"int8-g32-sym", 1.005},  // 1.003
      {"int8-pt", 1.01},        // 1.006
      {"int7-g128-sym", 1.005}, // 0.9993
      {"int6-pc", 1.03},        // 1.018
      {"int5-g64", 1.045},      // 1.028
      {"int4-g32", 1.2},        // 1.132
      {"int4-g128", 1.24},      // 1.157
      {"int4-pc-sym", 1.27},    // 1.176
      {"int3-g64", 2.7},        // 2.12
      {"int3-g32-sym", 2.4},    // 1.93
      {"int2-g32", 40.0},       // 27.3
  };
  return ratios.at(format);
}

TEST_P(StoriesEveryFormat, QuantizesLoadsAndRuns) {
  const std::string format = GetParam();
  const std::string path = TempPath("stories-" + format + ".gguf");
  const QuantizeReport report = Quantize(Stories(), format, path);
  // Every weight matrix is either in the format or in its documented fallback; norms stay F32.
  for (const TensorQuantReport& t : report.tensors) {
    if (t.name.ends_with("_norm.weight")) {
      EXPECT_EQ(t.format, "F32 (kept)") << t.name;
      continue;
    }
    EXPECT_TRUE(t.format == format || t.reason.find("->") != std::string::npos) << t.name << " " << t.format;
    EXPECT_TRUE(std::isfinite(t.relative_rmse));
    EXPECT_LT(t.relative_rmse, 1.0) << t.name;
  }
  EXPECT_LT(report.output.bytes, report.input.bytes);
  const Model q = LoadModel(path);
  const double ppl = StoriesPpl(q);
  const double ratio = ppl / StoriesF32Ppl();
  RecordProperty("ppl_ratio", std::to_string(ratio));
  EXPECT_TRUE(std::isfinite(ppl));
  EXPECT_LE(ratio, AllowedPplRatio(format)) << format << ": ppl " << ppl << " vs F32 " << StoriesF32Ppl();
  EXPECT_GE(ratio, 0.98) << format;  // better than FP32 by 2% would mean a measurement bug
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(Formats, StoriesEveryFormat,
                         ::testing::Values("q8_0", "q6_k", "q5_0", "q5_1", "q5_k", "q4_0", "q4_1", "q4_k", "iq4_nl",
                                           "iq4_xs", "q3_k", "q2_k", "int8-pc", "int8-g32-sym", "int8-pt",
                                           "int7-g128-sym", "int6-pc", "int5-g64", "int4-g32", "int4-g128",
                                           "int4-pc-sym", "int3-g64", "int3-g32-sym", "int2-g32"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

TEST(QuantizeModelTest, FileHoldsExactlyTheQuantizersBlocks) {
  const std::string path = TempPath("stories-int4-g128-exact.gguf");
  Quantize(Stories(), "int4-g128", path);
  const Model q = LoadModel(path);
  const TensorView& src = Stories().weights.layers[2].w_down;  // 64 x 172: groups of 128 and 44
  const TensorView& stored = q.weights.layers[2].w_down;
  ASSERT_EQ(stored.dtype, DType::kInt4);
  ASSERT_EQ(stored.group, 128);
  std::vector<float> x(static_cast<size_t>(src.elements()));
  for (int64_t r = 0; r < src.rows(); ++r) RowToFloat(src.dtype, src.row(r), x.data() + r * src.cols(), src.cols());
  std::vector<std::byte> expected(stored.bytes);
  QuantizeMatrix(WeightFormat{DType::kInt4, 128}, x.data(), src.rows(), src.cols(), expected.data());
  EXPECT_EQ(std::memcmp(expected.data(), stored.data, stored.bytes), 0);
}

TEST(QuantizeModelTest, KQuantsRunAHuggingFaceModel) {
  const Model hf = LoadModel(SharedPath("models/docs-5M"));
  const std::string text = ReadFileToString(SharedPath("data/docs/docs-heldout.norm.txt")).substr(0, 60000);
  PerplexityOptions options;
  options.ctx = 256;
  options.max_chunks = 8;
  options.progress = false;
  const double f32 = EvaluatePerplexity(hf, TokenizeForPerplexity(hf, text), options).ppl;
  // Measured ratios over F32 (8 chunks of 256): q6_k 1.001, q5_k 0.997, q4_k 1.005, iq4_xs 1.019,
  // q3_k 1.035, q2_k 1.172, int4-g128 1.013.
  const std::map<std::string, double> bounds = {{"q6_k", 1.01}, {"q5_k", 1.02}, {"q4_k", 1.03}, {"iq4_xs", 1.04},
                                                {"q3_k", 1.07}, {"q2_k", 1.3},  {"int4-g128", 1.03}};
  for (const auto& [format, bound] : bounds) {
    const std::string path = TempPath("docs-" + format + ".gguf");
    const QuantizeReport report = Quantize(hf, format, path);
    for (const TensorQuantReport& t : report.tensors) {
      if (!t.name.ends_with("_norm.weight")) {
        EXPECT_EQ(t.format, format) << t.name;  // every dim fits 256-blocks
      }
    }
    const Model q = LoadModel(path);
    const double ppl = EvaluatePerplexity(q, TokenizeForPerplexity(q, text), options).ppl;
    RecordProperty("ppl_ratio_" + format, std::to_string(ppl / f32));
    EXPECT_LT(ppl / f32, bound) << format << " " << ppl << " vs " << f32;
    EXPECT_GT(ppl / f32, 0.99) << format;
    std::filesystem::remove(path);
  }
}

TEST(QuantizeModelTest, PresetPolicyMixesTypes) {
  const Model hf = LoadModel(SharedPath("models/docs-5M"));
  QuantizeOptions options;
  options.policy = *PresetPolicy("q4_k_m", hf.config.n_layers, hf.weights.output.empty());
  const QuantizeReport report = QuantizeModel(hf, TempPath("docs-q4_k_m.gguf"), options);
  std::map<std::string, int> counts;
  for (const TensorQuantReport& t : report.tensors) ++counts[t.format];
  EXPECT_GT(counts["q6_k"], 0);
  EXPECT_GT(counts["q4_k"], counts["q6_k"]);
  const Model q = LoadModel(TempPath("docs-q4_k_m.gguf"));
  EXPECT_EQ(q.weights.head().dtype, DType::kQ6_K);
}

TEST(QuantizeModelTest, StrictRefusesAFormatThatCannotHoldARow) {
  QuantizeOptions options;
  options.type = ParseWeightFormat("q4_k");
  options.strict = true;
  try {
    QuantizeModel(Stories(), TempPath("strict.gguf"), options);
    FAIL() << "q4_k accepted 64-wide rows under --strict";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token_embd.weight"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(TempPath("strict.gguf")));
}

TEST(QuantizeModelTest, RefusesToOverwriteItsInput) {
  const std::string path = TempPath("stories-input.gguf");
  Quantize(Stories(), "q8_0", path);
  const Model q = LoadModel(path);
  QuantizeOptions options;
  options.type = ParseWeightFormat("q4_0");
  EXPECT_THROW(QuantizeModel(q, path, options), Error);
  EXPECT_NO_THROW(LoadModel(path));  // untouched
}

// InterleaveForDecode (model.h) changes where the matrix kernels read, never what a model computes: on
// a tied Q4_0 stories260K (its head is token_embd) and on llama.cpp's own Q4_0, Q8_0 and Q4_K files, every
// matrix of that type with a multiple of 8 rows is repacked, and the logits of a batch and of single tokens stay those of the
// plain model. The interleaved kernel sums 8 rows per register where the plain one sums one row per
// call: the products agree to float rounding (tests/kernels/ggml_dot_test.cc), and on a real model so do
// the logits (stories260K, measured: rms 6e-8 of the logits' rms, bound `rms_bound` 1e-5). On the
// llama.cpp file's heavy-tailed random weights a 1e-7 difference can flip an 8-bit activation rounding,
// which grows over two layers (as between GEMV and GEMM in RunsCloseToItsDequantizedWeights): measured
// rms 1.1e-4 for Q4_0 (Q8_0 8.7e-8, Q4_K 3.4e-7), bound 1e-3. A wiring error (a wrong row, lane or tensor) is O(1).
void ExpectSameLogitsInterleaved(const std::string& path, DType dtype, int expected_repacked, double rms_bound) {
  const Model plain = LoadModel(path);
  Model interleaved = LoadModel(path);
  const QuantKernel* kernel = FindQuantKernel(dtype);
  ASSERT_NE(kernel, nullptr);
  const int repacked = InterleaveForDecode(interleaved);
  if (kernel->interleaved == nullptr) {
    EXPECT_EQ(repacked, 0);
    GTEST_SKIP() << "this CPU's " << DTypeName(dtype) << " kernel decodes from the stored rows (no interleaved layout)";
  }
  EXPECT_EQ(repacked, expected_repacked) << path;
  EXPECT_NE(interleaved.weights.head().interleaved, nullptr) << "the output head was not repacked";
  // All copies in one huge-page buffer (each its own would leave every copy's last 2 MiB on small pages).
  ASSERT_EQ(interleaved.decode_copies.size(), 1u);
  const std::byte* begin = interleaved.decode_copies[0].data();
  const std::byte* end = begin + interleaved.decode_copies[0].size();
  EXPECT_TRUE(interleaved.weights.head().interleaved >= begin && interleaved.weights.head().interleaved < end);
  EXPECT_EQ(InterleaveForDecode(interleaved), 0) << "a second call repacked again";
  EXPECT_EQ(interleaved.decode_copies.size(), 1u);
  const std::vector<int32_t> tokens = {1, 10, 100, 200, 300, 400, 500, 7, 9, 11};
  const int64_t vocab = plain.config.vocab_size;
  for (const bool batch : {true, false}) {
    InferenceState a = MakeInferenceState(plain.config, 64, 16);
    InferenceState b = MakeInferenceState(interleaved.config, 64, 16);
    double diff2 = 0.0, norm2 = 0.0;
    for (size_t t = 0; t < tokens.size(); t += batch ? tokens.size() : 1) {
      const size_t n = batch ? tokens.size() : 1;
      const std::span<const int32_t> span(tokens.data() + t, n);
      const float* la = Forward(plain, a, span, static_cast<int64_t>(t), batch);
      const std::vector<float> want(la, la + (batch ? n : 1) * static_cast<size_t>(vocab));
      const float* lb = Forward(interleaved, b, span, static_cast<int64_t>(t), batch);
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_TRUE(std::isfinite(lb[i]));
        diff2 += (static_cast<double>(lb[i]) - want[i]) * (static_cast<double>(lb[i]) - want[i]);
        norm2 += static_cast<double>(want[i]) * want[i];
      }
    }
    const double rms = std::sqrt(diff2 / norm2);
    char value[32];
    std::snprintf(value, sizeof value, "%.3g", rms);
    ::testing::Test::RecordProperty(batch ? "batch_rms_relative_difference" : "token_rms_relative_difference", value);
    EXPECT_LE(rms, rms_bound) << (batch ? "batch" : "token by token") << ", " << path;
  }
}

TEST(InterleaveForDecode, TiedStoriesQ4_0GivesTheSameLogits) {
  const std::string path = TempPath("stories-q4_0-interleave.gguf");
  Quantize(Stories(), "q4_0", path);
  // 5 layers x q, k, v, o (gate and up have 172 rows; down's 172 columns make it Q8_0) + the tied head.
  ExpectSameLogitsInterleaved(path, DType::kQ4_0, 5 * 4 + 1, 1e-5);
}

// DecodeReadSpans (what `mixq bench --token-bound` reads beside each token): the stored rows before
// InterleaveForDecode, the copies after it, the same bytes in all either way.
TEST(InterleaveForDecode, DecodeReadSpansFollowTheCopies) {
  const std::string path = TempPath("stories-q4_0-spans.gguf");
  Quantize(Stories(), "q4_0", path);
  Model model = LoadModel(path);
  const auto total = [](const std::vector<std::span<const std::byte>>& spans) {
    size_t bytes = 0;
    for (const auto& span : spans) bytes += span.size();
    return bytes;
  };
  const std::vector<std::span<const std::byte>> stored = DecodeReadSpans(model);
  // 5 layers x 7 matrices + the tied head (token_embd).
  ASSERT_EQ(stored.size(), 5u * 7 + 1);
  EXPECT_EQ(stored.back().data(), model.weights.token_embd.data);
  EXPECT_EQ(stored.back().size(), model.weights.token_embd.bytes);
  ASSERT_EQ(InterleaveForDecode(model) > 0, FindQuantKernel(DType::kQ4_0)->interleaved != nullptr);
  if (model.decode_copies.empty()) GTEST_SKIP() << "this CPU's Q4_0 kernel has no interleaved layout";
  const std::vector<std::span<const std::byte>> copied = DecodeReadSpans(model);
  ASSERT_EQ(copied.size(), stored.size());
  EXPECT_EQ(total(copied), total(stored));
  const std::byte* begin = model.decode_copies[0].data();
  const std::byte* end = begin + model.decode_copies[0].size();
  int in_copies = 0;
  for (const auto& span : copied) {
    if (span.data() >= begin && span.data() + span.size() <= end) ++in_copies;
  }
  EXPECT_EQ(in_copies, 5 * 4 + 1);  // the repacked ones (TiedStoriesQ4_0GivesTheSameLogits)
  EXPECT_EQ(copied.back().data(), model.weights.token_embd.interleaved);
}

TEST(InterleaveForDecode, LlamaCppQ4_0FileGivesTheSameLogits) {
  // 2 layers x 7 matrices + output.weight (token_embd is not a matrix of the forward pass here).
  ExpectSameLogitsInterleaved(SharedPath("data/ggml-reference/synth-Q4_0.gguf"), DType::kQ4_0, 2 * 7 + 1, 1e-3);
}

TEST(InterleaveForDecode, LlamaCppQ8_0FileGivesTheSameLogits) {
  ExpectSameLogitsInterleaved(SharedPath("data/ggml-reference/synth-Q8_0.gguf"), DType::kQ8_0, 2 * 7 + 1, 1e-3);
}

TEST(InterleaveForDecode, LlamaCppQ4_KFileGivesTheSameLogits) {
  ExpectSameLogitsInterleaved(SharedPath("data/ggml-reference/synth-Q4_K_M.gguf"), DType::kQ4_K, 2 * 7 + 1, 1e-3);
}

// mixq's own 2- and 3-bit formats (crumb runs, int_dot.h) on a real model: docs-5M's 4 layers x 7
// matrices + output.weight. Symmetric codes sum to the same floats up to rounding (measured rms 2.5e-7,
// bound 1e-5). Asymmetric ones subtract the zero-point term s z G from s sum(c q), which nearly cancel
// when a group's activations share a sign (measured on docs-5M's INT4 matrices with inputs of mean 3: both
// layouts 2e-6 to 5e-6 from the double reference, 1.5e-5 apart); that flips an 8-bit activation rounding
// and the flip grows over 4 layers: measured rms 2.9e-3 for int3-g128 (int4-g128, interleaved since
// session 10, 5.9e-3; int2-g64's small zero-points 2.6e-7). Bound 2e-2; dropping one code vector of 8 per
// block in the INT2/3 kernel gives rms 0.95 to 4.4.
TEST(InterleaveForDecode, Docs5MInt3AndInt2GiveTheSameLogits) {
  const Model hf = LoadModel(SharedPath("models/docs-5M"));
  for (const auto& [format, dtype, bound] : {std::tuple{"int3-g128", DType::kInt3, 2e-2},
                                              std::tuple{"int2-g64", DType::kInt2, 2e-2},
                                              std::tuple{"int3-g64-sym", DType::kInt3Sym, 1e-5}}) {
    SCOPED_TRACE(format);
    const std::string path = TempPath(std::string("docs-") + format + "-interleave.gguf");
    Quantize(hf, format, path);
    ExpectSameLogitsInterleaved(path, dtype, 4 * 7 + 1, bound);
  }
}

}  // namespace
}  // namespace mixq
