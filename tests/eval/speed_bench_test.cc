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

}  // namespace
}  // namespace mixq
