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

// Bytes of weights one decode step reads: every linear layer and the output head (the embedding
// table contributes one row, counted as nothing). Divided by memory bandwidth this bounds tg speed.
int64_t WeightBytesPerToken(const Model& model);

}  // namespace mixq
