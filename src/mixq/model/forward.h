// The exact FP32 LLaMA forward pass: RMSNorm, RoPE, grouped-query attention over a KV cache, SwiGLU.
// Prompts run as batches through GEMM; single tokens (decode) through GEMV.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "mixq/base/aligned_buffer.h"
#include "mixq/model/kv_cache.h"
#include "mixq/model/model.h"

namespace mixq {

// The seven linear layers of a block, then the output head (reported with layer -1).
enum class LinearKind { kQ, kK, kV, kO, kGate, kUp, kDown, kOutput };
inline constexpr int kLinearKinds = 7;  // per block
const char* LinearKindName(LinearKind kind);  // llama.cpp's tensor suffix: "attn_q", "ffn_down", "output"
// The block's view of one linear's weight (kOutput is not a block's).
TensorView& LinearWeight(LayerWeights& layer, LinearKind kind);
const TensorView& LinearWeight(const LayerWeights& layer, LinearKind kind);
// The GGUF name of the weight: "blk.3.attn_q.weight", or "output.weight" for the head.
std::string LinearWeightName(int64_t layer, LinearKind kind);

// One linear layer as the forward pass runs it: what calibration observes. `input` is [n_tokens, in_dim]
// and `output` [n_tokens, out_dim], both float, valid only during the call.
struct LinearCall {
  int64_t layer = 0;
  LinearKind kind = LinearKind::kQ;
  const TensorView* weight = nullptr;
  const float* input = nullptr;
  const float* output = nullptr;
  int64_t n_tokens = 0;
  int64_t in_dim = 0;
  int64_t out_dim = 0;
};
using LinearObserver = std::function<void(const LinearCall&)>;

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
  AlignedBuffer scores;    // [threads, kAttentionQueries, capacity] attention weights
  AlignedBuffer logits;    // [n_logit_rows, vocab]: grows to what a call asks for
  LinearObserver observer; // when set, called after every linear layer of every block and the head
};

// `context` positions of KV cache; prompts are processed `max_batch` tokens at a time.
InferenceState MakeInferenceState(const LlamaConfig& config, int64_t context, int64_t max_batch = 512);

// Runs `tokens` at positions pos0, pos0 + 1, ... (appending to the KV cache) and returns their logits:
// [tokens.size(), vocab] when `all_logits`, else only the last token's [vocab]. The pointer stays valid
// until the next call. Aborts on a token id out of range or a position past the cache (callers check).
const float* Forward(const Model& model, InferenceState& state, std::span<const int32_t> tokens, int64_t pos0,
                     bool all_logits);
// The same on explicit weights: callers that try out modified tensors (calibration, sensitivity) pass a
// copy of the views with some replaced.
const float* Forward(const LlamaConfig& config, const LlamaWeights& weights, InferenceState& state,
                     std::span<const int32_t> tokens, int64_t pos0, bool all_logits);

// The pieces Forward is made of, for running a model block by block (layer-sequential calibration).
// Writes the embeddings of `tokens` to state.x ([n, dim]); at most state.max_batch tokens.
void EmbedTokens(const LlamaConfig& config, const LlamaWeights& weights, InferenceState& state,
                 std::span<const int32_t> tokens);
// Fills state.rope_cos/rope_sin with the angles of positions pos0 .. pos0 + n - 1 (n <= max_batch).
void PrepareRope(const LlamaConfig& config, InferenceState& state, int64_t pos0, int64_t n);
// Runs block `layer` (weights `lw`) on the residual stream state.x[0..n) in place, at positions pos0..
// whose angles PrepareRope computed, appending keys and values to the cache at `cache_layer` (a state
// made for a one-layer config runs any block with cache_layer 0).
// With `stop_after`, returns right after that linear has run (and been observed): calibration passes that
// only need one linear's input skip the rest of the block. state.x then holds a half-updated stream (the
// attention residual is added before the FFN), so such a pass must start the next from its own copy.
void ForwardLayer(const LlamaConfig& config, const LayerWeights& lw, int64_t layer, InferenceState& state,
                  int64_t cache_layer, int64_t n, int64_t pos0,
                  std::optional<LinearKind> stop_after = std::nullopt);

}  // namespace mixq
