// The exact FP32 LLaMA forward pass: RMSNorm, RoPE, grouped-query attention over a KV cache, SwiGLU.
// Prompts run as batches through GEMM; single tokens (decode) through GEMV.
#pragma once

#include <cstdint>
#include <span>

#include "mixq/base/aligned_buffer.h"
#include "mixq/model/kv_cache.h"
#include "mixq/model/model.h"

namespace mixq {

// Everything one sequence needs between calls: its KV cache and the scratch activations of a batch.
struct InferenceState {
  KvCache cache;
  int64_t max_batch = 0;
  AlignedBuffer x;         // [max_batch, dim] residual stream
  AlignedBuffer xn;        // [max_batch, dim] normed input of a block
  AlignedBuffer q;         // [max_batch, q_dim]
  AlignedBuffer k;         // [max_batch, kv_dim]
  AlignedBuffer v;         // [max_batch, kv_dim]
  AlignedBuffer attn;      // [max_batch, q_dim] attention output before wo
  AlignedBuffer proj;      // [max_batch, dim] output of wo / w_down
  AlignedBuffer gate;      // [max_batch, hidden_dim]
  AlignedBuffer up;        // [max_batch, hidden_dim]
  AlignedBuffer rope_cos;  // [max_batch, head_dim / 2] RoPE angles of the batch's positions
  AlignedBuffer rope_sin;  // [max_batch, head_dim / 2]
  AlignedBuffer scores;    // [threads, capacity] attention weights
  AlignedBuffer logits;    // [n_logit_rows, vocab]: grows to what a call asks for
};

// `context` positions of KV cache; prompts are processed `max_batch` tokens at a time.
InferenceState MakeInferenceState(const LlamaConfig& config, int64_t context, int64_t max_batch = 512);

// Runs `tokens` at positions pos0, pos0 + 1, ... (appending to the KV cache) and returns their logits:
// [tokens.size(), vocab] when `all_logits`, else only the last token's [vocab]. The pointer stays valid
// until the next call. Aborts on a token id out of range or a position past the cache (callers check).
const float* Forward(const Model& model, InferenceState& state, std::span<const int32_t> tokens, int64_t pos0,
                     bool all_logits);

}  // namespace mixq
