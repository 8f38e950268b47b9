// Layer-by-layer quantization on calibration windows, as AutoAWQ and GPTQ run: block i is calibrated on
// the outputs of blocks 0..i-1 already quantized, so each block corrects for the error before it.
//
// Per block: the FP32 weights are copied (LayerFloat); AWQ (if asked) searches and folds its scales; the
// linears are then quantized in AutoGPTQ's "true sequential" order -- {q, k, v}, {o}, {gate, up}, {down} --
// each group's input Hessian taken with the groups before it already quantized; GPTQ for mixq's INT
// formats, imatrix-weighted RTN from the same inputs for ggml's types (GPTQ does not yet write those), RTN
// for AWQ alone. The calibration stream is then run through the quantized block for the next one.
// Memory: the windows' residual stream (samples x ctx x dim floats), one block in FP32, and one Hessian.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mixq/formats/weight_format.h"
#include "mixq/model/model.h"
#include "mixq/quant/awq.h"
#include "mixq/quant/gptq.h"
#include "mixq/quant/salient.h"

namespace mixq {

struct LayerwiseOptions {
  bool awq = false;
  bool gptq = false;
  std::vector<std::vector<int32_t>> windows;  // calibration windows, all of one length
  GptqOptions gptq_options;
  AwqOptions awq_options;
  bool progress = true;

  // Salient weights (quant/salient.h) of every INT-quantized linear, selected on the weights the dense part
  // quantizes (after AWQ's scaling) with the statistics of this pass: activation from the group's observed
  // inputs, impact from the group's Hessian (accumulated for it even without GPTQ). AWQ's clip search is
  // skipped then: it would shrink the very weights the sparse part keeps. docs/salient.md.
  SalientOptions salient;
  // Without GPTQ, the RTN of a tensor named here is weighted by this per-input-channel importance (the
  // imatrix of --calib), as --method imatrix does outside the layer-by-layer pass.
  std::map<std::string, std::vector<float>> rtn_importance;
};

// A tensor a layer-by-layer method produced, ready for the GGUF writer.
struct ProducedTensor {
  WeightFormat format;          // F32 for norms AWQ rescaled
  std::vector<std::byte> bytes;
  std::string method;           // "gptq", "awq", "awq+gptq", "imatrix", "awq+imatrix", "rtn"
  double relative_rmse = 0.0;   // ||W' - Q(W')|| / ||W'|| of the weights actually rounded (W' = W after AWQ)
  std::string note;             // e.g. GPTQ's raised damping, AWQ's chosen alpha
  // The sparse FP16 part when options.salient is on (empty selection otherwise): relative_rmse counts it.
  SalientSelection salient;
  std::vector<uint16_t> salient_values;  // [salient.nnz()] FP16 bits, CSR order
};

struct LayerwiseResult {
  std::map<std::string, ProducedTensor> tensors;  // by GGUF name
  double seconds = 0.0;
};

// Quantizes every block's linear weights whose entry in `formats` (by GGUF name) holds a format; entries
// that are nullopt or absent stay as stored (and are run as such) -- except that with AWQ a kept linear
// whose group was rescaled, and the rescaled norms, are produced again in their stored type.
// Throws mixq::Error naming the tensor.
LayerwiseResult QuantizeLayerwise(const Model& model, const std::map<std::string, std::optional<WeightFormat>>& formats,
                                  const LayerwiseOptions& options);

}  // namespace mixq
