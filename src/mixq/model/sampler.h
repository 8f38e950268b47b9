// Next-token sampling: greedy at temperature 0, otherwise temperature + nucleus (top-p), seeded.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace mixq {

struct SamplerOptions {
  float temperature = 0.8f;  // 0 = greedy (argmax)
  float top_p = 0.95f;       // 1 = no nucleus cut
  uint64_t seed = 42;
};

struct Sampler {
  SamplerOptions options;
  std::mt19937_64 rng;
  std::vector<std::pair<float, int32_t>> candidates;  // scratch: (probability, token)
};

// Throws mixq::Error for an option outside its range (temperature < 0, top_p outside (0, 1]).
Sampler MakeSampler(const SamplerOptions& options);

// Chooses a token from one row of logits; the logits are not modified.
int32_t SampleToken(Sampler& sampler, std::span<const float> logits);

}  // namespace mixq
