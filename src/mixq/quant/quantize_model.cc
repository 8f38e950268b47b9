// Quantizing a model: decide each tensor's format, quantize its rows, measure the error, write the GGUF.
#include "mixq/quant/quantize_model.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/base/progress.h"
#include "mixq/base/timer.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/fp8.h"
#include "mixq/formats/ggml_quant.h"
#include "mixq/formats/int_quant.h"
#include "mixq/model/save_gguf.h"
#include "mixq/quant/layerwise.h"
#include "mixq/tensor/sparse_rows.h"

namespace mixq {
namespace {

// llama.cpp's tensor_type_fallback (llama-quant.cpp): the next ggml type whose blocks may fit.
const std::map<DType, DType>& GgmlFallbacks() {
  static const std::map<DType, DType> fallbacks = {
      {DType::kQ2_K, DType::kIQ4_NL}, {DType::kQ3_K, DType::kIQ4_NL}, {DType::kIQ4_XS, DType::kIQ4_NL},
      {DType::kQ4_K, DType::kQ5_0},   {DType::kQ5_K, DType::kQ5_1},   {DType::kQ6_K, DType::kQ8_0},
  };
  return fallbacks;
}

// The view of a tensor just quantized into `format` at dst, as the file will hold it (for its error).
TensorView StoredView(const std::string& name, const WeightFormat& format, const Shape& shape, const std::byte* dst) {
  const int64_t group = IsIntFormat(format.dtype) ? format.group : 0;
  return TensorView{name, format.dtype, shape, dst, *TensorBytes(format.dtype, shape, group), group};
}

// --salient's requirements that do not depend on a tensor: the criterion's statistics must be at hand.
void CheckSalientRequest(const QuantizeOptions& options, bool layerwise) {
  const SalientOptions& s = options.salient;
  if (!s.enabled()) return;
  MIXQ_CHECK(s.criterion != nullptr);
  if (s.criterion->need == SalientNeed::kChannelNorms && !layerwise && options.calib == nullptr) {
    Fail("--salient-by {} weighs each weight by its input channel's activation norm: give --calib STATS (from "
         "`mixq calibrate`), or --method awq/gptq with --data FILE",
         s.criterion->name);
  }
  if (s.criterion->need == SalientNeed::kHessian && options.windows.empty()) {
    Fail("--salient-by {} ranks weights by the layer Hessian: give calibration text with --data FILE",
         s.criterion->name);
  }
}

// The sparse part a tensor's encoding carries: CSR arrays and FP16 values from a selection.
SparseRows ToSparseRows(const SalientSelection& s, std::vector<uint16_t> values) {
  MIXQ_CHECK_EQ(static_cast<int64_t>(values.size()), s.nnz());
  return SparseRows{s.row_ptr, s.col, std::move(values)};
}

// RTN / imatrix with a sparse part (magnitude or activation: criteria that need no layer-by-layer pass): the
// selection from the float weights, the dense part quantized around it, the FP16 values, and the error of
// dense + sparse. The sparse part's size is known before `produce` runs, as the writer needs.
TensorEncoding EncodeWithSalient(const TensorView& src, const WeightFormat& format, const std::vector<float>& importance,
                                 const std::vector<float>& channel_norm, int64_t nnz, const SalientOptions& salient,
                                 TensorQuantReport& r, std::function<void()> done) {
  TensorEncoding e{format.dtype, IsIntFormat(format.dtype) ? format.group : 0, nullptr};
  e.salient_nnz = nnz;
  e.salient = std::make_shared<SparseRows>();
  e.produce = [&src, format, &importance, &channel_norm, &salient, &r, sparse = e.salient,
               done = std::move(done)](std::byte* dst) {
    const int64_t rows = src.rows();
    const int64_t cols = src.cols();
    std::vector<float> x(static_cast<size_t>(rows * cols));
    TensorToFloat(src, x.data());
    const SalientScoreInputs in{x.data(), rows, cols, channel_norm.empty() ? nullptr : channel_norm.data(), nullptr};
    const SalientSelection selection = SelectSalient(in, salient, r.name);
    const std::vector<uint8_t> mask = selection.Mask();
    QuantizeMatrix(format, x.data(), rows, cols, dst, importance.empty() ? nullptr : importance.data(), mask.data());
    *sparse = ToSparseRows(selection, SalientValuesF16(selection, x.data()));
    // The error of dense + sparse, read back from what the file will hold.
    TensorView stored = StoredView(r.name, format, src.shape, dst);
    stored.salient = sparse->view();
    r.relative_rmse = std::sqrt(RelativeSquaredError(stored, x.data()));
    r.method += fmt::format("+salient-{}", salient.criterion->name);
    done();
  };
  return e;
}

// W8A8 (docs/w8a8.md): settles a tensor's activation mode. The token embedding table is a lookup, not a
// matmul, so it keeps the int8 weights per channel without activation quantization (a tied head then
// runs as weight-only int8); a static (int8-tensor) scale is the calibrated max|input| over the tensor / 127.
// Returns the static scale (0 for none) and may rewrite `format`; throws naming the tensor and option.
float ResolveActivationQuant(const std::string& name, const std::string& reason, const QuantizeOptions& options,
                             const Model& model, WeightFormat& format, std::string& note) {
  if (format.activation == ActivationQuant::kFormat) return 0.0f;
  if (name == "token_embd.weight") {
    format = WithoutActivationQuant(format);
    note = fmt::format("the embedding table is a lookup, not a matmul: {} without activation quantization",
                       WeightFormatName(format));
    return 0.0f;
  }
  if (options.method == QuantMethod::kAwq || options.method == QuantMethod::kGptq ||
      options.method == QuantMethod::kAwqGptq) {
    Fail("tensor '{}' is {} ({}): W8A8 formats are quantized with --method rtn or imatrix, not {}", name,
         WeightFormatName(format), reason, QuantMethodName(options.method));
  }
  if (format.activation != ActivationQuant::kInt8Tensor) return 0.0f;
  if (options.calib == nullptr) {
    Fail("tensor '{}' is {} ({}), whose static activation scale comes from calibration: give --calib STATS "
         "(from `mixq calibrate`), or use w8a8-token (dynamic per-token scales, no calibration)", name,
         WeightFormatName(format), reason);
  }
  CheckCalibrationStats(*options.calib, model);  // sizes match this model (cheap: a pass over the names)
  const LinearStats* stats = options.calib->Find(name);
  if (stats == nullptr) {
    Fail("{}: no statistics for tensor '{}', which is {} ({}) and needs its calibrated max|input| (--calib)",
         options.calib->source, name, WeightFormatName(format), reason);
  }
  const float max_input = stats->MaxInput();
  if (stats->in_max_abs.empty()) {
    Fail("{}: tensor '{}' has no max|input| statistics (a llama.cpp imatrix has only sums of squares): w8a8's "
         "static scales need a statistics file from `mixq calibrate` (--calib)", options.calib->source, name);
  }
  if (!std::isfinite(max_input) || !(max_input > 0.0f)) {
    Fail("{}: tensor '{}' has max|input| {}, which gives no static activation scale; expected a positive finite "
         "value (--calib)", options.calib->source, name, max_input);
  }
  return max_input / 127.0f;
}

}  // namespace

std::optional<QuantMethod> ParseQuantMethod(std::string_view name) {
  for (QuantMethod m : {QuantMethod::kRtn, QuantMethod::kImatrix, QuantMethod::kAwq, QuantMethod::kGptq,
                        QuantMethod::kAwqGptq}) {
    if (name == QuantMethodName(m)) return m;
  }
  return std::nullopt;
}

const char* QuantMethodName(QuantMethod method) {
  switch (method) {
    case QuantMethod::kRtn: return "rtn";
    case QuantMethod::kImatrix: return "imatrix";
    case QuantMethod::kAwq: return "awq";
    case QuantMethod::kGptq: return "gptq";
    case QuantMethod::kAwqGptq: return "awq+gptq";
  }
  return "?";
}

double RelativeSquaredError(const TensorView& q, const float* w, const float* importance) {
  const int64_t rows = q.rows();
  const int64_t cols = q.cols();
  double err = 0.0;
  double ref = 0.0;
#pragma omp parallel reduction(+ : err, ref) if (rows * cols > (1 << 16))
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      TensorRowToFloat(q, r, row.data());
      const float* x = w + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double imp = importance != nullptr ? importance[c] : 1.0;
        const double d = static_cast<double>(x[c]) - row[static_cast<size_t>(c)];
        err += imp * d * d;
        ref += imp * static_cast<double>(x[c]) * x[c];
      }
    }
  }
  return ref > 0.0 ? err / ref : err;
}

double RelativeSquaredErrorFloat(const float* q, const float* w, int64_t n) {
  double err = 0.0, ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(w[i]) - q[i];
    err += d * d;
    ref += static_cast<double>(w[i]) * w[i];
  }
  return ref > 0.0 ? err / ref : err;
}

void QuantizeMatrix(const WeightFormat& format, const float* src, int64_t rows, int64_t cols, std::byte* dst,
                    const float* importance, const uint8_t* salient) {
  MIXQ_CHECK(salient == nullptr || IsIntFormat(format.dtype));
  const std::optional<size_t> row_bytes = RowBytes(format.dtype, cols, format.group);
  MIXQ_CHECK(row_bytes.has_value());
  // Threads pay off only past a few thousand weights: on a busy machine a parallel region for a tiny matrix
  // (AWQ's and the sensitivity's many small calls) waits for a descheduled thread at its barrier.
  const bool parallel = rows * cols >= (1 << 15);
  // FP8 E4M3 (formats/fp8.h): a scale per row or per tensor; the quantizer splits rows across threads.
  if (format.dtype == DType::kFp8E4M3) {
    QuantizeFp8Matrix(src, rows, cols, format.per_tensor, dst, importance);
    return;
  }
  if (IsIntFormat(format.dtype)) {
    if (format.per_tensor) {
      QuantizeIntMatrix(format.dtype, src, rows, cols, 0, true, dst, importance, salient);
      return;
    }
    // Rows are independent: split them across threads in slices.
    const int64_t slice = 16;
#pragma omp parallel for schedule(dynamic) if (parallel)
    for (int64_t r0 = 0; r0 < rows; r0 += slice) {
      const int64_t n = std::min(slice, rows - r0);
      QuantizeIntMatrix(format.dtype, src + r0 * cols, n, cols, format.group, false,
                        dst + static_cast<size_t>(r0) * *row_bytes, importance,
                        salient == nullptr ? nullptr : salient + r0 * cols);
    }
    return;
  }
  if (HasFloatCodec(format.dtype)) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      RowFromFloat(format.dtype, src + r * cols, dst + static_cast<size_t>(r) * *row_bytes, cols);
    }
    return;
  }
  MIXQ_CHECK(HasGgmlQuantizer(format.dtype));
#pragma omp parallel for schedule(dynamic, 4) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeRowGgml(format.dtype, src + r * cols, dst + static_cast<size_t>(r) * *row_bytes, cols, importance);
  }
}

WeightFormat FallbackFormat(const WeightFormat& wanted, int64_t cols) {
  WeightFormat f = wanted;
  while (!WhyCannotStore(f, cols).empty()) {
    const auto next = GgmlFallbacks().find(f.dtype);
    f = WeightFormat{next != GgmlFallbacks().end() ? next->second : DType::kF16, 0, false};
  }
  return f;
}

QuantizeReport QuantizeModel(const Model& model, const std::string& out_path, const QuantizeOptions& options) {
  Timer timer;
  QuantizeReport report;
  report.input = ComputeModelSize(model);
  const bool layerwise = options.method == QuantMethod::kAwq || options.method == QuantMethod::kGptq ||
                         options.method == QuantMethod::kAwqGptq;
  if (layerwise && options.windows.empty()) {
    Fail("--method {} runs the model layer by layer on calibration text: give --data FILE",
         QuantMethodName(options.method));
  }
  CheckSalientRequest(options, layerwise);
  // Impact needs each block's Hessian, taken layer by layer: rtn and imatrix then run in that pass too.
  const bool salient = options.salient.enabled();
  const bool run_layerwise =
      layerwise || (salient && options.salient.criterion->need == SalientNeed::kHessian);
  if (options.method == QuantMethod::kImatrix) {
    if (options.calib == nullptr) Fail("--method imatrix needs --calib STATS (from `mixq calibrate` or llama.cpp)");
    if (CheckCalibrationStats(*options.calib, model) == 0) {
      Fail("{}: no statistics for any linear layer of the model", options.calib->source);
    }
  }

  // Decide every tensor's format before writing anything, so a bad policy fails fast and whole.
  struct Plan {
    TensorView src;
    std::optional<WeightFormat> format;  // nullopt: keep
    size_t report_index;
    std::vector<float> importance;  // per input channel; empty: plain squared error
    int64_t salient_nnz = 0;        // the sparse FP16 part's size, fixed by fraction and shape
    std::vector<float> channel_norm;  // --salient-by activation outside the layer-by-layer pass
    float activation_scale = 0.0f;  // W8A8 int8-tensor: the static scale
  };
  std::map<std::string, Plan> plans;
  std::map<DType, int64_t> linear_bytes;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    const TensorView& src = *slot.view;
    TensorQuantReport r;
    r.name = slot.name;
    r.shape = src.shape;
    r.from = src.dtype;
    Plan plan{src, std::nullopt, report.tensors.size(), {}, 0, {}, 0.0f};
    if (slot.role == TensorRole::kNorm) {
      r.reason = "norm";
    } else {
      const PolicyDecision decision = DecideFormat(options.policy, slot.name, options.type);
      r.reason = decision.reason;
      plan.format = decision.target.format;
      if (plan.format) {
        const std::string why = WhyCannotStore(*plan.format, src.cols());
        if (!why.empty()) {
          if (options.strict) {
            Fail("tensor '{}' {} cannot be stored as {} ({}): {}", slot.name, ShapeString(src.shape),
                 WeightFormatName(*plan.format), r.reason, why);
          }
          const WeightFormat used = FallbackFormat(*plan.format, src.cols());
          r.reason += fmt::format("; {} -> {}: {}", WeightFormatName(*plan.format), WeightFormatName(used), why);
          plan.format = used;
        }
        std::string activation_note;
        plan.activation_scale =
            ResolveActivationQuant(slot.name, r.reason, options, model, *plan.format, activation_note);
        if (!activation_note.empty()) r.reason += "; " + activation_note;
        if (!CanReadAsFloat(src.dtype)) {
          Fail("tensor '{}' is stored as {}, which mixq cannot read to requantize", slot.name, DTypeName(src.dtype));
        }
        if (!Traits(src.dtype).is_float && *plan.format != WeightFormat{src.dtype, src.group, false}) {
          Warn("tensor '{}' is requantized from {}: quantize from the F16/F32 original for the best quality",
               slot.name, DTypeName(src.dtype));
        }
      }
    }
    if (plan.format) {
      r.method = "rtn";
      const LinearStats* stats = options.calib != nullptr ? options.calib->Find(slot.name) : nullptr;
      if (options.method != QuantMethod::kRtn && stats != nullptr) {
        plan.importance = stats->Importance();
        r.method = "imatrix";
      } else if (options.method == QuantMethod::kImatrix && !Traits(plan.format->dtype).is_float) {
        Warn("{}: no statistics for tensor '{}': it is quantized without an importance matrix",
             options.calib->source, slot.name);
      }
    }
    if (salient && plan.format && slot.role == TensorRole::kLinear) {
      if (!IsIntFormat(plan.format->dtype)) {
        Fail("--salient keeps weights beside a mixq INT format (int2..int8, e.g. int4-g128); tensor '{}' is {} "
             "({})",
             slot.name, WeightFormatName(*plan.format), r.reason);
      }
      if (plan.format->activation != ActivationQuant::kFormat) {
        Fail("--salient with W8A8: tensor '{}' is {} ({}), whose int8 x int8 kernel has no sparse FP16 part; "
             "use a weight-only format for salient weights",
             slot.name, WeightFormatName(*plan.format), r.reason);
      }
      plan.salient_nnz = SalientCount(options.salient.fraction, src.rows(), src.cols(), options.salient.scope);
      if (options.salient.criterion->need == SalientNeed::kChannelNorms && !layerwise) {
        const LinearStats* stats = options.calib->Find(slot.name);
        if (stats == nullptr) {
          Fail("--salient-by {}: {} has no statistics for tensor '{}'", options.salient.criterion->name,
               options.calib->source, slot.name);
        }
        plan.channel_norm = ChannelNorms(stats->in_sum2);
      }
      r.salient_nnz = plan.salient_nnz;
      r.salient_bytes = SalientBytes(src.rows(), plan.salient_nnz);
    }
    r.format = plan.format ? WeightFormatName(*plan.format) : fmt::format("{} (kept)", DTypeName(src.dtype));
    const ActivationQuant activation = plan.format ? plan.format->activation : src.activation;
    if (activation != ActivationQuant::kFormat) {
      r.activation = ActivationQuantName(activation);
      r.activation_scale = plan.format ? plan.activation_scale : src.activation_scale;
    }
    r.bytes = plan.format ? *TensorBytes(plan.format->dtype, src.shape, plan.format->group) : src.bytes;
    r.bytes += r.salient_bytes;
    r.bits_per_weight = 8.0 * static_cast<double>(r.bytes) / static_cast<double>(src.elements());
    if (slot.role == TensorRole::kLinear) {
      linear_bytes[plan.format ? plan.format->dtype : src.dtype] += static_cast<int64_t>(r.bytes);
    }
    report.tensors.push_back(std::move(r));
    plans.emplace(slot.name, std::move(plan));
  });

  LayerwiseResult produced;
  if (run_layerwise) {
    std::map<std::string, std::optional<WeightFormat>> block_formats;
    for (const auto& [name, plan] : plans) {
      if (name.starts_with("blk.") && !name.ends_with("_norm.weight")) block_formats.emplace(name, plan.format);
    }
    LayerwiseOptions lo;
    lo.awq = options.method == QuantMethod::kAwq || options.method == QuantMethod::kAwqGptq;
    lo.gptq = options.method == QuantMethod::kGptq || options.method == QuantMethod::kAwqGptq;
    lo.windows = options.windows;
    lo.gptq_options = options.gptq;
    lo.awq_options = options.awq;
    lo.salient = options.salient;
    if (!layerwise) {  // rtn or imatrix run layer by layer for --salient-by impact
      for (const auto& [name, plan] : plans) {
        if (!plan.importance.empty()) lo.rtn_importance.emplace(name, plan.importance);
      }
    }
    produced = QuantizeLayerwise(model, block_formats, lo);
  }

  ProgressBar progress("quantizing", static_cast<int64_t>(plans.size()));
  int64_t done = 0;
  const TensorEncoder encode = [&](const TensorSlot& slot) -> TensorEncoding {
    const Plan& plan = plans.at(slot.name);
    TensorQuantReport& r = report.tensors[plan.report_index];
    const TensorView src = plan.src;
    if (const auto it = produced.tensors.find(slot.name); it != produced.tensors.end()) {
      const ProducedTensor& p = it->second;
      r.method = p.method;
      r.relative_rmse = p.relative_rmse;
      if (!p.note.empty()) r.reason += "; " + p.note;
      const int64_t stored_group = IsIntFormat(p.format.dtype) ? p.format.group : 0;
      MIXQ_CHECK_EQ(p.salient.nnz(), plan.salient_nnz);
      TensorEncoding e{p.format.dtype, stored_group, nullptr};
      if (plan.salient_nnz > 0) {
        e.salient_nnz = plan.salient_nnz;
        e.salient = std::make_shared<SparseRows>();
      }
      e.produce = [&, &p = p, sparse = e.salient](std::byte* dst) {
        std::memcpy(dst, p.bytes.data(), p.bytes.size());
        if (sparse) *sparse = ToSparseRows(p.salient, p.salient_values);
        progress.Update(++done);
      };
      return e;
    }
    if (!plan.format) {
      progress.Update(++done);
      return TensorEncoding{src.dtype, src.group, nullptr};
    }
    const WeightFormat format = *plan.format;
    const int64_t stored_group = IsIntFormat(format.dtype) ? format.group : 0;
    if (plan.salient_nnz > 0) return EncodeWithSalient(plan.src, format, plan.importance, plan.channel_norm,
                                                         plan.salient_nnz, options.salient, r, [&] {
                                                           progress.Update(++done);
                                                         });
    TensorEncoding encoding{format.dtype, stored_group, [&, src, format, stored_group](std::byte* dst) {
                            const int64_t rows = src.rows();
                            const int64_t cols = src.cols();
                            AlignedBuffer floats(static_cast<size_t>(rows * cols) * sizeof(float));
                            float* x = floats.as<float>();
                            TensorToFloat(src, x);
                            QuantizeMatrix(format, x, rows, cols, dst,
                                           plan.importance.empty() ? nullptr : plan.importance.data());
                            const TensorView stored = StoredView(r.name, format, src.shape, dst);
                            r.relative_rmse = std::sqrt(RelativeSquaredError(stored, x));
                            progress.Update(++done);
                          }};
    encoding.activation = format.activation;
    encoding.activation_scale = plan.activation_scale;
    return encoding;
  };
  // general.file_type names the type most linear-layer bytes use, when llama.cpp has a name for it.
  DType primary = DType::kF32;
  int64_t most = -1;
  for (const auto& [dtype, bytes] : linear_bytes) {
    if (bytes > most) primary = dtype, most = bytes;
  }
  const std::optional<uint32_t> file_type = GgufFileType(primary);
  WriteGgufModel(model, out_path, file_type, encode);
  progress.Finish();

  for (const TensorQuantReport& r : report.tensors) {
    report.output.parameters += ElementCount(r.shape);
    report.output.bytes += static_cast<int64_t>(r.bytes);
  }
  report.seconds = timer.ElapsedSeconds();
  return report;
}

}  // namespace mixq
