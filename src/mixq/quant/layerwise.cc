// Layer-by-layer quantization: AWQ, then GPTQ or RTN per group of linears, block after block.
#include "mixq/quant/layerwise.h"

#include <array>
#include <cmath>
#include <cstring>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/progress.h"
#include "mixq/base/timer.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/convert.h"
#include "mixq/model/forward.h"
#include "mixq/quant/layer_float.h"
#include "mixq/quant/quantize_model.h"

namespace mixq {
namespace {

// Runs the block over every window's residual stream; `advance` writes the outputs back (the next block's
// inputs), otherwise the streams are left as they were (a pass only for the observer).
// Runs the block over every window's residual stream. With `stop_after` (an observation pass) the block
// stops after that linear and the streams are unchanged; without, the outputs replace the streams (the
// next block's inputs).
void RunBlock(const LlamaConfig& c, const LayerWeights& w, int64_t layer, InferenceState& s,
              std::vector<std::vector<float>>& streams, int64_t ctx, std::optional<LinearKind> stop_after) {
  for (std::vector<float>& x : streams) {
    std::memcpy(s.x.as<float>(), x.data(), x.size() * sizeof(float));
    PrepareRope(c, s, 0, ctx);
    ForwardLayer(c, w, layer, s, 0, ctx, 0, stop_after);
    if (!stop_after) std::memcpy(x.data(), s.x.as<float>(), x.size() * sizeof(float));
  }
}

}  // namespace

LayerwiseResult QuantizeLayerwise(const Model& model, const std::map<std::string, std::optional<WeightFormat>>& formats,
                                  const LayerwiseOptions& options) {
  Timer timer;
  const LlamaConfig& c = model.config;
  if (options.windows.empty()) Fail("layer-by-layer quantization needs calibration windows (--data)");
  const int64_t ctx = static_cast<int64_t>(options.windows.front().size());
  LlamaConfig one_layer = c;
  one_layer.n_layers = 1;
  InferenceState state = MakeInferenceState(one_layer, ctx, ctx);

  // The residual stream entering block 0: the windows' embeddings.
  std::vector<std::vector<float>> streams;
  for (const std::vector<int32_t>& w : options.windows) {
    MIXQ_CHECK_EQ(static_cast<int64_t>(w.size()), ctx);
    EmbedTokens(c, model.weights, state, w);
    streams.emplace_back(state.x.as<float>(), state.x.as<float>() + ctx * c.dim);
  }

  const bool salient = options.salient.enabled();
  const bool salient_impact = salient && options.salient.criterion->need == SalientNeed::kHessian;
  AwqOptions awq_options = options.awq_options;
  if (salient) awq_options.clip = false;

  LayerwiseResult result;
  ProgressBar progress("quantizing blocks", c.n_layers);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& stored = model.weights.layers[static_cast<size_t>(l)];
    // Linears kept as stored run as their float copy: the same values.
    LayerFloat lf = CopyLayerToFloat(stored);
    std::array<std::string, kLinearKinds> awq_notes;
    if (options.awq) {
      std::array<WeightFormat, kLinearKinds> awq_formats;  // kept linears count as float: not searched
      for (int k = 0; k < kLinearKinds; ++k) {
        const auto it = formats.find(LinearWeightName(l, static_cast<LinearKind>(k)));
        awq_formats[static_cast<size_t>(k)] =
            it != formats.end() && it->second ? *it->second : WeightFormat{DType::kF32, 0, false};
      }
      const AwqLayerResult awq = AwqLayer(c, lf, l, streams, awq_formats, awq_options);
      for (int g = 0; g < kAwqGroups; ++g) {
        const AwqGroupResult& gr = awq.groups[static_cast<size_t>(g)];
        const std::string note = gr.searched ? fmt::format("awq alpha {:.2f}", gr.alpha) : "awq: " + gr.skip_reason;
        for (LinearKind k : AwqGroupLinears(static_cast<AwqGroup>(g))) awq_notes[static_cast<size_t>(k)] = note;
      }
      for (int k = 0; k < kLinearKinds; ++k) {
        const AwqLinearResult& lr = awq.linears[static_cast<size_t>(k)];
        if (lr.clipped) awq_notes[static_cast<size_t>(k)] += fmt::format(", clip {:.3f}", lr.mean_clip);
      }
      // The rescaled norms, and kept linears (their columns or rows may have been rescaled), in their stored
      // types.
      auto reproduce = [&](const Tensor& t, const TensorView& original, const std::string& name) {
        const WeightFormat f{original.dtype, IsIntFormat(original.dtype) ? original.group : 0, false};
        ProducedTensor p;
        p.format = f;
        p.bytes.resize(*TensorBytes(f.dtype, t.shape, f.group));
        QuantizeMatrix(f, t.storage.as<float>(), t.shape.size() == 1 ? 1 : t.shape[0], t.shape.back(),
                       p.bytes.data());
        p.method = "awq";
        p.note = "rescaled by AWQ, stored as before";
        result.tensors.emplace(name, std::move(p));
      };
      reproduce(lf.attn_norm, stored.attn_norm, fmt::format("blk.{}.attn_norm.weight", l));
      reproduce(lf.ffn_norm, stored.ffn_norm, fmt::format("blk.{}.ffn_norm.weight", l));
      for (int k = 0; k < kLinearKinds; ++k) {
        const LinearKind kind = static_cast<LinearKind>(k);
        const auto it = formats.find(LinearWeightName(l, kind));
        if (it != formats.end() && it->second) continue;
        reproduce(lf.linear(kind), LinearWeight(stored, kind), LinearWeightName(l, kind));
      }
    }
    LayerWeights current = lf.views();
    std::vector<Tensor> quantized;  // storage behind `current`'s replaced views
    quantized.reserve(kLinearKinds);
    // AutoGPTQ's true-sequential order: the groups of linears that share an input (AWQ's scale groups),
    // in the order the block runs them.
    for (int g = 0; g < kAwqGroups; ++g) {
      const std::span<const LinearKind> kinds = AwqGroupLinears(static_cast<AwqGroup>(g));
      bool any = false;
      for (LinearKind k : kinds) {
        const auto it = formats.find(LinearWeightName(l, k));
        any |= it != formats.end() && it->second.has_value();
      }
      if (!any) continue;
      // The group's input, with every group before it already quantized.
      std::optional<HessianAccumulator> hessian;
      std::vector<double> sum2;
      int64_t tokens = 0;
      const int64_t cols = lf.linear(kinds[0]).shape[1];
      if (options.gptq || salient_impact) hessian.emplace(cols, LinearWeightName(l, kinds[0]));
      sum2.assign(static_cast<size_t>(cols), 0.0);
      state.observer = [&](const LinearCall& call) {
        if (call.kind != kinds[0]) return;
        if (hessian) hessian->Add(call);
        for (int64_t t = 0; t < call.n_tokens; ++t) {
          for (int64_t j = 0; j < cols; ++j) {
            const double x = call.input[t * cols + j];
            sum2[static_cast<size_t>(j)] += x * x;
          }
        }
        tokens += call.n_tokens;
      };
      RunBlock(c, current, l, state, streams, ctx, kinds[0]);
      state.observer = nullptr;
      std::vector<float> importance(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j) importance[static_cast<size_t>(j)] = static_cast<float>(sum2[j] / tokens);
      // What the salient criteria read, shared by the group's linears (they share the input).
      std::vector<float> channel_norm;
      std::vector<double> hessian_inverse_diagonal;
      if (salient) {
        channel_norm = ChannelNorms(sum2);
        if (salient_impact) {
          hessian_inverse_diagonal =
              HessianInverseDiagonal(hessian->data(), cols, options.gptq_options, LinearWeightName(l, kinds[0]));
        }
      }

      for (LinearKind k : kinds) {
        const std::string name = LinearWeightName(l, k);
        const auto it = formats.find(name);
        const Tensor& w = lf.linear(k);
        const int64_t rows = w.shape[0];
        if (it == formats.end() || !it->second) {
          continue;  // kept: its stored view stays in `current`
        }
        const WeightFormat& format = *it->second;
        ProducedTensor produced;
        produced.format = format;
        std::vector<uint8_t> mask;  // [rows, cols] the salient positions, when any
        if (salient) {
          if (!IsIntFormat(format.dtype)) {
            Fail("--salient keeps weights beside a mixq INT format (int2..int8); tensor '{}' is {}", name,
                 WeightFormatName(format));
          }
          const SalientScoreInputs in{w.storage.as<float>(), rows, cols, channel_norm.data(),
                                      salient_impact ? hessian_inverse_diagonal.data() : nullptr};
          produced.salient = SelectSalient(in, options.salient, name);
          if (produced.salient.nnz() > 0) mask = produced.salient.Mask();
        }
        const uint8_t* exclude = mask.empty() ? nullptr : mask.data();
        if (options.gptq && IsIntFormat(format.dtype)) {
          GptqResult g = GptqQuantizeMatrix(w.storage.as<float>(), rows, cols, *hessian, format,
                                            options.gptq_options, name, exclude);
          produced.bytes = std::move(g.data);
          produced.method = options.awq ? "awq+gptq" : "gptq";
          if (g.retries > 0) produced.note = fmt::format("damping raised to {}", g.damp);
          for (const float v : g.salient_values) produced.salient_values.push_back(F32ToF16(v));
        } else {
          produced.bytes.resize(*TensorBytes(format.dtype, w.shape, format.group));
          // GPTQ writes mixq's INT formats only: ggml's types get the imatrix search on the same inputs.
          const bool weighted = options.gptq && !Traits(format.dtype).is_float;
          const auto given = options.rtn_importance.find(name);
          const float* rtn_importance = weighted ? importance.data()
                                        : given != options.rtn_importance.end() ? given->second.data()
                                                                                : nullptr;
          QuantizeMatrix(format, w.storage.as<float>(), rows, cols, produced.bytes.data(), rtn_importance, exclude);
          produced.method = options.awq ? (weighted ? "awq+imatrix" : "awq")
                                        : (rtn_importance != nullptr ? "imatrix" : "rtn");
          if (exclude != nullptr) produced.salient_values = SalientValuesF16(produced.salient, w.storage.as<float>());
        }
        if (salient) {
          produced.method += fmt::format("+salient-{}", options.salient.criterion->name);
        }
        if (!awq_notes[static_cast<size_t>(k)].empty()) {
          produced.note += (produced.note.empty() ? "" : "; ") + awq_notes[static_cast<size_t>(k)];
        }
        TensorView stored;
        stored.name = name;
        stored.dtype = format.dtype;
        stored.shape = w.shape;
        stored.data = produced.bytes.data();
        stored.bytes = produced.bytes.size();
        stored.group = IsIntFormat(format.dtype) ? format.group : 0;
        // Later passes run the block with this linear's rounded weights, dequantized to float as GPTQ and
        // AWQ do (a float GEMM, and no int8 rounding of the activations the stored model would add), the
        // sparse part added where the dense part is 0.
        Tensor& q = quantized.emplace_back(Tensor::Zeros(name, DType::kF32, w.shape));
        TensorToFloat(stored, q.as<float>());
        if (!produced.salient_values.empty()) {
          AddSalientValues(produced.salient, produced.salient_values.data(), q.as<float>());
        }
        produced.relative_rmse = std::sqrt(RelativeSquaredErrorFloat(q.as<float>(), w.storage.as<float>(),
                                                                     rows * cols));
        LinearWeight(current, k) = q.view();
        result.tensors.emplace(name, std::move(produced));
      }
    }
    // The next block's input comes from this block as it will be stored.
    RunBlock(c, current, l, state, streams, ctx, std::nullopt);
    progress.Update(l + 1);
  }
  progress.Finish();
  result.seconds = timer.ElapsedSeconds();
  return result;
}

}  // namespace mixq
