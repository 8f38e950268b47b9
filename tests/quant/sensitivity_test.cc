// Per-tensor sensitivity on stories260K and the allocation it drives: KL sensitivities are positive and
// fall with bits, output-mode errors too, an allocation between all-INT3 and all-INT4 beats the uniform
// models on held-out text, and its policy makes QuantizeModel write exactly the bytes it planned.
#include "mixq/quant/sensitivity.h"

#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/quant/budget.h"
#include "mixq/quant/quantize_model.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories260KPath;

const Model& Stories() {
  static const Model* model = new Model(LoadModel(Stories260KPath()));
  return *model;
}

const std::vector<int32_t>& StoriesTokens() {
  static const std::vector<int32_t> tokens = Stories().tokenizer.Encode(
      ReadFileToString(SharedPath("data/tinystories/TinyStories-valid.head30k.txt")), true);
  return tokens;
}

constexpr int64_t kWindowTokens = 128;
// Calibration: windows 0..3 (512 positions); held out: windows 8..15, text the sensitivities never saw.
std::vector<std::vector<int32_t>> CalibrationWindows() {
  return TokenWindows(StoriesTokens(), kWindowTokens, 0, 4, Stories().tokenizer.bos());
}
std::vector<std::vector<int32_t>> HeldOutWindows() {
  return TokenWindows(StoriesTokens(), kWindowTokens, 8, 8, Stories().tokenizer.bos());
}

std::vector<WeightFormat> IntCandidates() {
  std::vector<WeightFormat> formats;
  for (const char* name : {"int2-g32", "int3-g32", "int4-g32", "int8-g32"}) formats.push_back(*ParseWeightFormat(name));
  return formats;
}

const SensitivityTable& KlTable() {
  static const SensitivityTable* table = [] {
    SensitivityOptions options;
    options.mode = SensitivityMode::kKl;
    options.candidates = IntCandidates();
    options.windows = CalibrationWindows();
    options.progress = false;
    return new SensitivityTable(MeasureSensitivity(Stories(), options));
  }();
  return *table;
}

// Bytes of the model file with every allocated tensor in `format`.
int64_t UniformBytes(const SensitivityTable& t, const WeightFormat& format) {
  int64_t bytes = t.fixed_bytes;
  for (const TensorCandidates& tc : t.tensors) bytes += static_cast<int64_t>(*TensorBytes(format.dtype, tc.shape, format.group));
  return bytes;
}

double HeldOutKl(const std::map<std::string, WeightFormat>& formats, int64_t* bytes = nullptr) {
  static KlEvaluator* evaluator = new KlEvaluator(Stories().config, Stories().weights, HeldOutWindows());
  const QuantizedWeights q = QuantizeWeights(Stories(), formats);
  if (bytes) *bytes = q.bytes;
  return evaluator->MeanKl(q.weights);
}

std::map<std::string, WeightFormat> Uniform(const SensitivityTable& t, const WeightFormat& format) {
  std::map<std::string, WeightFormat> formats;
  for (const TensorCandidates& tc : t.tensors) formats[tc.name] = format;
  return formats;
}

TEST(SensitivityTest, KlHelpersAreExactOnIdenticalRowsAndMatchTheClosedForm) {
  const std::vector<float> a = {1.0f, 2.0f, 3.0f};
  const std::vector<float> b = {3.0f, 2.0f, 1.0f};
  EXPECT_EQ(KlFromLogits(a, LogSumExp(a), a), 0.0);
  const double za = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  double expected = 0.0;
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(static_cast<double>(a[i])) / za;
    const double q = std::exp(static_cast<double>(b[i])) / za;  // same normaliser: b permutes a
    expected += p * std::log(p / q);
  }
  EXPECT_NEAR(KlFromLogits(a, LogSumExp(a), b), expected, 1e-12);
  EXPECT_NEAR(LogSumExp(a), std::log(za), 1e-12);
  EXPECT_THROW(LogSumExp(std::vector<float>{1.0f, NAN}), Error);

  // The base model against itself: exactly zero, through the real forward pass.
  KlEvaluator evaluator(Stories().config, Stories().weights, TokenWindows(StoriesTokens(), 32, 0, 2, 1));
  EXPECT_EQ(evaluator.positions(), 64);
  EXPECT_EQ(evaluator.MeanKl(Stories().weights), 0.0);
}

TEST(SensitivityTest, TokenWindowsCutConsecutiveSlicesAndRefuseShortText) {
  const std::vector<int32_t> tokens = {1, 10, 11, 12, 13, 14, 15, 16, 17};
  const auto w = TokenWindows(tokens, 3, 1, 2, 1);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0], (std::vector<int32_t>{1, 13, 14}));  // first token replaced by BOS
  EXPECT_EQ(w[1], (std::vector<int32_t>{1, 16, 17}));
  EXPECT_EQ(TokenWindows(tokens, 3, 0, 1, -1)[0], (std::vector<int32_t>{1, 10, 11}));
  EXPECT_THROW(TokenWindows(tokens, 3, 2, 2, 1), Error);
  EXPECT_THROW(TokenWindows(tokens, 1, 0, 1, 1), Error);
}

TEST(SensitivityTest, KlSensitivitiesArePositiveAndFallWithBits) {
  const SensitivityTable& t = KlTable();
  const Model& m = Stories();
  // 5 layers x 7 linear layers + the tied token embedding (the head too).
  ASSERT_EQ(t.tensors.size(), 36u);
  EXPECT_EQ(t.total_parameters, ComputeModelSize(m).parameters);
  EXPECT_EQ(t.fixed_bytes, (2 * m.config.n_layers + 1) * m.config.dim * 4);  // the F32 norms
  EXPECT_EQ(t.kl_positions, 4 * kWindowTokens);
  double worst_high_end = 0.0;
  for (const TensorCandidates& tc : t.tensors) {
    ASSERT_EQ(tc.candidates.size(), 4u) << tc.name;
    for (const CandidateCost& c : tc.candidates) {
      EXPECT_GT(c.sensitivity, 0.0) << tc.name << " " << WeightFormatName(c.format);
      EXPECT_EQ(c.bytes, *TensorBytes(c.format.dtype, tc.shape, c.format.group));
    }
    // 2 > 3 > 4 bits strictly; 8 bits below 4 bits' (measured ratios int8/int4: at most 0.03).
    EXPECT_GT(tc.candidates[0].sensitivity, tc.candidates[1].sensitivity) << tc.name;
    EXPECT_GT(tc.candidates[1].sensitivity, tc.candidates[2].sensitivity) << tc.name;
    EXPECT_LT(tc.candidates[3].sensitivity, 0.2 * tc.candidates[2].sensitivity) << tc.name;
    worst_high_end = std::max(worst_high_end, tc.candidates[3].sensitivity / tc.candidates[2].sensitivity);
    std::printf("[ kl sens  ] %-26s int2 %.3e int3 %.3e int4 %.3e int8 %.3e\n", tc.name.c_str(),
                tc.candidates[0].sensitivity, tc.candidates[1].sensitivity, tc.candidates[2].sensitivity,
                tc.candidates[3].sensitivity);
  }
  std::printf("[ kl sens  ] worst int8/int4 ratio %.4f\n", worst_high_end);
}

TEST(SensitivityTest, OutputModeErrorsFallWithBitsAndImportanceIsValidated) {
  SensitivityOptions options;
  options.mode = SensitivityMode::kOutput;
  options.candidates = IntCandidates();
  options.candidates.push_back(*ParseWeightFormat("q4_0"));  // fits the 64-wide rows only
  options.progress = false;
  const SensitivityTable t = MeasureSensitivity(Stories(), options);
  ASSERT_EQ(t.tensors.size(), 36u);
  for (const TensorCandidates& tc : t.tensors) {
    const bool wide = tc.shape.back() == 172;
    ASSERT_EQ(tc.candidates.size(), wide ? 4u : 5u) << tc.name;
    for (size_t i = 0; i + 1 < 4; ++i) {
      EXPECT_GT(tc.candidates[i].sensitivity, tc.candidates[i + 1].sensitivity) << tc.name;
    }
    EXPECT_GT(tc.candidates[3].sensitivity, 0.0);
    EXPECT_LT(tc.candidates[0].sensitivity, 1.0) << tc.name;  // int2 still beats zeroing the tensor
  }

  // An importance vector changes the weighting (and the quantizer's search); wrong ones are refused.
  const std::string name = "blk.1.ffn_down.weight";
  std::vector<float> imp(172, 1.0f);
  for (size_t j = 0; j < imp.size(); j += 2) imp[j] = 10.0f;
  options.importance[name] = imp;
  const SensitivityTable weighted = MeasureSensitivity(Stories(), options);
  EXPECT_TRUE(weighted.importance_weighted);
  const auto find = [&](const SensitivityTable& s) {
    for (const TensorCandidates& tc : s.tensors) {
      if (tc.name == name) return tc.candidates[1].sensitivity;
    }
    return -1.0;
  };
  EXPECT_NE(find(weighted), find(t));
  EXPECT_GT(find(weighted), 0.0);

  options.importance[name] = std::vector<float>(64, 1.0f);
  EXPECT_THROW(MeasureSensitivity(Stories(), options), Error);
  options.importance[name] = imp;
  options.importance[name][3] = -1.0f;
  EXPECT_THROW(MeasureSensitivity(Stories(), options), Error);
  options.importance.clear();
  options.importance["blk.9.ffn_down.weight"] = imp;
  EXPECT_THROW(MeasureSensitivity(Stories(), options), Error);
  options.importance.clear();
  options.mode = SensitivityMode::kKl;  // without windows
  EXPECT_THROW(MeasureSensitivity(Stories(), options), Error);
  options.windows = {{1, 5, 600}};  // a token past the vocabulary
  EXPECT_THROW(MeasureSensitivity(Stories(), options), Error);
  options.candidates.clear();
  EXPECT_THROW(MeasureSensitivity(Stories(), options), Error);
}

TEST(SensitivityTest, NoCandidateFitsMeansTheFallbacksAreMeasured) {
  SensitivityOptions options;
  options.candidates = {*ParseWeightFormat("q4_k")};  // 256-blocks: no stories260K row holds one
  options.progress = false;
  const SensitivityTable t = MeasureSensitivity(Stories(), options);
  for (const TensorCandidates& tc : t.tensors) {
    ASSERT_EQ(tc.candidates.size(), 1u);
    EXPECT_EQ(tc.candidates[0].format, FallbackFormat(*ParseWeightFormat("q4_k"), tc.shape.back())) << tc.name;
    EXPECT_NE(tc.note.find("fallbacks"), std::string::npos);
  }
}

TEST(SensitivityTest, AllocationBetweenInt3AndInt4BeatsUniformModelsOnHeldOutText) {
  const SensitivityTable& t = KlTable();
  const WeightFormat int3 = *ParseWeightFormat("int3-g32");
  const WeightFormat int4 = *ParseWeightFormat("int4-g32");
  const int64_t bytes3 = UniformBytes(t, int3);
  const int64_t bytes4 = UniformBytes(t, int4);
  const double bpw3 = 8.0 * bytes3 / t.total_parameters;
  const double bpw4 = 8.0 * bytes4 / t.total_parameters;
  const double target = (bpw3 + bpw4) / 2;
  const Allocation a = AllocateBudget(t, target);
  EXPECT_LE(a.total_bytes, a.budget_bytes);
  EXPECT_GT(a.bits_per_weight, bpw3);

  std::map<std::string, WeightFormat> plan;
  std::map<std::string, int> counts;
  for (const TensorAllocation& ta : a.tensors) plan[ta.name] = ta.format, ++counts[WeightFormatName(ta.format)];
  int64_t planned_bytes = 0;
  const double kl_mix = HeldOutKl(plan, &planned_bytes);
  EXPECT_EQ(planned_bytes, a.total_bytes);
  const double kl3 = HeldOutKl(Uniform(t, int3));
  const double kl4 = HeldOutKl(Uniform(t, int4));

  // The uniform-ish model of equal or larger size: INT3 everywhere, then INT4 for tensors in file order
  // until its bytes reach the allocation's.
  std::map<std::string, WeightFormat> naive = Uniform(t, int3);
  int64_t naive_bytes = bytes3;
  for (const TensorCandidates& tc : t.tensors) {
    if (naive_bytes >= a.total_bytes) break;
    naive_bytes += static_cast<int64_t>(*TensorBytes(int4.dtype, tc.shape, int4.group) -
                                        *TensorBytes(int3.dtype, tc.shape, int3.group));
    naive[tc.name] = int4;
  }
  const double kl_naive = HeldOutKl(naive);

  std::printf("[ alloc    ] target %.3f bpw (int3 %.3f, int4 %.3f): reached %.3f bpw by %s; mix:", target, bpw3, bpw4,
              a.bits_per_weight, a.method.c_str());
  for (const auto& [name, n] : counts) std::printf(" %s x%d", name.c_str(), n);
  std::printf("\n[ alloc    ] held-out mean KL: allocation %.5f, all-int3 %.5f, int3+int4 in file order %.5f (%.3f bpw), "
              "all-int4 %.5f (%.3f bpw); calibration total %.5f\n",
              kl_mix, kl3, kl_naive, 8.0 * naive_bytes / t.total_parameters, kl4, bpw4, a.total_sensitivity);
  EXPECT_LT(kl_mix, kl3);
  EXPECT_LT(kl_mix, kl_naive);
}

TEST(SensitivityTest, PolicyThroughQuantizeModelWritesThePlannedBytes) {
  TargetBpwOptions options;
  options.target_bpw = 4.0;
  options.sensitivity.mode = SensitivityMode::kOutput;
  options.sensitivity.candidates = IntCandidates();
  options.sensitivity.progress = false;
  const TargetBpwResult r = AllocateTargetBpw(Stories(), options);
  EXPECT_LE(r.allocation.bits_per_weight, 4.0);
  EXPECT_GT(r.allocation.bits_per_weight, 3.8);
  // The policy is what the user may save and edit: read it back from text, as --policy would.
  QuantizeOptions q;
  q.policy = ParsePolicy(r.policy_text, "target.policy");
  q.strict = true;
  const std::string path = ::testing::TempDir() + "/target_bpw_stories.gguf";
  const QuantizeReport report = QuantizeModel(Stories(), path, q);
  EXPECT_EQ(report.output.bytes, r.allocation.total_bytes);
  EXPECT_EQ(report.output.parameters, r.allocation.total_parameters);
  std::map<std::string, std::string> written;
  for (const TensorQuantReport& tr : report.tensors) written[tr.name] = tr.format;
  for (const TensorAllocation& ta : r.allocation.tensors) EXPECT_EQ(written[ta.name], WeightFormatName(ta.format));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace mixq
