// Spike-aware policies from statistics: which projections exceed the threshold, the policy text's rules
// (anchored, escaped) and default, its round trip through ParsePolicy, and the option errors.
#include "mixq/quant/spike_policy.h"

#include <gtest/gtest.h>

#include <limits>

#include "mixq/base/error.h"

namespace mixq {
namespace {

LinearStats StatsWithMaxInput(float max_input) {
  LinearStats s;
  s.in_dim = 2;
  s.out_dim = 1;
  s.count = 1;
  s.in_sum2 = {1.0, 1.0};
  s.in_max_abs = {max_input, 0.5f};
  s.out_max_abs = {1.0f};
  return s;
}

// Seven layers near 10 and two spikes: 120 (12x the median 10) and 45 (4.5x).
CalibrationStats SpikyStats() {
  CalibrationStats stats;
  stats.source = "synthetic";
  const float inputs[] = {9, 10, 10, 11, 10, 9.5f, 10.5f};
  for (int i = 0; i < 7; ++i) stats.linears[fmt::format("blk.{}.attn_q.weight", i)] = StatsWithMaxInput(inputs[i]);
  stats.linears["blk.1.ffn_down.weight"] = StatsWithMaxInput(120);
  stats.linears["blk.6.ffn_down.weight"] = StatsWithMaxInput(45);
  return stats;
}

std::string Decide(const QuantPolicy& policy, const std::string& name) {
  const PolicyDecision d = DecideFormat(policy, name, std::nullopt);
  return d.target.format ? WeightFormatName(*d.target.format) : "keep";
}

TEST(SpikePolicy, DefaultThresholdKeepsOnlyOrderOfMagnitudeSpikes) {
  const SpikePolicy p = MakeSpikePolicy(SpikyStats(), SpikePolicyOptions());
  ASSERT_EQ(p.spikes.size(), 1u);
  EXPECT_EQ(p.spikes[0].name, "blk.1.ffn_down.weight");
  EXPECT_EQ(Decide(p.policy, "blk.1.ffn_down.weight"), "f16");
  EXPECT_EQ(Decide(p.policy, "blk.6.ffn_down.weight"), "w8a8");
  EXPECT_EQ(Decide(p.policy, "blk.0.attn_q.weight"), "w8a8");
  // Anchored and escaped: blk.1 must not also match blk.11 or "blkX1".
  EXPECT_EQ(Decide(p.policy, "blk.11.ffn_down.weight"), "w8a8");
  EXPECT_NE(p.text.find("^blk\\.1\\.ffn_down\\.weight$ = f16"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("default = w8a8"), std::string::npos) << p.text;
}

TEST(SpikePolicy, LowerThresholdFp8AndBaseFormat) {
  SpikePolicyOptions options;
  options.threshold = 4.0;
  options.spike_type = "fp8";
  options.base = *ParseWeightFormat("w8a8-token");
  const SpikePolicy p = MakeSpikePolicy(SpikyStats(), options);
  ASSERT_EQ(p.spikes.size(), 2u);
  EXPECT_EQ(p.spikes[0].name, "blk.1.ffn_down.weight");  // largest ratio first
  EXPECT_EQ(Decide(p.policy, "blk.6.ffn_down.weight"), "fp8");
  EXPECT_EQ(Decide(p.policy, "blk.3.attn_q.weight"), "w8a8-token");
  // The text is the policy: parsing it again decides the same.
  const QuantPolicy again = ParsePolicy(p.text, "saved");
  for (const auto& [name, s] : SpikyStats().linears) EXPECT_EQ(Decide(again, name), Decide(p.policy, name)) << name;
}

TEST(SpikePolicy, RefusesBadOptionsAndStatistics) {
  for (double bad : {1.0, 0.5, -3.0, 2e6, std::numeric_limits<double>::quiet_NaN()}) {
    SpikePolicyOptions options;
    options.threshold = bad;
    try {
      MakeSpikePolicy(SpikyStats(), options);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--spike-threshold"), std::string::npos) << e.what();
    }
  }
  SpikePolicyOptions options;
  options.spike_type = "bf16";
  try {
    MakeSpikePolicy(SpikyStats(), options);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--spike-type 'bf16'"), std::string::npos) << e.what();
  }
  CalibrationStats imatrix = SpikyStats();
  imatrix.linears["blk.0.attn_q.weight"].in_max_abs.clear();  // what a llama.cpp imatrix gives
  EXPECT_THROW(MakeSpikePolicy(imatrix, SpikePolicyOptions()), Error);
  EXPECT_THROW(MakeSpikePolicy(CalibrationStats(), SpikePolicyOptions()), Error);
}

TEST(SpikePolicy, EmbeddingTableIsNeverASpike) {
  // A tied head's statistics are stored under token_embd.weight; the table takes no activation quantization.
  CalibrationStats stats = SpikyStats();
  stats.linears["token_embd.weight"] = StatsWithMaxInput(500);
  const SpikePolicy p = MakeSpikePolicy(stats, SpikePolicyOptions());
  ASSERT_EQ(p.spikes.size(), 1u);
  EXPECT_EQ(p.spikes[0].name, "blk.1.ffn_down.weight");
  EXPECT_EQ(Decide(p.policy, "token_embd.weight"), "w8a8");
  EXPECT_NE(p.text.find("# token_embd.weight ("), std::string::npos) << p.text;
}

}  // namespace
}  // namespace mixq
