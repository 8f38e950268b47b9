// Quantizing a whole model into a GGUF file: each tensor's format from the policy, round-to-nearest with
// each format's own scale search, a per-tensor report of bytes and error, written atomically.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mixq/formats/weight_format.h"
#include "mixq/model/model.h"
#include "mixq/quant/calibration.h"
#include "mixq/quant/awq.h"
#include "mixq/quant/gptq.h"
#include "mixq/quant/policy.h"
#include "mixq/quant/salient.h"

namespace mixq {

// Quantizes a [rows, cols] float matrix into `format` at dst (TensorBytes(format.dtype, {rows, cols},
// format.group) bytes), rows in parallel. `importance` (cols values, may be null) weights the error each
// format's scale search minimises (imatrix). The one dispatch over ggml's, mixq's INT and the float types.
// salient: optional [rows, cols] mask of weights kept in a sparse FP16 part (quant/salient.h); mixq INT
// formats only (QuantizeIntMatrix's exclude: stored as exact zeros, left out of the scale search).
void QuantizeMatrix(const WeightFormat& format, const float* src, int64_t rows, int64_t cols, std::byte* dst,
                    const float* importance = nullptr, const uint8_t* salient = nullptr);

// sum_ij imp_j (W_ij - Q_ij)^2 / sum_ij imp_j W_ij^2 (imp_j = 1 without importance; the plain sum when W is
// all zero), with Q read back from the stored tensor `q` through the reference dequantizers, so it
// measures what a file holds. `w` is the float original, [q.rows(), q.cols()].
double RelativeSquaredError(const TensorView& q, const float* w, const float* importance = nullptr);

// sum (W - Q)^2 / sum W^2 over n floats (the plain sum when W is all zero): the same measure from a float
// reconstruction, e.g. dense + sparse.
double RelativeSquaredErrorFloat(const float* q, const float* w, int64_t n);

// The format actually used for rows of `cols` weights when `wanted` cannot hold them: llama.cpp's
// fallbacks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS -> IQ4_NL), then F16.
WeightFormat FallbackFormat(const WeightFormat& wanted, int64_t cols);

// How weights are rounded: rtn (each format's own scale search), imatrix (the search weighted by each input
// channel's mean squared activation from a statistics file), awq and gptq (layer by layer on calibration
// windows, docs/calibration.md), awq+gptq (AWQ's scales, then GPTQ).
enum class QuantMethod { kRtn, kImatrix, kAwq, kGptq, kAwqGptq };
std::optional<QuantMethod> ParseQuantMethod(std::string_view name);
const char* QuantMethodName(QuantMethod method);

struct QuantizeOptions {
  QuantPolicy policy;
  std::optional<WeightFormat> type;  // --type: the format of tensors no rule or default names
  bool strict = false;               // a format that cannot hold a tensor is an error, not a fallback
  QuantMethod method = QuantMethod::kRtn;
  const CalibrationStats* calib = nullptr;  // --calib: the importances kImatrix weights by
  // kAwq / kGptq / kAwqGptq: the calibration windows the blocks are quantized on, layer by layer
  // (quant/layerwise.h); embeddings and head then use kImatrix when `calib` is given, else RTN.
  std::vector<std::vector<int32_t>> windows;
  GptqOptions gptq;
  AwqOptions awq;
  // --salient / --salient-by / --salient-scope: a sparse FP16 part beside every block linear quantized into
  // a mixq INT format (docs/salient.md). magnitude works with any method; activation reads --calib (rtn,
  // imatrix) or the layer-by-layer pass's own inputs (awq, gptq); impact needs `windows` (with rtn or
  // imatrix, the blocks are then quantized layer by layer too, so each layer's Hessian is taken on
  // inputs from the blocks before it as stored).
  SalientOptions salient;
};

struct TensorQuantReport {
  std::string name;
  Shape shape;
  DType from = DType::kF32;
  std::string format;     // what the tensor was written as ("q4_k", "int4-g128", "F32 (kept)")
  std::string reason;     // the policy line that chose it, and any fallback
  std::string method;     // how it was rounded: "rtn", "imatrix", ...; empty for kept tensors
  size_t bytes = 0;
  double bits_per_weight = 0.0;
  double relative_rmse = 0.0;  // ||W - Q(W)|| / ||W|| over the tensor (dense + sparse); 0 for kept tensors
  int64_t salient_nnz = 0;     // weights kept in the sparse FP16 part
  size_t salient_bytes = 0;    // its bytes, included in `bytes` and `bits_per_weight`
  // W8A8 (docs/w8a8.md): how MatMul quantizes the tensor's input ("int8-tensor", "int8-token"; empty:
  // as the weight format's kernel does) and the static scale of int8-tensor.
  std::string activation;
  float activation_scale = 0.0f;
};

struct QuantizeReport {
  std::vector<TensorQuantReport> tensors;
  ModelSize input;
  ModelSize output;
  double seconds = 0.0;
};

// Writes `model` quantized per `options` to `out_path` (GGUF, atomically; refuses to write over its
// input). Throws mixq::Error naming the tensor or file on failure; nothing is left at out_path then.
QuantizeReport QuantizeModel(const Model& model, const std::string& out_path, const QuantizeOptions& options);

}  // namespace mixq
