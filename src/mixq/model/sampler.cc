// Next-token sampling.
#include "mixq/model/sampler.h"

#include <algorithm>
#include <cmath>

#include "mixq/base/error.h"

namespace mixq {

Sampler MakeSampler(const SamplerOptions& options) {
  if (!(options.temperature >= 0.0f) || !std::isfinite(options.temperature)) {
    Fail("--temp {} is out of range: expected a temperature >= 0 (0 = greedy)", options.temperature);
  }
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f)) {
    Fail("--top-p {} is out of range: expected 0 < top-p <= 1", options.top_p);
  }
  return Sampler{options, std::mt19937_64(options.seed), {}};
}

int32_t SampleToken(Sampler& s, std::span<const float> logits) {
  const auto argmax = std::max_element(logits.begin(), logits.end());
  if (s.options.temperature == 0.0f) return static_cast<int32_t>(argmax - logits.begin());
  // Softmax at temperature T, then keep the smallest set of most likely tokens whose mass reaches top_p.
  const float max_logit = *argmax;
  s.candidates.clear();
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float p = std::exp((logits[i] - max_logit) / s.options.temperature);
    s.candidates.emplace_back(p, static_cast<int32_t>(i));
    total += p;
  }
  // The nucleus is usually a few dozen tokens: sort only the most likely k, growing k until the sorted
  // prefix holds top_p of the mass, instead of sorting the whole vocabulary for every token.
  auto more_likely = [](const auto& a, const auto& b) { return a.first > b.first; };
  size_t keep = s.candidates.size();
  for (size_t k = std::min<size_t>(64, s.candidates.size());; k = std::min(4 * k, s.candidates.size())) {
    std::partial_sort(s.candidates.begin(), s.candidates.begin() + static_cast<std::ptrdiff_t>(k),
                      s.candidates.end(), more_likely);
    double mass = 0.0;
    size_t reached = 0;
    for (size_t i = 0; i < k && reached == 0; ++i) {
      mass += s.candidates[i].first / total;
      if (mass >= s.options.top_p) reached = i + 1;
    }
    if (reached > 0) {
      keep = reached;
      break;
    }
    if (k == s.candidates.size()) break;  // rounding kept the mass just under top_p: keep all
  }
  double kept_mass = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_mass += s.candidates[i].first;
  const double r = std::uniform_real_distribution<double>(0.0, kept_mass)(s.rng);
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += s.candidates[i].first;
    if (r < acc) return s.candidates[i].second;
  }
  return s.candidates[keep - 1].second;
}

}  // namespace mixq
