// AWQ on one block: folding scales keeps the FP32 function, the search includes plain RTN (alpha 0),
// AWQ's quantized block beats RTN's on real stories260K activations, and non-finite search points are
// skipped or reported by layer.
#include "mixq/quant/awq.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/base/timer.h"
#include "mixq/formats/float16.h"
#include "mixq/model/synth.h"
#include "mixq/quant/quantize_model.h"
#include "test_paths.h"

namespace mixq {
namespace {

using Windows = std::vector<std::vector<float>>;
using Formats = std::array<WeightFormat, kLinearKinds>;

constexpr int64_t kCtx = 64;  // tokens per calibration / evaluation window

const Model& Stories() {
  static const Model* model = new Model(LoadModel(testing::Stories260KPath()));
  return *model;
}

// TinyStories text in windows of kCtx tokens: the first `n_calib` windows calibrate, the next `n_eval`
// are held out for measuring.
struct TokenWindows {
  std::vector<std::vector<int32_t>> calib;
  std::vector<std::vector<int32_t>> eval;
};
const TokenWindows& StoriesWindows() {
  static const TokenWindows* windows = [] {
    const std::string text = ReadFileToString(testing::SharedPath("data/tinystories/TinyStories-valid.head30k.txt"));
    const std::vector<int32_t> tokens = Stories().tokenizer.Encode(text, true);
    auto* w = new TokenWindows;
    const size_t n_calib = 16;
    const size_t n_eval = 8;
    EXPECT_GE(tokens.size(), (n_calib + n_eval) * kCtx);
    for (size_t i = 0; i < n_calib + n_eval; ++i) {
      std::vector<int32_t> window(tokens.begin() + static_cast<long>(i * kCtx),
                                  tokens.begin() + static_cast<long>((i + 1) * kCtx));
      (i < n_calib ? w->calib : w->eval).push_back(std::move(window));
    }
    return w;
  }();
  return *windows;
}

// The residual stream entering block `layer` of the FP32 model for each window.
Windows BlockInputs(const Model& model, int64_t layer, const std::vector<std::vector<int32_t>>& token_windows) {
  size_t max_n = 1;
  for (const auto& w : token_windows) max_n = std::max(max_n, w.size());
  InferenceState state = MakeInferenceState(model.config, static_cast<int64_t>(max_n), static_cast<int64_t>(max_n));
  Windows out;
  for (const std::vector<int32_t>& tokens : token_windows) {
    const auto n = static_cast<int64_t>(tokens.size());
    EmbedTokens(model.config, model.weights, state, tokens);
    PrepareRope(model.config, state, 0, n);
    for (int64_t l = 0; l < layer; ++l) {
      ForwardLayer(model.config, model.weights.layers[static_cast<size_t>(l)], l, state, l, n, 0);
    }
    const float* x = state.x.as<float>();
    out.emplace_back(x, x + n * model.config.dim);
  }
  return out;
}

// Block `layer` (weights `lw`) run on each window; outputs concatenated.
std::vector<float> RunBlock(const LlamaConfig& config, const LayerWeights& lw, int64_t layer, const Windows& inputs) {
  LlamaConfig one = config;
  one.n_layers = 1;
  int64_t max_n = 0;
  for (const auto& w : inputs) max_n = std::max(max_n, static_cast<int64_t>(w.size()) / config.dim);
  InferenceState state = MakeInferenceState(one, max_n, max_n);
  std::vector<float> out;
  for (const auto& w : inputs) {
    const int64_t n = static_cast<int64_t>(w.size()) / config.dim;
    std::copy(w.begin(), w.end(), state.x.as<float>());
    PrepareRope(one, state, 0, n);
    ForwardLayer(one, lw, layer, state, 0, n, 0);
    out.insert(out.end(), state.x.as<float>(), state.x.as<float>() + n * config.dim);
  }
  return out;
}

LayerFloat Copy(const LayerFloat& lf) { return CopyLayerToFloat(lf.views()); }

// The block as the quantizer would leave it, read back to FP32: each non-float linear quantized with RTN.
LayerFloat QuantDequant(const LayerFloat& lf, const Formats& formats) {
  LayerFloat q = Copy(lf);
  for (int k = 0; k < kLinearKinds; ++k) {
    Tensor& w = q.linear(static_cast<LinearKind>(k));
    const std::vector<float> d = FakeQuantize(formats[k], w.as<float>(), w.shape[0], w.shape[1]);
    std::copy(d.begin(), d.end(), w.as<float>());
  }
  return q;
}

double SquaredDistance(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return s;
}
double SquaredNorm(const std::vector<float>& a) { return SquaredDistance(a, std::vector<float>(a.size(), 0.0f)); }

bool BitEqual(const Tensor& a, const Tensor& b) {
  return a.storage.size() == b.storage.size() && std::memcmp(a.storage.data(), b.storage.data(), a.storage.size()) == 0;
}
bool BitEqual(const LayerFloat& a, const LayerFloat& b) {
  if (!BitEqual(a.attn_norm, b.attn_norm) || !BitEqual(a.ffn_norm, b.ffn_norm)) return false;
  for (int k = 0; k < kLinearKinds; ++k) {
    if (!BitEqual(a.linear(static_cast<LinearKind>(k)), b.linear(static_cast<LinearKind>(k)))) return false;
  }
  return true;
}

Formats AllFormats(const LlamaConfig& config, const std::string& name) {
  const std::optional<WeightFormat> f = ParseWeightFormat(name);
  EXPECT_TRUE(f.has_value()) << name;
  Formats formats;
  for (int k = 0; k < kLinearKinds; ++k) {
    const int64_t cols = static_cast<LinearKind>(k) == LinearKind::kDown ? config.hidden_dim
                         : static_cast<LinearKind>(k) == LinearKind::kO ? config.q_dim()
                                                                         : config.dim;
    formats[k] = FallbackFormat(*f, cols);  // what the driver does: q4_0 cannot hold ffn_down's 172
  }
  return formats;
}

// Random positive scales, log-uniform in [1/4, 4], or powers of two in that range.
std::vector<float> RandomScales(int64_t n, std::mt19937& rng, bool powers_of_two) {
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> s(static_cast<size_t>(n));
  for (float& v : s) v = powers_of_two ? std::exp2(std::round(u(rng))) : std::exp2(u(rng));
  return s;
}

// Folds random scales into every foldable group of `lf`.
void FoldRandom(LayerFloat& lf, std::mt19937& rng, bool powers_of_two) {
  for (int g = 0; g < kAwqGroups; ++g) {
    const auto group = static_cast<AwqGroup>(g);
    if (group == AwqGroup::kAttnOutput && lf.wv.shape[0] != lf.wo.shape[1]) continue;
    const int64_t d = lf.linear(AwqGroupLinears(group).front()).shape[1];
    AwqFoldScales(lf, group, RandomScales(d, rng, powers_of_two));
  }
}

// A small synthetic model without grouped-query attention, so the attn_v -> attn_output group exists.
const Model& SynthMha() {
  static const Model* model = [] {
    SynthPreset preset{"awq-mha-test", FindSynthPreset("llama2-7b").config};
    LlamaConfig& c = preset.config;
    c.dim = 64;
    c.hidden_dim = 160;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.head_dim = 16;
    c.vocab_size = 512;
    c.context_length = 256;
    return new Model(MakeSyntheticModel(preset, 2, DType::kF32, 7));
  }();
  return *model;
}

std::vector<std::vector<int32_t>> RandomTokens(int64_t vocab, int n_windows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(vocab - 1));
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n_windows));
  for (auto& w : out) {
    for (int64_t i = 0; i < n; ++i) w.push_back(u(rng));
  }
  return out;
}

TEST(AwqFoldTest, FoldingKeepsEveryStoriesBlock) {
  const Model& model = Stories();
  std::mt19937 rng(1);
  double worst = 0.0;
  for (int64_t l = 0; l < model.config.n_layers; ++l) {
    const Windows in = BlockInputs(model, l, StoriesWindows().eval);
    LayerFloat lf = CopyLayerToFloat(model.weights.layers[static_cast<size_t>(l)]);
    const std::vector<float> before = RunBlock(model.config, lf.views(), l, in);
    FoldRandom(lf, rng, false);
    const std::vector<float> after = RunBlock(model.config, lf.views(), l, in);
    const double rel = std::sqrt(SquaredDistance(before, after) / SquaredNorm(before));
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 1e-5) << "layer " << l;
  }
  std::printf("stories260K blocks, scales in [1/4, 4]: worst relative change of the block output %.3g\n", worst);
}

TEST(AwqFoldTest, AttnOutputGroupFoldsWithoutGqaAndRefusesWithIt) {
  const Model& model = SynthMha();
  const Windows in = BlockInputs(model, 1, RandomTokens(model.config.vocab_size, 2, 48, 3));
  LayerFloat lf = CopyLayerToFloat(model.weights.layers[1]);
  const std::vector<float> before = RunBlock(model.config, lf.views(), 1, in);
  std::mt19937 rng(2);
  AwqFoldScales(lf, AwqGroup::kAttnOutput, RandomScales(model.config.q_dim(), rng, false));
  const std::vector<float> after = RunBlock(model.config, lf.views(), 1, in);
  const double rel = std::sqrt(SquaredDistance(before, after) / SquaredNorm(before));
  std::printf("synthetic MHA block, attn_v -> attn_output fold: relative change %.3g\n", rel);
  EXPECT_LT(rel, 1e-5);

  // stories260K has 4 KV heads for 8 query heads: attn_v's 32 outputs are not attn_output's 64 inputs.
  LayerFloat gqa = CopyLayerToFloat(Stories().weights.layers[0]);
  EXPECT_THROW(AwqFoldScales(gqa, AwqGroup::kAttnOutput, std::vector<float>(64, 1.0f)), Error);
}

TEST(AwqFoldTest, BadScalesAreRefusedByName) {
  LayerFloat lf = CopyLayerToFloat(Stories().weights.layers[0]);
  try {
    AwqFoldScales(lf, AwqGroup::kFfnInput, std::vector<float>(63, 1.0f));
    FAIL() << "expected mixq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 64 scales, got 63"), std::string::npos) << e.what();
  }
  std::vector<float> s(172, 1.0f);
  s[5] = 0.0f;
  EXPECT_THROW(AwqFoldScales(lf, AwqGroup::kFfnDown, s), Error);
  s[5] = std::nanf("");
  EXPECT_THROW(AwqFoldScales(lf, AwqGroup::kFfnDown, s), Error);
}

// The whole model with every block folded: logits bit-for-bit equal with power-of-two scales (every
// multiply and divide by 2^k is exact, and x/2^k * w*2^k is the same product), and within float rounding
// for arbitrary scales.
TEST(AwqFoldTest, FoldingEveryLayerKeepsTheModelsLogits) {
  const Model& model = Stories();
  const std::vector<int32_t>& tokens = StoriesWindows().eval[0];
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t vocab = model.config.vocab_size;
  InferenceState state = MakeInferenceState(model.config, n, n);
  const float* p = Forward(model, state, tokens, 0, true);
  const std::vector<float> reference(p, p + n * vocab);

  for (bool powers_of_two : {true, false}) {
    std::mt19937 rng(powers_of_two ? 11 : 12);
    std::vector<LayerFloat> layers;
    LlamaWeights weights = model.weights;
    for (int64_t l = 0; l < model.config.n_layers; ++l) {
      layers.push_back(CopyLayerToFloat(model.weights.layers[static_cast<size_t>(l)]));
      FoldRandom(layers.back(), rng, powers_of_two);
    }
    for (size_t l = 0; l < layers.size(); ++l) weights.layers[l] = layers[l].views();
    InferenceState folded_state = MakeInferenceState(model.config, n, n);
    const float* q = Forward(model.config, weights, folded_state, tokens, 0, true);
    double max_diff = 0.0, max_abs = 0.0;
    for (int64_t i = 0; i < n * vocab; ++i) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(q[i]) - reference[static_cast<size_t>(i)]));
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(reference[static_cast<size_t>(i)])));
    }
    std::printf("all %lld layers folded (%s scales): max |logit change| %.3g (max |logit| %.3g)\n",
                static_cast<long long>(model.config.n_layers), powers_of_two ? "power-of-two" : "arbitrary",
                max_diff, max_abs);
    if (powers_of_two) {
      EXPECT_EQ(max_diff, 0.0);
    } else {
      EXPECT_LT(max_diff / max_abs, 2e-6);  // measured 7.7e-7: float rounding of w / s and w * s
    }
  }
}

// n_grid = 1 searches alpha = 0 only: no scaling, so the block is bit-for-bit the input and quantizes
// to exactly RTN's weights; the reported error is the output error of the search's fake quantizer (the
// format's own, or AutoAWQ's min-max), measured independently here.
class AwqAlphaZero : public ::testing::TestWithParam<AwqQuantizer> {};

TEST_P(AwqAlphaZero, IsExactlyRtn) {
  const Model& model = Stories();
  const int64_t layer = 2;
  const Windows calib = BlockInputs(model, layer, StoriesWindows().calib);
  const Formats formats = AllFormats(model.config, "int4-g32");
  const LayerFloat original = CopyLayerToFloat(model.weights.layers[layer]);
  LayerFloat lf = Copy(original);
  AwqOptions options;
  options.n_grid = 1;
  options.clip = false;
  options.max_tokens = 300;
  options.quantizer = GetParam();
  const AwqLayerResult r = AwqLayer(model.config, lf, layer, calib, formats, options);
  EXPECT_TRUE(BitEqual(lf, original));
  EXPECT_TRUE(BitEqual(QuantDequant(lf, formats), QuantDequant(original, formats)));
  EXPECT_EQ(r.n_sampled, 300);
  EXPECT_EQ(r.n_tokens_total, static_cast<int64_t>(calib.size()) * kCtx);

  const AwqInputs in = CollectAwqInputs(model.config, original, layer, calib, options);
  for (int g = 0; g < kAwqGroups; ++g) {
    const AwqGroupResult& gr = r.groups[g];
    if (static_cast<AwqGroup>(g) == AwqGroup::kAttnOutput) {
      EXPECT_FALSE(gr.searched);
      EXPECT_NE(gr.skip_reason.find("grouped-query"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(gr.searched) << AwqGroupName(static_cast<AwqGroup>(g));
    EXPECT_EQ(gr.alpha, 0.0);
    EXPECT_EQ(gr.error_rtn, gr.error_best);
    for (float s : gr.scales) ASSERT_EQ(s, 1.0f);
    // The inspected output's squared error with RTN weights, recomputed here in double: ffn_down's own
    // output, and the MLP's output (FP32 ffn_down after RTN gate and up); the attention's needs a forward.
    const int64_t d = in.in_dim[g];
    const auto group = static_cast<AwqGroup>(g);
    if (group == AwqGroup::kAttnInput) {
      EXPECT_TRUE(std::isfinite(gr.error_rtn) && gr.error_rtn > 0.0);
      continue;
    }
    auto rtn = [&](LinearKind kind) {
      const Tensor& w = original.linear(kind);
      const WeightFormat& f = formats[static_cast<int>(kind)];
      if (GetParam() == AwqQuantizer::kFormat) return FakeQuantize(f, w.view().as<float>(), w.shape[0], w.shape[1]);
      std::vector<float> q(static_cast<size_t>(w.shape[0] * w.shape[1]));
      FakeQuantizeMinMax(f, w.view().as<float>(), w.shape[0], w.shape[1], q.data());
      return q;
    };
    auto dot = [](const float* a, const float* b, int64_t n) {
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
      return s;
    };
    double expected = 0.0;
    const int64_t dim = model.config.dim;
    const int64_t hidden = model.config.hidden_dim;
    const float* down = original.w_down.view().as<float>();
    const std::vector<float> q_gate = rtn(LinearKind::kGate), q_up = rtn(LinearKind::kUp), q_down = rtn(LinearKind::kDown);
    const float* gate = original.w_gate.view().as<float>();
    const float* up = original.w_up.view().as<float>();
    for (int64_t t = 0; t < in.n_sampled; ++t) {
      const float* x = in.samples[g].data() + t * d;
      if (group == AwqGroup::kFfnDown) {
        for (int64_t row = 0; row < dim; ++row) {
          const double e = dot(x, down + row * d, d) - dot(x, q_down.data() + row * d, d);
          expected += e * e;
        }
      } else {
        std::vector<float> h(hidden), hq(hidden);
        for (int64_t j = 0; j < hidden; ++j) {
          const double g0 = dot(x, gate + j * d, d), gq = dot(x, q_gate.data() + j * d, d);
          h[j] = static_cast<float>(g0 / (1.0 + std::exp(-g0)) * dot(x, up + j * d, d));
          hq[j] = static_cast<float>(gq / (1.0 + std::exp(-gq)) * dot(x, q_up.data() + j * d, d));
        }
        for (int64_t row = 0; row < dim; ++row) {
          const double e = dot(h.data(), down + row * hidden, hidden) - dot(hq.data(), down + row * hidden, hidden);
          expected += e * e;
        }
      }
    }
    EXPECT_NEAR(gr.error_rtn, expected, 1e-3 * expected) << AwqGroupName(static_cast<AwqGroup>(g));
  }
}

INSTANTIATE_TEST_SUITE_P(Quantizers, AwqAlphaZero, ::testing::Values(AwqQuantizer::kFormat, AwqQuantizer::kMinMax),
                         [](const auto& info) { return info.param == AwqQuantizer::kFormat ? "Format" : "MinMax"; });

// AutoAWQ's pseudo-quantizer, recomputed here in double from its definition (the FP16 rounding of the
// scale through the project's converter): every value within 1e-6 of the group's range of the reference
// (a code can only differ where x / scale falls within float rounding of a half).
TEST(AwqMinMaxTest, MatchesAutoAwqsFormula) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 7, cols = 96;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = normal(rng);
  for (int64_t c = 0; c < cols; ++c) w[static_cast<size_t>(3 * cols + c)] = 0.25f + 0.01f * c;  // all positive
  std::fill_n(w.begin() + 5 * cols, cols, 0.0f);                                                    // all zero
  for (const char* name : {"int4-g32", "int3-g32", "int4-g32-sym", "int8-pc", "int4-pt", "int2-g32"}) {
    const WeightFormat f = *ParseWeightFormat(name);
    const DTypeTraits& traits = Traits(f.dtype);
    std::vector<float> got(w.size());
    FakeQuantizeMinMax(f, w.data(), rows, cols, got.data());
    const int64_t group = f.per_tensor ? rows * cols : (f.group == 0 ? cols : f.group);
    for (int64_t start = 0; start < rows * cols; start += group) {
      double lo = 0.0, hi = 0.0;
      for (int64_t i = start; i < start + group; ++i) lo = std::min<double>(lo, w[i]), hi = std::max<double>(hi, w[i]);
      const int bits = traits.bits;
      const double q_lo = traits.symmetric ? -std::ldexp(1.0, bits - 1) : 0.0;
      const double q_hi = traits.symmetric ? std::ldexp(1.0, bits - 1) - 1.0 : std::ldexp(1.0, bits) - 1.0;
      const double raw = traits.symmetric ? std::max(-lo, hi) / q_hi : (hi - lo) / q_hi;
      const double scale = F16ToF32(F32ToF16(static_cast<float>(raw)));
      const double zero = traits.symmetric || scale == 0.0 ? 0.0 : std::clamp(std::nearbyint(-lo / scale), q_lo, q_hi);
      for (int64_t i = start; i < start + group; ++i) {
        const double expected =
            scale == 0.0 ? 0.0 : (std::clamp(std::nearbyint(w[i] / scale) + zero, q_lo, q_hi) - zero) * scale;
        ASSERT_NEAR(got[i], expected, 1e-6 * (hi - lo) + 1e-12) << name << " value " << i;
      }
    }
  }
}

struct Margin {
  double rtn = 0.0;
  double awq = 0.0;
};

// AWQ (scales + clipping) then RTN against plain RTN, on every stories260K block: the error of the block
// output on held-out windows, relative to the FP32 block output's norm.
class AwqStoriesFormat : public ::testing::TestWithParam<std::string> {};

TEST_P(AwqStoriesFormat, BlockOutputErrorBelowRtn) {
  const Model& model = Stories();
  const Formats formats = AllFormats(model.config, GetParam());
  double sum_rtn = 0.0, sum_awq = 0.0;
  for (int64_t l = 0; l < model.config.n_layers; ++l) {
    const Windows calib = BlockInputs(model, l, StoriesWindows().calib);
    const Windows eval = BlockInputs(model, l, StoriesWindows().eval);
    const LayerFloat original = CopyLayerToFloat(model.weights.layers[static_cast<size_t>(l)]);
    const std::vector<float> fp = RunBlock(model.config, original.views(), l, eval);
    const double norm = SquaredNorm(fp);

    const double rtn = SquaredDistance(RunBlock(model.config, QuantDequant(original, formats).views(), l, eval), fp);
    LayerFloat lf = Copy(original);
    AwqOptions options;
    options.seed = 5;
    const AwqLayerResult r = AwqLayer(model.config, lf, l, calib, formats, options);
    const double awq = SquaredDistance(RunBlock(model.config, QuantDequant(lf, formats).views(), l, eval), fp);

    std::string alphas;
    for (const AwqGroupResult& g : r.groups) {
      alphas += g.searched ? fmt::format(" {:.2f}", g.alpha) : std::string(" -");
      if (g.searched) {
        EXPECT_LE(g.error_best, g.error_rtn);
      }
    }
    std::string clips;
    for (const AwqLinearResult& c : r.linears) clips += c.clipped ? fmt::format(" {:.3f}", c.mean_clip) : " -";
    std::printf("%s layer %lld: relative block error RTN %.4f AWQ %.4f (%.1f%% less); alpha%s; clip%s; %.3f s\n",
                GetParam().c_str(), static_cast<long long>(l), std::sqrt(rtn / norm), std::sqrt(awq / norm),
                100.0 * (1.0 - std::sqrt(awq / rtn)), alphas.c_str(), clips.c_str(), r.seconds);
    EXPECT_LT(awq, rtn) << "layer " << l;
    sum_rtn += rtn;
    sum_awq += awq;
  }
  std::printf("%s all layers: squared block error AWQ / RTN = %.3f\n", GetParam().c_str(), sum_awq / sum_rtn);
}

INSTANTIATE_TEST_SUITE_P(Formats, AwqStoriesFormat, ::testing::Values("int3-g32", "int4-g32", "q4_0"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(AwqLayerTest, AttnOutputGroupIsSearchedWithoutGqa) {
  const Model& model = SynthMha();
  const Windows calib = BlockInputs(model, 1, RandomTokens(model.config.vocab_size, 4, 64, 9));
  LayerFloat lf = CopyLayerToFloat(model.weights.layers[1]);
  const AwqLayerResult r = AwqLayer(model.config, lf, 1, calib, AllFormats(model.config, "int4-g32"));
  for (const AwqGroupResult& g : r.groups) {
    EXPECT_TRUE(g.searched) << g.skip_reason;
    EXPECT_LE(g.error_best, g.error_rtn);
  }
}

// A NaN per-channel mean makes every alpha > 0 non-finite (NaN^alpha), while alpha = 0 is s = 1 whatever
// the mean: those grid points are skipped and alpha = 0 is chosen.
TEST(AwqLayerTest, NonFiniteGridPointsAreSkipped) {
  const Model& model = Stories();
  const int64_t layer = 1;
  const Windows calib = BlockInputs(model, layer, StoriesWindows().calib);
  const LayerFloat lf = CopyLayerToFloat(model.weights.layers[layer]);
  const Formats formats = AllFormats(model.config, "int4-g32");
  AwqOptions options;
  options.max_tokens = 256;
  AwqInputs in = CollectAwqInputs(model.config, lf, layer, calib, options);
  in.mean_abs[static_cast<int>(AwqGroup::kFfnInput)][7] = std::nanf("");
  for (int n_grid : {2, 20}) {
    options.n_grid = n_grid;
    const AwqGroupResult r = AwqSearchGroupScale(model.config, lf, layer, AwqGroup::kFfnInput, in, formats, options);
    EXPECT_EQ(r.n_nonfinite, n_grid - 1);
    EXPECT_EQ(r.alpha, 0.0);
    EXPECT_TRUE(std::isfinite(r.error_best));
    EXPECT_EQ(r.error_best, r.error_rtn);
    for (float s : r.scales) ASSERT_EQ(s, 1.0f);
  }
  // The unharmed group still searches its whole grid.
  const AwqGroupResult ok = AwqSearchGroupScale(model.config, lf, layer, AwqGroup::kFfnDown, in, formats, options);
  EXPECT_EQ(ok.n_nonfinite, 0);
}

TEST(AwqLayerTest, AllNonFiniteNamesTheLayerAndGroup) {
  const Model& model = Stories();
  LayerFloat lf = CopyLayerToFloat(model.weights.layers[3]);
  const Windows nan_windows(2, std::vector<float>(static_cast<size_t>(16 * model.config.dim), std::nanf("")));
  try {
    AwqLayer(model.config, lf, 3, nan_windows, AllFormats(model.config, "int4-g32"));
    FAIL() << "expected mixq::Error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("layer 3"), std::string::npos) << what;
    EXPECT_NE(what.find("attn_norm->attn_q,attn_k,attn_v"), std::string::npos) << what;
    EXPECT_NE(what.find("non-finite"), std::string::npos) << what;
  }
}

TEST(AwqLayerTest, BadInputsAreRefusedByName) {
  const Model& model = Stories();
  LayerFloat lf = CopyLayerToFloat(model.weights.layers[0]);
  const Formats formats = AllFormats(model.config, "int4-g32");
  const Windows ragged{std::vector<float>(static_cast<size_t>(model.config.dim * 3 + 1), 0.5f)};
  EXPECT_THROW(AwqLayer(model.config, lf, 0, ragged, formats), Error);
  EXPECT_THROW(AwqLayer(model.config, lf, 0, Windows{}, formats), Error);
  const Windows ok{std::vector<float>(static_cast<size_t>(model.config.dim * 4), 0.5f)};
  AwqOptions bad;
  bad.n_grid = 0;
  EXPECT_THROW(AwqLayer(model.config, lf, 0, ok, formats, bad), Error);
  bad = {};
  bad.max_shrink = 1.0;
  EXPECT_THROW(AwqLayer(model.config, lf, 0, ok, formats, bad), Error);
  Formats q4k = formats;
  q4k[static_cast<int>(LinearKind::kDown)] = *ParseWeightFormat("q4_k");  // 172 is not a 256-block
  try {
    AwqLayer(model.config, lf, 0, ok, q4k);
    FAIL() << "expected mixq::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ffn_down"), std::string::npos) << e.what();
  }
}

// The clip search never makes a linear's output error worse than not clipping (shrink 1 is a candidate
// for every row and group, and groups quantize independently).
TEST(AwqClipTest, ClippingNeverRaisesTheMeasuredError) {
  const Model& model = Stories();
  const Windows calib = BlockInputs(model, 4, StoriesWindows().calib);
  const LayerFloat lf = CopyLayerToFloat(model.weights.layers[4]);
  AwqOptions options;
  options.max_tokens = 512;
  const AwqInputs in = CollectAwqInputs(model.config, lf, 4, calib, options);
  for (const char* name : {"int3-g32", "int4-pc", "q4_0", "q8_0"}) {
    Tensor w = CopyLayerToFloat(model.weights.layers[4]).w_gate;
    const AwqLinearResult r = AwqClipLinear(w, *ParseWeightFormat(name), in.samples[2].data(), in.n_sampled, options);
    EXPECT_TRUE(r.clipped);
    EXPECT_LE(r.error_after, r.error_before * (1.0 + 1e-6)) << name;
    EXPECT_LE(r.mean_clip, 1.0);
    EXPECT_GE(r.mean_clip, 0.55);
    std::printf("ffn_gate %s: clip group %lld, mean clip %.3f, output error %.4g -> %.4g\n", name,
                static_cast<long long>(r.clip_group), r.mean_clip, r.error_before, r.error_after);
  }
  Tensor w = CopyLayerToFloat(model.weights.layers[4]).w_gate;
  EXPECT_FALSE(AwqClipLinear(w, *ParseWeightFormat("int4-pt"), in.samples[2].data(), in.n_sampled, options).clipped);
  EXPECT_FALSE(AwqClipLinear(w, *ParseWeightFormat("f16"), in.samples[2].data(), in.n_sampled, options).clipped);
}

// The time of AwqLayer on a LLaMA-2-7B-shaped block (synthetic weights, 4 windows of 512 tokens: the
// default max_tokens, int4-g128; MIXQ_AWQ_QUANTIZER=minmax times AwqQuantizer::kMinMax): a print, not an assertion. It times each step at reduced grids and
// prints the estimate for the defaults (n_grid points, the clip shrinks); the total is one AwqLayer call
// away (MIXQ_AWQ_FULL=1 runs it). Disabled by default (~3 GiB); run it with
// --gtest_also_run_disabled_tests --gtest_filter='*Llama2_7b*'.
TEST(AwqTimingTest, DISABLED_Llama2_7bBlock) {
  const Model model = MakeSyntheticModel(FindSynthPreset("llama2-7b"), 1, DType::kF16, 3);
  const Windows calib = BlockInputs(model, 0, RandomTokens(model.config.vocab_size, 4, 512, 4));
  LayerFloat lf = CopyLayerToFloat(model.weights.layers[0]);
  const Formats formats = AllFormats(model.config, "int4-g128");
  const AwqOptions defaults;
  AwqOptions options = defaults;
  if (const char* q = std::getenv("MIXQ_AWQ_QUANTIZER")) {
    options.quantizer = std::string(q) == "minmax" ? AwqQuantizer::kMinMax : AwqQuantizer::kFormat;
  }
  Timer timer;
  AwqInputs in = CollectAwqInputs(model.config, lf, 0, calib, options);
  const double collect_s = timer.ElapsedSeconds();
  std::printf("llama2-7b block, %lld tokens, int4-g128: collect %.1f s\n", static_cast<long long>(in.n_sampled),
              collect_s);
  double estimate = collect_s;
  // Two grid points (alpha 0 and 0.5) per group: half the cost of one point is a point of the default grid.
  options.n_grid = 2;
  for (int g = 0; g < kAwqGroups; ++g) {
    timer.Reset();
    AwqSearchGroupScale(model.config, lf, 0, static_cast<AwqGroup>(g), in, formats, options);
    const double per_point = timer.ElapsedSeconds() / 2.0;
    estimate += defaults.n_grid * per_point;
    std::printf("  search %s: %.2f s per grid point\n", AwqGroupName(static_cast<AwqGroup>(g)), per_point);
  }
  // Two shrinks (1.00, 0.95) per linear against one (1.00): the difference is a shrink's cost.
  const double n_shrink = std::max(1, static_cast<int>(defaults.max_shrink * defaults.n_clip_grid));
  for (LinearKind kind : {LinearKind::kO, LinearKind::kDown}) {
    const int g = kind == LinearKind::kO ? 1 : 3;
    double seconds[2];
    for (int i = 0; i < 2; ++i) {
      LayerFloat copy = CopyLayerToFloat(model.weights.layers[0]);
      Tensor& w = copy.linear(kind);
      options.max_shrink = i == 0 ? 0.0 : 0.1;
      timer.Reset();
      AwqClipLinear(w, formats[static_cast<int>(kind)], in.samples[g].data(), in.n_sampled, options);
      seconds[i] = timer.ElapsedSeconds();
    }
    const double per_shrink = seconds[1] - seconds[0];
    // v and o are 4096 x 4096; gate, up and down 11008 x 4096 (or its transpose).
    estimate += (seconds[0] + (n_shrink - 1.0) * per_shrink) * (kind == LinearKind::kO ? 2.0 : 3.0);
    std::printf("  clip %s: %.2f s with one shrink, %.2f s per further shrink\n", LinearKindName(kind), seconds[0],
                per_shrink);
  }
  std::printf("estimated AwqLayer with the defaults: %.0f s\n", estimate);
  if (std::getenv("MIXQ_AWQ_FULL") != nullptr) {
    LayerFloat full = CopyLayerToFloat(model.weights.layers[0]);
    AwqOptions full_options = defaults;
    full_options.quantizer = options.quantizer;
    const AwqLayerResult r = AwqLayer(model.config, full, 0, calib, formats, full_options);
    std::printf("AwqLayer with the defaults: %.0f s\n", r.seconds);
  }
}

}  // namespace
}  // namespace mixq
