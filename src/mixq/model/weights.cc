// The visitor over LLaMA weight tensors.
#include "mixq/model/weights.h"

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/quant_kernel.h"

namespace mixq {

void ForEachTensor(const LlamaConfig& c, LlamaWeights& w, const std::function<void(TensorSlot&)>& fn) {
  auto visit = [&](std::string name, Shape shape, TensorRole role, TensorView& view) {
    TensorSlot slot{std::move(name), std::move(shape), role, &view};
    fn(slot);
  };
  visit("token_embd.weight", {c.vocab_size, c.dim}, TensorRole::kEmbedding, w.token_embd);
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    const std::string blk = fmt::format("blk.{}.", i);
    visit(blk + "attn_norm.weight", {c.dim}, TensorRole::kNorm, l.attn_norm);
    visit(blk + "attn_q.weight", {c.q_dim(), c.dim}, TensorRole::kLinear, l.wq);
    visit(blk + "attn_k.weight", {c.kv_dim(), c.dim}, TensorRole::kLinear, l.wk);
    visit(blk + "attn_v.weight", {c.kv_dim(), c.dim}, TensorRole::kLinear, l.wv);
    visit(blk + "attn_output.weight", {c.dim, c.q_dim()}, TensorRole::kLinear, l.wo);
    visit(blk + "ffn_norm.weight", {c.dim}, TensorRole::kNorm, l.ffn_norm);
    visit(blk + "ffn_gate.weight", {c.hidden_dim, c.dim}, TensorRole::kLinear, l.w_gate);
    visit(blk + "ffn_down.weight", {c.dim, c.hidden_dim}, TensorRole::kLinear, l.w_down);
    visit(blk + "ffn_up.weight", {c.hidden_dim, c.dim}, TensorRole::kLinear, l.w_up);
  }
  visit("output_norm.weight", {c.dim}, TensorRole::kNorm, w.output_norm);
  if (!c.tied_embeddings) visit("output.weight", {c.vocab_size, c.dim}, TensorRole::kOutput, w.output);
}

void ForEachTensor(const LlamaConfig& c, const LlamaWeights& w, const std::function<void(const TensorSlot&)>& fn) {
  ForEachTensor(c, const_cast<LlamaWeights&>(w), [&](TensorSlot& slot) { fn(slot); });
}

void ValidateTensor(const TensorSlot& slot, const std::string& source) {
  const TensorView& t = *slot.view;
  if (t.empty()) Fail("{}: tensor '{}' is missing", source, slot.name);
  if (t.shape != slot.shape) {
    Fail("{}: tensor '{}' has shape {}, expected {} from the model's hyper-parameters", source, slot.name,
         ShapeString(t.shape), ShapeString(slot.shape));
  }
  if (!HasMatMulKernel(t.dtype)) {
    Fail("{}: tensor '{}' has type {}, which this build of mixq cannot run (supported: F32, F16, BF16, {})", source,
         slot.name, DTypeName(t.dtype), QuantKernelTypeNames());
  }
  if (slot.role == TensorRole::kNorm && t.dtype != DType::kF32) {
    Fail("{}: norm tensor '{}' has type {}, expected F32", source, slot.name, DTypeName(t.dtype));
  }
  const auto expected_bytes = TensorBytes(t.dtype, t.shape, t.group);
  if (!expected_bytes || *expected_bytes != t.bytes) {
    Fail("{}: tensor '{}' holds {} bytes, expected {} for {} {}", source, slot.name, t.bytes,
         expected_bytes.value_or(0), DTypeName(t.dtype), ShapeString(t.shape));
  }
}

}  // namespace mixq
