// One transformer block's weights as owned FP32 tensors: the working copy that layer-by-layer methods
// (AWQ's scaling and folding, GPTQ's error feedback) modify before the block is quantized.
#pragma once

#include <cstdint>

#include "mixq/model/config.h"
#include "mixq/model/forward.h"
#include "mixq/model/weights.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

struct LayerFloat {
  Tensor attn_norm;  // [dim]
  Tensor wq, wk, wv, wo;
  Tensor ffn_norm;  // [dim]
  Tensor w_gate, w_down, w_up;

  Tensor& linear(LinearKind kind);
  const Tensor& linear(LinearKind kind) const;
  // Views of these tensors in the shape ForwardLayer runs (valid while this struct lives, unmoved).
  LayerWeights views() const;
};

// Reads every tensor of `layer` (any stored type mixq can read as float) into owned FP32 copies.
LayerFloat CopyLayerToFloat(const LayerWeights& layer);

}  // namespace mixq
