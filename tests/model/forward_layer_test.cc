// The forward pass in pieces (EmbedTokens, PrepareRope, ForwardLayer) reproduces Forward exactly, the
// linear observer sees every linear in order with its real input, and stop_after ends a block early.
#include <cstring>

#include <gtest/gtest.h>

#include "mixq/kernels/matmul.h"
#include "mixq/kernels/ops.h"
#include "mixq/model/forward.h"
#include "test_paths.h"

namespace mixq {
namespace {

const Model& Stories() {
  static const Model* model = new Model(LoadModel(testing::Stories260KPath()));
  return *model;
}

std::vector<int32_t> Prompt() { return Stories().tokenizer.Encode("Once upon a time there was a cat", true); }

TEST(ForwardLayerTest, PiecesReproduceForwardExactly) {
  const Model& m = Stories();
  const LlamaConfig& c = m.config;
  const std::vector<int32_t> tokens = Prompt();
  const int64_t n = static_cast<int64_t>(tokens.size());
  InferenceState whole = MakeInferenceState(c, 64, 64);
  const float* expected = Forward(m, whole, tokens, 0, true);

  // Each block through a one-layer state, as layer-by-layer calibration runs them.
  LlamaConfig one = c;
  one.n_layers = 1;
  InferenceState s = MakeInferenceState(one, 64, 64);
  EmbedTokens(c, m.weights, s, tokens);
  PrepareRope(c, s, 0, n);
  for (int64_t l = 0; l < c.n_layers; ++l) ForwardLayer(c, m.weights.layers[l], l, s, 0, n, 0);
  std::vector<float> xn(n * c.dim), logits(n * c.vocab_size);
  for (int64_t t = 0; t < n; ++t) {
    RmsNorm(s.x.as<float>() + t * c.dim, m.weights.output_norm.as<float>(), xn.data() + t * c.dim, c.dim, c.rms_eps);
  }
  MatMul(m.weights.head(), xn.data(), n, logits.data());
  for (int64_t i = 0; i < n * c.vocab_size; ++i) ASSERT_EQ(logits[i], expected[i]) << i;
}

TEST(ForwardLayerTest, ObserverSeesEveryLinearInOrderAndStopAfterEndsEarly) {
  const Model& m = Stories();
  const LlamaConfig& c = m.config;
  const std::vector<int32_t> tokens = Prompt();
  const int64_t n = static_cast<int64_t>(tokens.size());
  InferenceState s = MakeInferenceState(c, 64, 64);
  std::vector<std::string> seen;
  s.observer = [&](const LinearCall& call) {
    seen.push_back(LinearWeightName(call.layer, call.kind));
    EXPECT_EQ(call.n_tokens, call.kind == LinearKind::kOutput ? 1 : n);
    EXPECT_EQ(call.in_dim, call.weight->cols());
  };
  Forward(m, s, tokens, 0, false);
  ASSERT_EQ(seen.size(), static_cast<size_t>(c.n_layers * kLinearKinds + 1));
  EXPECT_EQ(seen[0], "blk.0.attn_q.weight");
  EXPECT_EQ(seen[6], "blk.0.ffn_down.weight");
  EXPECT_EQ(seen.back(), "output.weight");

  // stop_after: the block ends after ffn_gate.
  InferenceState one = MakeInferenceState(c, 64, 64);
  EmbedTokens(c, m.weights, one, tokens);
  PrepareRope(c, one, 0, n);
  std::vector<LinearKind> kinds;
  one.observer = [&](const LinearCall& call) { kinds.push_back(call.kind); };
  ForwardLayer(c, m.weights.layers[0], 0, one, 0, n, 0, LinearKind::kGate);
  EXPECT_EQ(kinds, (std::vector<LinearKind>{LinearKind::kQ, LinearKind::kK, LinearKind::kV, LinearKind::kO,
                                            LinearKind::kGate}));
}

}  // namespace
}  // namespace mixq
