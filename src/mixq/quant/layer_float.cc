// One transformer block's weights as owned FP32 tensors.
#include "mixq/quant/layer_float.h"

#include "mixq/base/check.h"
#include "mixq/formats/convert.h"

namespace mixq {

Tensor& LayerFloat::linear(LinearKind kind) {
  return const_cast<Tensor&>(static_cast<const LayerFloat*>(this)->linear(kind));
}

const Tensor& LayerFloat::linear(LinearKind kind) const {
  switch (kind) {
    case LinearKind::kQ: return wq;
    case LinearKind::kK: return wk;
    case LinearKind::kV: return wv;
    case LinearKind::kO: return wo;
    case LinearKind::kGate: return w_gate;
    case LinearKind::kUp: return w_up;
    case LinearKind::kDown: return w_down;
    case LinearKind::kOutput: break;  // the head is not part of a block
  }
  MIXQ_CHECK(false);
  return wq;
}

LayerWeights LayerFloat::views() const {
  LayerWeights w;
  w.attn_norm = attn_norm.view();
  w.wq = wq.view();
  w.wk = wk.view();
  w.wv = wv.view();
  w.wo = wo.view();
  w.ffn_norm = ffn_norm.view();
  w.w_gate = w_gate.view();
  w.w_down = w_down.view();
  w.w_up = w_up.view();
  return w;
}

namespace {

Tensor ToFloat(const TensorView& v) {
  MIXQ_CHECK(CanReadAsFloat(v.dtype));
  Tensor t = Tensor::Zeros(v.name, DType::kF32, v.shape);
  TensorToFloat(v, t.as<float>());
  return t;
}

}  // namespace

LayerFloat CopyLayerToFloat(const LayerWeights& layer) {
  LayerFloat f;
  f.attn_norm = ToFloat(layer.attn_norm);
  f.wq = ToFloat(layer.wq);
  f.wk = ToFloat(layer.wk);
  f.wv = ToFloat(layer.wv);
  f.wo = ToFloat(layer.wo);
  f.ffn_norm = ToFloat(layer.ffn_norm);
  f.w_gate = ToFloat(layer.w_gate);
  f.w_down = ToFloat(layer.w_down);
  f.w_up = ToFloat(layer.w_up);
  return f;
}

}  // namespace mixq
