// llama-bench-style speed measurement.
#include "mixq/eval/speed_bench.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/timer.h"
#include "mixq/kernels/bandwidth.h"
#include "mixq/model/forward.h"

namespace mixq {

double SpeedTestResult::mean() const {
  if (tokens_per_second.empty()) return 0.0;
  return std::accumulate(tokens_per_second.begin(), tokens_per_second.end(), 0.0) / tokens_per_second.size();
}

double SpeedTestResult::stdev() const {
  if (tokens_per_second.size() < 2) return 0.0;
  const double m = mean();
  double sum = 0.0;
  for (double v : tokens_per_second) sum += (v - m) * (v - m);
  return std::sqrt(sum / (tokens_per_second.size() - 1));
}

namespace {

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (auto& t : tokens) t = pick(rng);
  return tokens;
}

// A state for `depth` context tokens (random, prefilled here, untimed) and then n more; batches of up
// to `batch`.
InferenceState StateAtDepth(const Model& model, const std::vector<int32_t>& depth_tokens, int64_t n, int64_t batch) {
  const int64_t depth = static_cast<int64_t>(depth_tokens.size());
  const int64_t max_batch = std::max<int64_t>(1, std::min<int64_t>(batch, 512));
  InferenceState state = MakeInferenceState(model.config, depth + n, max_batch);
  if (depth > 0) Forward(model, state, depth_tokens, 0, /*all_logits=*/false);
  return state;
}

double TimePrompt(const Model& model, const std::vector<int32_t>& depth_tokens, const std::vector<int32_t>& tokens) {
  const int64_t depth = static_cast<int64_t>(depth_tokens.size());
  InferenceState state = StateAtDepth(model, depth_tokens, static_cast<int64_t>(tokens.size()),
                                      std::max<int64_t>(depth, static_cast<int64_t>(tokens.size())));
  Timer timer;
  Forward(model, state, tokens, depth, /*all_logits=*/false);
  return timer.ElapsedSeconds();
}

double TimeGeneration(const Model& model, const std::vector<int32_t>& depth_tokens,
                      const std::vector<int32_t>& tokens) {
  const int64_t depth = static_cast<int64_t>(depth_tokens.size());
  InferenceState state = StateAtDepth(model, depth_tokens, static_cast<int64_t>(tokens.size()), depth);
  Timer timer;
  for (size_t i = 0; i < tokens.size(); ++i) {
    Forward(model, state, std::span<const int32_t>(&tokens[i], 1), depth + static_cast<int64_t>(i), false);
  }
  return timer.ElapsedSeconds();
}

}  // namespace

std::vector<SpeedTestResult> RunSpeedBench(const Model& model, const SpeedBenchOptions& options) {
  const int64_t context = model.config.context_length;
  if (options.n_prompt < 0 || options.n_gen < 0 || options.n_depth < 0) Fail("-p, -n and -d must be >= 0");
  if (options.repetitions < 1) Fail("-r {} is out of range: at least one repetition", options.repetitions);
  if (options.n_depth + options.n_prompt > context || options.n_depth + options.n_gen > context) {
    Fail("-d {} plus -p {} / -n {} exceed the model's context of {}", options.n_depth, options.n_prompt,
         options.n_gen, context);
  }
  std::mt19937_64 rng(options.seed);
  const std::vector<int32_t> depth_tokens = RandomTokens(options.n_depth, model.config.vocab_size, rng);
  const std::string at_depth = options.n_depth > 0 ? fmt::format(" @ d{}", options.n_depth) : "";
  std::vector<SpeedTestResult> results;
  using TimeFn = double (*)(const Model&, const std::vector<int32_t>&, const std::vector<int32_t>&);
  auto run = [&](const std::string& name, int64_t n, TimeFn time_fn) {
    SpeedTestResult r{name + at_depth, n, {}};
    const std::vector<int32_t> tokens = RandomTokens(n, model.config.vocab_size, rng);
    time_fn(model, depth_tokens, tokens);  // warm-up: pages the weights in, sizes the buffers
    for (int64_t i = 0; i < options.repetitions; ++i) {
      if (options.between_repetitions) options.between_repetitions(r.test);
      r.tokens_per_second.push_back(n / time_fn(model, depth_tokens, tokens));
    }
    if (options.between_repetitions) options.between_repetitions(r.test);
    results.push_back(std::move(r));
  };
  if (options.n_prompt > 0) run(fmt::format("pp{}", options.n_prompt), options.n_prompt, TimePrompt);
  if (options.n_gen > 0) run(fmt::format("tg{}", options.n_gen), options.n_gen, TimeGeneration);
  return results;
}

GenerationBound BoundOfGeneration(const SpeedTestResult& test, const std::vector<double>& probes_gbs,
                                  int64_t weight_bytes_per_token) {
  if (probes_gbs.size() != test.tokens_per_second.size() + 1 || weight_bytes_per_token <= 0) {
    Fail("{}: {} bandwidth probes for {} repetitions and {} weight bytes a token (want one probe more than the "
         "repetitions, and some bytes)",
         test.test, probes_gbs.size(), test.tokens_per_second.size(), weight_bytes_per_token);
  }
  const auto tps_at = [&](double gbs) { return gbs * 1e9 / static_cast<double>(weight_bytes_per_token); };
  GenerationBound b;
  b.probes_gbs = probes_gbs;
  b.bound_tps = tps_at(*std::max_element(probes_gbs.begin(), probes_gbs.end()));
  b.fraction = test.mean() / b.bound_tps;
  for (size_t i = 0; i < test.tokens_per_second.size(); ++i) {
    b.fraction_per_rep.push_back(test.tokens_per_second[i] / tps_at(std::max(probes_gbs[i], probes_gbs[i + 1])));
  }
  std::vector<double> sorted = b.fraction_per_rep;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  b.median_fraction_per_rep = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  return b;
}

int64_t WeightBytesPerToken(const Model& model) {
  int64_t bytes = 0;
  for (const std::span<const std::byte> span : DecodeReadSpans(model)) bytes += static_cast<int64_t>(span.size());
  return bytes;
}

TokenReadTimes TimeTokensAgainstRead(const Model& model, const SpeedBenchOptions& options) {
  const int64_t context = model.config.context_length;
  if (options.n_gen < 1 || options.n_depth < 0) Fail("-n must be >= 1 and -d >= 0 to time tokens against reads");
  if (options.n_depth + options.n_gen + 1 > context) {
    Fail("-d {} plus -n {} plus one warm-up token exceed the model's context of {}", options.n_depth, options.n_gen,
         context);
  }
  std::mt19937_64 rng(options.seed);
  const std::vector<int32_t> depth_tokens = RandomTokens(options.n_depth, model.config.vocab_size, rng);
  const std::vector<int32_t> tokens = RandomTokens(options.n_gen + 1, model.config.vocab_size, rng);
  const std::vector<std::span<const std::byte>> spans = DecodeReadSpans(model);
  // One pass over every matrix, each read by all threads as the decode kernels read it: one parallel
  // region a matrix, as the decode step has about one a matrix too.
  const auto time_read = [&] {
    double seconds = 0.0;
    for (const std::span<const std::byte> span : spans) seconds += TimeReadPass(span.data(), span.size());
    return seconds;
  };
  InferenceState state = StateAtDepth(model, depth_tokens, options.n_gen + 1, options.n_depth);
  // Warm-up, untimed: one token and one read pages everything in and sizes the buffers.
  Forward(model, state, std::span<const int32_t>(tokens.data(), 1), options.n_depth, false);
  TokenReadTimes times;
  times.bytes_read = WeightBytesPerToken(model);
  times.read_seconds.push_back(time_read());
  for (int64_t i = 1; i <= options.n_gen; ++i) {
    Timer timer;
    Forward(model, state, std::span<const int32_t>(&tokens[static_cast<size_t>(i)], 1), options.n_depth + i, false);
    times.token_seconds.push_back(timer.ElapsedSeconds());
    times.read_seconds.push_back(time_read());
  }
  return times;
}

TokenBound BoundTokenByToken(const TokenReadTimes& times) {
  const size_t n = times.token_seconds.size();
  if (n == 0 || times.read_seconds.size() != n + 1 || times.bytes_read <= 0) {
    Fail("{} token times, {} read times and {} bytes a read (want a token, one read more than tokens, and some "
         "bytes)",
         n, times.read_seconds.size(), times.bytes_read);
  }
  TokenBound b;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) {
    const double read = std::min(times.read_seconds[i], times.read_seconds[i + 1]);
    if (!(read > 0.0) || !(times.token_seconds[i] > 0.0)) Fail("token {}: a time that is not positive", i);
    b.fraction.push_back(read / times.token_seconds[i]);
    b.read_gbs.push_back(static_cast<double>(times.bytes_read) / read / 1e9);
    order[i] = i;
  }
  const auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    const double at = q * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(at);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
  };
  b.median = quantile(b.fraction, 0.5);
  b.p10 = quantile(b.fraction, 0.1);
  b.p90 = quantile(b.fraction, 0.9);
  // The quarter of tokens read fastest: the ones whose memory was fastest, where a kernel that cannot
  // keep up with the memory falls furthest behind.
  std::sort(order.begin(), order.end(), [&](size_t a, size_t c) { return b.read_gbs[a] > b.read_gbs[c]; });
  std::vector<double> fastest;
  for (size_t k = 0; k < std::max<size_t>(1, n / 4); ++k) fastest.push_back(b.fraction[order[k]]);
  b.fastest_quarter_tokens = static_cast<int64_t>(fastest.size());
  b.fastest_quarter_median = quantile(fastest, 0.5);
  b.fastest_quarter_min_gbs = b.read_gbs[order[fastest.size() - 1]];
  return b;
}

}  // namespace mixq
