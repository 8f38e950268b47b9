// Sampling: greedy, the nucleus cut, frequencies that follow the softmax, and option checks.
#include "mixq/model/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mixq/base/error.h"

namespace mixq {
namespace {

TEST(SamplerTest, TemperatureZeroIsArgmax) {
  Sampler s = MakeSampler({.temperature = 0.0f, .top_p = 0.9f, .seed = 1});
  const std::vector<float> logits = {0.1f, 3.0f, -2.0f, 2.9f};
  EXPECT_EQ(SampleToken(s, logits), 1);
}

// 300 tokens: token 7 holds 60% of the mass; top_p 0.5 must always pick it, even though the other
// 299 together hold 40% (so a full-vocabulary sort and the partial one must agree).
TEST(SamplerTest, NucleusKeepsOnlyTheTokensThatReachTopP) {
  std::vector<float> logits(300, 0.0f);
  logits[7] = std::log(0.6f / 0.4f * 299.0f);
  Sampler s = MakeSampler({.temperature = 1.0f, .top_p = 0.5f, .seed = 3});
  for (int i = 0; i < 200; ++i) ASSERT_EQ(SampleToken(s, logits), 7);
}

// With top_p 1 the frequencies follow softmax(logits / T); a nucleus beyond the first 64 candidates
// exercises the growing partial sort.
TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  std::vector<float> logits(1000, 0.0f);
  logits[3] = std::log(1000.0f);  // p(3) = 1000 / 1999
  Sampler s = MakeSampler({.temperature = 1.0f, .top_p = 1.0f, .seed = 5});
  const int draws = 20000;
  int hits = 0;
  for (int i = 0; i < draws; ++i) hits += SampleToken(s, logits) == 3 ? 1 : 0;
  const double expected = 1000.0 / 1999.0;
  EXPECT_NEAR(static_cast<double>(hits) / draws, expected, 4 * std::sqrt(expected * (1 - expected) / draws));
}

TEST(SamplerTest, SameSeedSameTokens) {
  std::vector<float> logits(500);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  Sampler a = MakeSampler({.temperature = 0.8f, .top_p = 0.95f, .seed = 42});
  Sampler b = MakeSampler({.temperature = 0.8f, .top_p = 0.95f, .seed = 42});
  for (int i = 0; i < 50; ++i) ASSERT_EQ(SampleToken(a, logits), SampleToken(b, logits));
}

TEST(SamplerTest, OutOfRangeOptionsAreErrors) {
  EXPECT_THROW(MakeSampler({.temperature = -1.0f, .top_p = 0.9f, .seed = 0}), Error);
  EXPECT_THROW(MakeSampler({.temperature = 1.0f, .top_p = 0.0f, .seed = 0}), Error);
  EXPECT_THROW(MakeSampler({.temperature = 1.0f, .top_p = 1.5f, .seed = 0}), Error);
}

}  // namespace
}  // namespace mixq
