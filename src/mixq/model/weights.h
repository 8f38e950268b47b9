// The LLaMA weight tensors, and the one visitor over them that drives loading, converting and reporting.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mixq/model/config.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

struct LayerWeights {
  TensorView attn_norm;  // [dim] F32
  TensorView wq;         // [n_heads * head_dim, dim]
  TensorView wk;         // [n_kv_heads * head_dim, dim]
  TensorView wv;         // [n_kv_heads * head_dim, dim]
  TensorView wo;         // [dim, n_heads * head_dim]
  TensorView ffn_norm;   // [dim] F32
  TensorView w_gate;     // [hidden_dim, dim]   (llama2.c w1, HF gate_proj)
  TensorView w_down;     // [dim, hidden_dim]   (llama2.c w2, HF down_proj)
  TensorView w_up;       // [hidden_dim, dim]   (llama2.c w3, HF up_proj)
};

struct LlamaWeights {
  TensorView token_embd;   // [vocab_size, dim]
  std::vector<LayerWeights> layers;
  TensorView output_norm;  // [dim] F32
  TensorView output;       // [vocab_size, dim]; the same view as token_embd when embeddings are tied

  // The head actually used for logits.
  const TensorView& head() const { return output.empty() ? token_embd : output; }
};

// Whether a tensor is a norm weight: norms stay F32 whatever the weights' type.
enum class TensorRole { kEmbedding, kNorm, kLinear, kOutput };

struct TensorSlot {
  std::string name;  // llama.cpp's GGUF name, e.g. "blk.3.ffn_down.weight"
  Shape shape;       // expected row-major shape from the config
  TensorRole role;
  TensorView* view;
};

// Visits every tensor the model needs, in GGUF order; the tied output head is not visited.
void ForEachTensor(const LlamaConfig& config, LlamaWeights& weights, const std::function<void(TensorSlot&)>& fn);

// Read-only variant for reporting and writing.
void ForEachTensor(const LlamaConfig& config, const LlamaWeights& weights,
                   const std::function<void(const TensorSlot&)>& fn);

// Throws mixq::Error naming the tensor if its shape is not what the config says, its dtype has no
// kernel, or its byte size does not match the shape.
void ValidateTensor(const TensorSlot& slot, const std::string& source);

}  // namespace mixq
