// The element-wise and per-row operations of the LLaMA block: RMSNorm, RoPE, softmax, SwiGLU.
#pragma once

#include <cstdint>

namespace mixq {

// out = x / sqrt(mean(x^2) + eps) * weight, over n values.
void RmsNorm(const float* x, const float* weight, float* out, int64_t n, float eps);

// In-place softmax over n values (max-subtracted, float accumulation as llama.cpp's CPU backend).
void Softmax(float* x, int64_t n);

// gate[i] = silu(gate[i]) * up[i].
void SwiGlu(float* gate, const float* up, int64_t n);

}  // namespace mixq
