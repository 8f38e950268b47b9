// Quantizing a model: decide each tensor's format, quantize its rows, measure the error, write the GGUF.
#include "mixq/quant/quantize_model.h"

#include <cmath>
#include <cstring>
#include <map>

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
      RowToFloat(q.dtype, q.row(r), row.data(), cols, q.group);
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

void QuantizeMatrix(const WeightFormat& format, const float* src, int64_t rows, int64_t cols, std::byte* dst,
                    const float* importance) {
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
      QuantizeIntMatrix(format.dtype, src, rows, cols, 0, true, dst, importance);
      return;
    }
    // Rows are independent: split them across threads in slices.
    const int64_t slice = 16;
#pragma omp parallel for schedule(dynamic) if (parallel)
    for (int64_t r0 = 0; r0 < rows; r0 += slice) {
      const int64_t n = std::min(slice, rows - r0);
      QuantizeIntMatrix(format.dtype, src + r0 * cols, n, cols, format.group, false,
                        dst + static_cast<size_t>(r0) * *row_bytes, importance);
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
    float activation_scale;         // W8A8 int8-tensor: the static scale
  };
  std::map<std::string, Plan> plans;
  std::map<DType, int64_t> linear_bytes;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    const TensorView& src = *slot.view;
    TensorQuantReport r;
    r.name = slot.name;
    r.shape = src.shape;
    r.from = src.dtype;
    Plan plan{src, std::nullopt, report.tensors.size(), {}, 0.0f};
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
    r.format = plan.format ? WeightFormatName(*plan.format) : fmt::format("{} (kept)", DTypeName(src.dtype));
    const ActivationQuant activation = plan.format ? plan.format->activation : src.activation;
    if (activation != ActivationQuant::kFormat) {
      r.activation = ActivationQuantName(activation);
      r.activation_scale = plan.format ? plan.activation_scale : src.activation_scale;
    }
    r.bytes = plan.format ? *TensorBytes(plan.format->dtype, src.shape, plan.format->group) : src.bytes;
    r.bits_per_weight = 8.0 * static_cast<double>(r.bytes) / static_cast<double>(src.elements());
    if (slot.role == TensorRole::kLinear) {
      linear_bytes[plan.format ? plan.format->dtype : src.dtype] += static_cast<int64_t>(r.bytes);
    }
    report.tensors.push_back(std::move(r));
    plans.emplace(slot.name, std::move(plan));
  });

  LayerwiseResult produced;
  if (layerwise) {
    std::map<std::string, std::optional<WeightFormat>> block_formats;
    for (const auto& [name, plan] : plans) {
      if (name.starts_with("blk.") && !name.ends_with("_norm.weight")) block_formats.emplace(name, plan.format);
    }
    LayerwiseOptions lo;
    lo.awq = options.method != QuantMethod::kGptq;
    lo.gptq = options.method != QuantMethod::kAwq;
    lo.windows = options.windows;
    lo.gptq_options = options.gptq;
    lo.awq_options = options.awq;
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
      return TensorEncoding{p.format.dtype, stored_group, [&, &p = p](std::byte* dst) {
                              std::memcpy(dst, p.bytes.data(), p.bytes.size());
                              progress.Update(++done);
                            }};
    }
    if (!plan.format) {
      progress.Update(++done);
      return TensorEncoding{src.dtype, src.group, nullptr};
    }
    const WeightFormat format = *plan.format;
    const int64_t stored_group = IsIntFormat(format.dtype) ? format.group : 0;
    TensorEncoding encoding{format.dtype, stored_group, [&, src, format, stored_group](std::byte* dst) {
                            const int64_t rows = src.rows();
                            const int64_t cols = src.cols();
                            AlignedBuffer floats(static_cast<size_t>(rows * cols) * sizeof(float));
                            float* x = floats.as<float>();
                            TensorToFloat(src, x);
                            QuantizeMatrix(format, x, rows, cols, dst,
                                           plan.importance.empty() ? nullptr : plan.importance.data());
                            const TensorView stored{r.name, format.dtype, src.shape, dst,
                                                    *TensorBytes(format.dtype, src.shape, format.group),
                                                    stored_group};
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
