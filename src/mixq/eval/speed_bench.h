// llama-bench-style speed measurement: prompt processing (ppN) and token generation (tgN) in tokens/s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mixq/model/model.h"

namespace mixq {

struct SpeedBenchOptions {
  int64_t n_prompt = 512;  // 0 skips the pp test
  int64_t n_gen = 128;     // 0 skips the tg test
  int64_t repetitions = 5;
  uint64_t seed = 1234;    // random token ids, as llama-bench uses
};

struct SpeedTestResult {
  std::string test;  // "pp512" or "tg128", as llama-bench names them
  int64_t n_tokens = 0;
  std::vector<double> tokens_per_second;  // one sample per repetition
  double mean() const;
  double stdev() const;  // sample standard deviation; 0 for one sample
};

// Runs each test once to warm up, then `repetitions` timed times, each from an empty KV cache:
// pp feeds n_prompt random tokens as one batched prompt; tg decodes n_gen tokens one at a time.
std::vector<SpeedTestResult> RunSpeedBench(const Model& model, const SpeedBenchOptions& options);

// Bytes of weights one decode step reads: every linear layer and the output head (the embedding
// table contributes one row, counted as nothing). Divided by memory bandwidth this bounds tg speed.
int64_t WeightBytesPerToken(const Model& model);

}  // namespace mixq
