// Quantization policies: rule parsing and errors, precedence, and the presets against llama.cpp's mixes.
#include "mixq/quant/policy.h"

#include <map>

#include <gtest/gtest.h>

#include "mixq/base/error.h"

namespace mixq {
namespace {

std::string Decide(const QuantPolicy& p, const std::string& name, std::optional<WeightFormat> type = std::nullopt) {
  const PolicyDecision d = DecideFormat(p, name, type);
  return d.target.format ? WeightFormatName(*d.target.format) : "keep";
}

// Every LLaMA weight-matrix name of a model with `n_layers` layers (tied: no output.weight).
std::vector<std::string> LlamaTensorNames(int n_layers, bool tied) {
  std::vector<std::string> names = {"token_embd.weight"};
  if (!tied) names.push_back("output.weight");
  for (int i = 0; i < n_layers; ++i) {
    for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"}) {
      names.push_back("blk." + std::to_string(i) + "." + t + ".weight");
    }
  }
  return names;
}

std::map<std::string, int> CountFormats(const QuantPolicy& p, int n_layers, bool tied) {
  std::map<std::string, int> counts;
  for (const std::string& name : LlamaTensorNames(n_layers, tied)) ++counts[Decide(p, name)];
  return counts;
}

TEST(PolicyTest, FirstMatchingRuleWinsThenDefaultThenType) {
  const QuantPolicy p = ParsePolicy(
      "# comment line\n"
      "attn_v = q6_k   # trailing comment\n"
      "\n"
      R"(^blk\.0\. = int8-pc)" "\n"
      "token_embd = keep\n",
      "test.policy");
  ASSERT_EQ(p.rules.size(), 3u);
  EXPECT_EQ(Decide(p, "blk.0.attn_v.weight"), "q6_k");  // rule 1 before rule 2
  EXPECT_EQ(Decide(p, "blk.0.ffn_up.weight"), "int8-pc");
  EXPECT_EQ(Decide(p, "token_embd.weight"), "keep");
  EXPECT_EQ(Decide(p, "blk.1.ffn_up.weight"), "keep");  // no rule, no default, no --type
  EXPECT_EQ(Decide(p, "blk.1.ffn_up.weight", WeightFormat{DType::kQ4_0}), "q4_0");
  const QuantPolicy with_default = ParsePolicy("attn_v = q6_k\ndefault = int4-g128\n", "d.policy");
  EXPECT_EQ(Decide(with_default, "blk.1.ffn_up.weight", WeightFormat{DType::kQ4_0}), "int4-g128");
  EXPECT_EQ(DecideFormat(p, "blk.0.attn_v.weight", std::nullopt).reason, "line 2: attn_v");
}

TEST(PolicyTest, BadLinesNameFileAndLine) {
  auto message = [](const std::string& text) {
    try {
      ParsePolicy(text, "my.policy");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("attn_v = q9_k\n").find("my.policy:1: unknown format 'q9_k'"), std::string::npos);
  EXPECT_NE(message("\nattn_v q4_k\n").find("my.policy:2: expected"), std::string::npos);
  EXPECT_NE(message("blk.(0 = q4_k\n").find("my.policy:1: pattern 'blk.(0' is not a valid regular"),
            std::string::npos);
  EXPECT_NE(message("= q4_k\n").find("my.policy:1: the rule has no pattern"), std::string::npos);
  EXPECT_NE(message("default = q4_k\ndefault = q8_0\n").find("my.policy:2: a second 'default'"), std::string::npos);
  EXPECT_THROW(LoadPolicy("/nonexistent/policy.txt", 4, false), Error);
}

// llama.cpp's LLaMA-2-7B (32 layers) files report "q4_K: 193 tensors, q6_K: 33 tensors" for Q4_K_M and
// "q3_K: 129, q4_K: 92, q5_K: 4, q6_K: 1" for Q3_K_M (weight matrices; norms are F32 besides).
TEST(PolicyTest, PresetsReproduceLlamaCppMixesForLlama2_7B) {
  const auto q4km = PresetPolicy("Q4_K_M", 32, false);
  ASSERT_TRUE(q4km.has_value());
  const auto counts = CountFormats(*q4km, 32, false);
  EXPECT_EQ(counts.at("q4_k"), 193);
  EXPECT_EQ(counts.at("q6_k"), 33);
  EXPECT_EQ(counts.size(), 2u);
  // use_more_bits(i, 32): layers 0-3, 28-31 and every third from 6.
  for (int i : {0, 3, 6, 9, 27, 28, 31}) EXPECT_EQ(Decide(*q4km, fmt::format("blk.{}.attn_v.weight", i)), "q6_k") << i;
  for (int i : {4, 5, 7, 26}) EXPECT_EQ(Decide(*q4km, fmt::format("blk.{}.ffn_down.weight", i)), "q4_k") << i;

  const auto q3km = PresetPolicy("q3_k_m", 32, false);
  ASSERT_TRUE(q3km.has_value());
  const auto c3 = CountFormats(*q3km, 32, false);
  EXPECT_EQ(c3.at("q3_k"), 129);
  EXPECT_EQ(c3.at("q4_k"), 92);
  EXPECT_EQ(c3.at("q5_k"), 4);
  EXPECT_EQ(c3.at("q6_k"), 1);
}

TEST(PolicyTest, TiedEmbeddingsTakeTheOutputType) {
  const auto p = PresetPolicy("q4_k_m", 5, true);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(Decide(*p, "token_embd.weight"), "q6_k");
  EXPECT_EQ(Decide(*PresetPolicy("q4_k_m", 5, false), "token_embd.weight"), "q4_k");
  EXPECT_FALSE(PresetPolicy("q9_k_m", 5, false).has_value());
}

TEST(PolicyTest, DumpedPresetParsesBackToTheSameDecisions) {
  const auto preset = PresetPolicy("q3_k_m", 26, false);
  ASSERT_TRUE(preset.has_value());
  const QuantPolicy back = ParsePolicy(PolicyToText(*preset), "dumped");
  for (const std::string& name : LlamaTensorNames(26, false)) EXPECT_EQ(Decide(back, name), Decide(*preset, name)) << name;
}

}  // namespace
}  // namespace mixq
