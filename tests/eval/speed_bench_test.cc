// llama-bench-style speed runs: the repetition hook `mixq bench` probes bandwidth in, and the bound
// arithmetic its "% of the bound" lines come from.
#include "mixq/eval/speed_bench.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mixq/base/error.h"
#include "stories_fixture.h"

namespace mixq {
namespace {

using testing::Stories;

TEST(SpeedBench, CallsTheHookBeforeEachRepetitionAndAfterTheLast) {
  SpeedBenchOptions options;
  options.n_prompt = 4;
  options.n_gen = 3;
  options.repetitions = 2;
  std::vector<std::string> calls;
  options.between_repetitions = [&](const std::string& test) { calls.push_back(test); };
  const std::vector<SpeedTestResult> results = RunSpeedBench(Stories(), options);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].test, "pp4");
  EXPECT_EQ(results[1].test, "tg3");
  for (const SpeedTestResult& r : results) {
    ASSERT_EQ(r.tokens_per_second.size(), 2u) << r.test;
    for (double tps : r.tokens_per_second) EXPECT_GT(tps, 0.0) << r.test;
  }
  EXPECT_EQ(calls, (std::vector<std::string>{"pp4", "pp4", "pp4", "tg3", "tg3", "tg3"}));
}

// -d: the tests start at a depth (named as llama-bench names them); the context must hold depth + test.
TEST(SpeedBench, RunsEachTestAtTheRequestedDepth) {
  SpeedBenchOptions options;
  options.n_prompt = 5;
  options.n_gen = 2;
  options.n_depth = 7;
  options.repetitions = 1;
  const std::vector<SpeedTestResult> results = RunSpeedBench(Stories(), options);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].test, "pp5 @ d7");
  EXPECT_EQ(results[1].test, "tg2 @ d7");
  for (const SpeedTestResult& r : results) EXPECT_GT(r.tokens_per_second.at(0), 0.0) << r.test;
  const int64_t context = Stories().config.context_length;
  options.n_depth = context - 4;  // pp5 would pass the context's end
  EXPECT_THROW(RunSpeedBench(Stories(), options), Error);
  options.n_depth = -1;
  EXPECT_THROW(RunSpeedBench(Stories(), options), Error);
}

TEST(SpeedBench, HoldsEachRepetitionToTheHigherProbeBesideIt) {
  SpeedTestResult tg{"tg128", 128, {5.0, 10.0, 6.0}};
  // 1e9 bytes a token: a probe of G GB/s bounds generation at G tokens/s.
  const GenerationBound b = BoundOfGeneration(tg, {10.0, 20.0, 8.0, 12.0}, 1'000'000'000);
  EXPECT_DOUBLE_EQ(b.bound_tps, 20.0);
  EXPECT_DOUBLE_EQ(b.fraction, 7.0 / 20.0);
  ASSERT_EQ(b.fraction_per_rep.size(), 3u);
  EXPECT_DOUBLE_EQ(b.fraction_per_rep[0], 5.0 / 20.0);   // probes 10 and 20 beside it
  EXPECT_DOUBLE_EQ(b.fraction_per_rep[1], 10.0 / 20.0);  // 20 and 8
  EXPECT_DOUBLE_EQ(b.fraction_per_rep[2], 6.0 / 12.0);   // 8 and 12
  EXPECT_DOUBLE_EQ(b.median_fraction_per_rep, 0.5);
  tg.tokens_per_second.pop_back();
  const GenerationBound even = BoundOfGeneration(tg, {10.0, 20.0, 8.0}, 1'000'000'000);
  EXPECT_DOUBLE_EQ(even.median_fraction_per_rep, (0.25 + 0.5) / 2);
}

TEST(SpeedBench, RefusesProbesThatDoNotMatchTheRepetitions) {
  const SpeedTestResult tg{"tg16", 16, {5.0, 10.0}};
  EXPECT_THROW(BoundOfGeneration(tg, {10.0, 20.0}, 1000), Error);
  EXPECT_THROW(BoundOfGeneration(tg, {10.0, 20.0, 30.0}, 0), Error);
}

// --token-bound: n tokens, each between two reads of the weights a token streams (n + 1 reads), every
// read of WeightBytesPerToken bytes.
TEST(SpeedBench, TimesEachTokenBetweenTwoReadsOfItsWeights) {
  SpeedBenchOptions options;
  options.n_gen = 3;
  options.n_depth = 2;
  const TokenReadTimes times = TimeTokensAgainstRead(Stories(), options);
  ASSERT_EQ(times.token_seconds.size(), 3u);
  ASSERT_EQ(times.read_seconds.size(), 4u);
  for (double s : times.token_seconds) EXPECT_GT(s, 0.0);
  for (double s : times.read_seconds) EXPECT_GT(s, 0.0);
  EXPECT_EQ(times.bytes_read, WeightBytesPerToken(Stories()));
  options.n_depth = Stories().config.context_length - 3;  // 3 tokens and the warm-up one pass the end
  EXPECT_THROW(TimeTokensAgainstRead(Stories(), options), Error);
  options.n_depth = 0;
  options.n_gen = 0;
  EXPECT_THROW(TimeTokensAgainstRead(Stories(), options), Error);
}

TEST(SpeedBench, HoldsEachTokenToTheFasterReadBesideIt) {
  // 1e9 bytes a read: a read of S seconds is 1/S GB/s.
  TokenReadTimes times;
  times.bytes_read = 1'000'000'000;
  times.token_seconds = {2.0, 1.0, 4.0, 1.0, 2.0, 1.0, 1.0, 3.0};
  times.read_seconds = {1.0, 0.5, 0.8, 2.0, 1.0, 1.0, 0.25, 0.5, 1.5};
  const TokenBound b = BoundTokenByToken(times);
  const std::vector<double> want = {0.5 / 2.0, 0.5 / 1.0, 0.8 / 4.0, 1.0 / 1.0, 1.0 / 2.0, 0.25 / 1.0, 0.25 / 1.0,
                                    0.5 / 3.0};
  ASSERT_EQ(b.fraction.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(b.fraction[i], want[i]) << i;
  EXPECT_DOUBLE_EQ(b.read_gbs[0], 2.0);
  EXPECT_DOUBLE_EQ(b.read_gbs[5], 4.0);
  // Sorted: 1/6, 0.2, 0.25, 0.25, 0.25, 0.5, 0.5, 1; quantiles interpolate between neighbours.
  EXPECT_DOUBLE_EQ(b.median, 0.25);
  EXPECT_NEAR(b.p10, 1.0 / 6 + 0.7 * (0.2 - 1.0 / 6), 1e-12);
  EXPECT_NEAR(b.p90, 0.5 + 0.3 * 0.5, 1e-12);
  // The fastest quarter: tokens 5 and 6 (reads of 0.25 s, 4 GB/s), both at 0.25.
  EXPECT_EQ(b.fastest_quarter_tokens, 2);
  EXPECT_DOUBLE_EQ(b.fastest_quarter_median, 0.25);
  EXPECT_DOUBLE_EQ(b.fastest_quarter_min_gbs, 4.0);
}

TEST(SpeedBench, RefusesReadsThatDoNotMatchTheTokens) {
  TokenReadTimes times;
  times.bytes_read = 1000;
  times.token_seconds = {1.0, 1.0};
  times.read_seconds = {1.0, 1.0};
  EXPECT_THROW(BoundTokenByToken(times), Error);
  times.read_seconds.push_back(0.0);
  EXPECT_THROW(BoundTokenByToken(times), Error);  // a read of no time
  times.read_seconds.back() = 1.0;
  EXPECT_NO_THROW(BoundTokenByToken(times));
  times.bytes_read = 0;
  EXPECT_THROW(BoundTokenByToken(times), Error);
}

}  // namespace
}  // namespace mixq
