// The element-wise and per-row operations of the LLaMA block: RMSNorm, RoPE, softmax, SwiGLU.
#pragma once

#include <cstdint>
#include <span>

namespace mixq {

// out = x / sqrt(mean(x^2) + eps) * weight, over n values.
void RmsNorm(const float* x, const float* weight, float* out, int64_t n, float eps);

// In-place softmax over n values (max-subtracted, float accumulation as llama.cpp's CPU backend).
void Softmax(float* x, int64_t n);

// log sum_i exp(logits_i), shifted by the max and summed in double: log p_i is then logits_i minus this,
// taken in double, so the float logits are never rounded again and identical logits give identical
// distributions (a KL divergence of exactly 0). Throws mixq::Error if the logits are not finite (a broken
// model). The one normalizer of `mixq kld` and `--target-bpw`'s sensitivity.
double LogSumExp(std::span<const float> logits);

// gate[i] = silu(gate[i]) * up[i].
void SwiGlu(float* gate, const float* up, int64_t n);

}  // namespace mixq
