// LLaMA-family hyper-parameters: validation and derived values.
#include "mixq/model/config.h"

#include <cmath>
#include <numbers>

#include "mixq/base/error.h"

namespace mixq {

std::vector<float> Llama3RopeFreqFactors(int64_t head_dim, float rope_theta, float factor, float low_freq_factor,
                                         float high_freq_factor, int64_t original_context) {
  // Same rule as Meta's apply_scaling and llama.cpp's convert_hf_to_gguf: long wavelengths are divided
  // by `factor`, short ones kept, and the band between is interpolated smoothly.
  const double low_freq_wavelen = static_cast<double>(original_context) / low_freq_factor;
  const double high_freq_wavelen = static_cast<double>(original_context) / high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(rope_theta), static_cast<double>(i) / head_dim);
    const double wavelen = 2.0 * std::numbers::pi / freq;
    if (wavelen < high_freq_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_freq_wavelen) {
      factors.push_back(factor);
    } else {
      const double smooth =
          (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / factor + smooth)));
    }
  }
  return factors;
}

void ValidateConfig(const LlamaConfig& c, const std::string& source) {
  constexpr int64_t kMaxDim = 1 << 20;
  auto require_range = [&](const char* what, int64_t value, int64_t lo, int64_t hi) {
    if (value < lo || value > hi) Fail("{}: {} is {}, expected {}..{}", source, what, value, lo, hi);
  };
  require_range("dim", c.dim, 1, kMaxDim);
  require_range("hidden_dim", c.hidden_dim, 1, 8 * kMaxDim);
  require_range("n_layers", c.n_layers, 1, 4096);
  require_range("n_heads", c.n_heads, 1, 4096);
  require_range("n_kv_heads", c.n_kv_heads, 1, c.n_heads);
  require_range("head_dim", c.head_dim, 2, 4096);
  require_range("vocab_size", c.vocab_size, 1, 1 << 24);
  require_range("context_length", c.context_length, 1, 1 << 24);
  if (c.n_heads % c.n_kv_heads != 0) {
    Fail("{}: n_heads {} is not a multiple of n_kv_heads {}", source, c.n_heads, c.n_kv_heads);
  }
  if (c.head_dim % 2 != 0) Fail("{}: head_dim {} must be even for RoPE", source, c.head_dim);
  if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rms_eps)) Fail("{}: rms eps {} must be positive", source, c.rms_eps);
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    Fail("{}: rope theta {} must be positive", source, c.rope_theta);
  }
  if (!c.rope_freq_factors.empty() && static_cast<int64_t>(c.rope_freq_factors.size()) != c.head_dim / 2) {
    Fail("{}: {} rope frequency factors, expected head_dim/2 = {}", source, c.rope_freq_factors.size(),
         c.head_dim / 2);
  }
}

}  // namespace mixq
