// llama-bench-style speed measurement: prompt processing (ppN) and token generation (tgN) in tokens/s.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mixq/model/model.h"

namespace mixq {

struct SpeedBenchOptions {
  int64_t n_prompt = 512;  // 0 skips the pp test
  int64_t n_gen = 128;     // 0 skips the tg test
  // Tokens already in the context when each test starts (llama-bench's -d): they are prefilled, untimed,
  // before every repetition, so tg measures decode that also reads a KV cache this long (the tests are
  // then named "pp512 @ d2048", as llama-bench names them).
  int64_t n_depth = 0;
  int64_t repetitions = 5;
  uint64_t seed = 1234;    // random token ids, as llama-bench uses
  // Called with the test's name before each timed repetition and once after the last, outside the
  // timing: `mixq bench` probes the memory bandwidth there, so each repetition has a bound measured
  // right beside it (the bandwidth of a shared machine drifts from one minute to the next).
  std::function<void(const std::string& test)> between_repetitions;
};

struct SpeedTestResult {
  std::string test;  // "pp512" or "tg128" ("tg128 @ d2048" at a depth), as llama-bench names them
  int64_t n_tokens = 0;
  std::vector<double> tokens_per_second;  // one sample per repetition
  double mean() const;
  double stdev() const;  // sample standard deviation; 0 for one sample
};

// Runs each test once to warm up, then `repetitions` timed times, each from a KV cache holding n_depth
// random tokens (empty by default): pp feeds n_prompt random tokens as one batched prompt; tg decodes
// n_gen tokens one at a time.
std::vector<SpeedTestResult> RunSpeedBench(const Model& model, const SpeedBenchOptions& options);

// The memory-bandwidth bound of one generation test, from read-bandwidth probes (GB/s) taken before each
// of its repetitions and after the last (SpeedBenchOptions::between_repetitions).
struct GenerationBound {
  std::vector<double> probes_gbs;        // repetitions + 1
  double bound_tps = 0.0;                // tokens/s at the highest probe
  double fraction = 0.0;                 // mean tokens/s over bound_tps: the conservative figure
  std::vector<double> fraction_per_rep;  // each run's tokens/s over the bound at the higher probe beside it
  double median_fraction_per_rep = 0.0;
};
GenerationBound BoundOfGeneration(const SpeedTestResult& test, const std::vector<double>& probes_gbs,
                                  int64_t weight_bytes_per_token);

// Generation held to a plain read of the very bytes each token streams (model.h's DecodeReadSpans, read
// as the bandwidth probe reads: all threads, one matrix at a time), one read before every token and one
// after the last. On a shared machine the memory's speed changes within a second, so a bound probed
// before and after a whole run can belong to another mode than the tokens; a read milliseconds from each
// token cannot (`mixq bench --token-bound`).
struct TokenReadTimes {
  std::vector<double> token_seconds;  // n_gen tokens decoded one at a time
  std::vector<double> read_seconds;   // n_gen + 1: before each token, and after the last
  int64_t bytes_read = 0;             // by each read (the sum of DecodeReadSpans)
};
// Decodes options.n_gen tokens (after n_depth prefilled ones and one warm-up token), each between two
// reads. Untouched options: n_prompt, repetitions, between_repetitions.
TokenReadTimes TimeTokensAgainstRead(const Model& model, const SpeedBenchOptions& options);

struct TokenBound {
  // Per token: the faster of the reads beside it over the token's time (the share of the bandwidth bound
  // it reached, held to the higher bound), and that read's rate.
  std::vector<double> fraction;
  std::vector<double> read_gbs;
  double median = 0.0, p10 = 0.0, p90 = 0.0;  // of `fraction`
  // The quarter of the tokens (at least one) whose reads were fastest, where a kernel that cannot keep up
  // with the memory falls furthest behind: how many, the median of their fractions and the slowest of
  // their reads.
  int64_t fastest_quarter_tokens = 0;
  double fastest_quarter_median = 0.0;
  double fastest_quarter_min_gbs = 0.0;
};
TokenBound BoundTokenByToken(const TokenReadTimes& times);

// Bytes of weights one decode step reads: every linear layer and the output head (the embedding
// table contributes one row, counted as nothing). Divided by memory bandwidth this bounds tg speed.
int64_t WeightBytesPerToken(const Model& model);

}  // namespace mixq
