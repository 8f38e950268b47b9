// llama-bench-style speed measurement.
#include "mixq/eval/speed_bench.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/timer.h"
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
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    if (slot.role == TensorRole::kLinear || slot.role == TensorRole::kOutput) bytes += slot.view->bytes;
  });
  if (model.config.tied_embeddings) bytes += model.weights.token_embd.bytes;  // the head reads it all
  return bytes;
}

}  // namespace mixq
