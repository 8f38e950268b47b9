// RMSNorm, softmax, log-sum-exp and SwiGLU.
#include "mixq/kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "mixq/base/check.h"
#include "mixq/base/error.h"

namespace mixq {

void RmsNorm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  // Sum of squares in double: the same as llama.cpp's ggml_vec_norm (ggml_float accumulation).
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum_squares / n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void Softmax(float* x, int64_t n) {
  const float max_value = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void SwiGlu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

double LogSumExp(std::span<const float> logits) {
  MIXQ_CHECK(!logits.empty());
  float max_logit = logits[0];
  for (float v : logits) max_logit = v > max_logit ? v : max_logit;
  // exp in double, not llama.cpp's expf: a normalizer off by e shifts every position's KLD by about e,
  // and expf's 1e-7 would drown the KLD of a near-lossless conversion (F16 vs F32 is ~1e-6).
  double sum_exp = 0.0;
  for (float v : logits) sum_exp += std::exp(static_cast<double>(v) - max_logit);
  if (!std::isfinite(max_logit) || !std::isfinite(sum_exp)) {
    Fail("the model produced non-finite logits (max {}, sum of exp {}); it cannot be compared", max_logit,
         sum_exp);
  }
  return max_logit + std::log(sum_exp);
}

}  // namespace mixq
