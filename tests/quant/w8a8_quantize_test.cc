// W8A8 end to end on stories260K: quantize (w8a8 with calibrated static scales, w8a8-token, spike-aware)
// -> write -> load -> run, perplexity on held-out text against FP32 within stated margins, the static
// scales are what the statistics say, and the refusals (no --calib, layer-wise methods) name the option.
#include <gtest/gtest.h>

#include <string>

#include "mixq/base/error.h"
#include "mixq/eval/perplexity.h"
#include "mixq/quant/spike_policy.h"
#include "w8a8_fixture.h"

namespace mixq {
namespace {

using testing::QuantizeStoriesW8A8;
using testing::Stories;
using testing::StoriesCalibrationStats;
using testing::StoriesHeldOutText;
using testing::TypeOptions;

double HeldOutPpl(const Model& model) {
  PerplexityOptions options;
  options.ctx = 128;
  options.progress = false;
  return EvaluatePerplexity(model, TokenizeForPerplexity(model, StoriesHeldOutText()), options).ppl;
}

double F32Ppl() {
  static const double ppl = HeldOutPpl(Stories());
  return ppl;
}

// PPL / FP32 PPL bounds on the held-out half (ctx 128), set at about twice the measured loss (measured
// when written: w8a8-token x1.0027, w8a8 x1.0130, spike-aware (K = 2) x1.0092; weight-only int8-pc-sym x1.0022).
constexpr double kW8A8TokenPplRatio = 1.006;
constexpr double kW8A8PplRatio = 1.03;

TEST(W8A8Quantize, TokenModeRunsNearFp32) {
  QuantizeReport report;
  const Model q = LoadModel(QuantizeStoriesW8A8(TypeOptions("w8a8-token"), "stories-w8a8-token.gguf", &report));
  for (const TensorQuantReport& t : report.tensors) {
    if (t.name.ends_with("_norm.weight")) continue;
    if (t.name == "token_embd.weight") {
      EXPECT_EQ(t.format, "int8-pc-sym");
      EXPECT_EQ(t.activation, "");
    } else {
      EXPECT_EQ(t.format, "w8a8-token") << t.name;
      EXPECT_EQ(t.activation, "int8-token") << t.name;
    }
  }
  EXPECT_EQ(q.weights.layers[0].wq.activation, ActivationQuant::kInt8Token);
  const double ppl = HeldOutPpl(q);
  RecordProperty("ppl_ratio", std::to_string(ppl / F32Ppl()));
  EXPECT_LT(ppl, F32Ppl() * kW8A8TokenPplRatio) << "fp32 " << F32Ppl();
  // Activation quantization is really applied: the logits differ from the same weights run weight-only.
  EXPECT_NE(ppl, F32Ppl());
}

TEST(W8A8Quantize, StaticPerTensorRunsWithCalibratedScales) {
  QuantizeReport report;
  const Model q = LoadModel(QuantizeStoriesW8A8(TypeOptions("w8a8"), "stories-w8a8.gguf", &report));
  for (const TensorQuantReport& t : report.tensors) {
    if (t.name.ends_with("_norm.weight") || t.name == "token_embd.weight") continue;
    EXPECT_EQ(t.format, "w8a8") << t.name;
    EXPECT_EQ(t.activation, "int8-tensor") << t.name;
    EXPECT_EQ(t.activation_scale, StoriesCalibrationStats().Find(t.name)->MaxInput() / 127.0f) << t.name;
  }
  // Per-tensor weights: one scale for every row.
  const TensorView& down = q.weights.layers[2].w_down;
  for (int64_t r = 1; r < down.rows(); ++r) ASSERT_EQ(std::memcmp(down.row(r), down.row(0), 2), 0) << r;
  const double ppl = HeldOutPpl(q);
  RecordProperty("ppl_ratio", std::to_string(ppl / F32Ppl()));
  EXPECT_LT(ppl, F32Ppl() * kW8A8PplRatio) << "fp32 " << F32Ppl();
}

TEST(W8A8Quantize, SpikeAwareKeepsSpikesAndRuns) {
  // stories260K has no spikes at the default threshold (its largest input ratio is ~3.5, the tied head's,
  // docs/w8a8.md); K = 2 keeps blk.4.ffn_down (2.0x) so the mixed path is exercised.
  SpikePolicyOptions spike;
  spike.threshold = 2.0;
  const SpikePolicy p = MakeSpikePolicy(StoriesCalibrationStats(), spike);
  ASSERT_FALSE(p.spikes.empty());
  QuantizeOptions options = TypeOptions("w8a8");
  options.type.reset();
  options.policy = p.policy;
  QuantizeReport report;
  const Model q = LoadModel(QuantizeStoriesW8A8(options, "stories-spike.gguf", &report));
  int64_t kept = 0;
  for (const TensorQuantReport& t : report.tensors) {
    if (t.name.ends_with("_norm.weight")) continue;
    bool spike_tensor = false;
    for (const SpikeRank& s : p.spikes) spike_tensor |= s.name == t.name;
    if (spike_tensor) {
      ++kept;
      EXPECT_EQ(t.format, "f16") << t.name;
      EXPECT_EQ(t.activation, "") << t.name;
    } else if (t.name != "token_embd.weight") {
      EXPECT_EQ(t.format, "w8a8") << t.name;
    }
  }
  EXPECT_EQ(kept, static_cast<int64_t>(p.spikes.size()));
  const double ppl = HeldOutPpl(q);
  RecordProperty("ppl_ratio", std::to_string(ppl / F32Ppl()));
  EXPECT_LT(ppl, F32Ppl() * kW8A8PplRatio);
}

TEST(W8A8Quantize, StaticScalesNeedCalibration) {
  QuantizeOptions options = TypeOptions("w8a8");
  try {
    QuantizeModel(Stories(), testing::TempPath("never.gguf"), options);
    ADD_FAILURE() << "quantized without --calib";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--calib"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
  }
  // w8a8-token needs none.
  EXPECT_NO_THROW(QuantizeModel(Stories(), testing::TempPath("token-no-calib.gguf"), TypeOptions("w8a8-token")));
}

TEST(W8A8Quantize, LayerwiseMethodsAreRefused) {
  QuantizeOptions options = TypeOptions("w8a8-token");
  options.method = QuantMethod::kGptq;
  options.windows = {{1, 2, 3, 4}};
  EXPECT_THROW(QuantizeStoriesW8A8(options, "never-gptq.gguf"), Error);
}

}  // namespace
}  // namespace mixq
