// Sensitivity of each tensor to each candidate format: one tensor quantized at a time, by the real
// quantizer into its real storage, measured by KL divergence through the real kernels or by weight error.
#include "mixq/quant/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <set>

#include <omp.h>

#include <fmt/format.h>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/base/progress.h"
#include "mixq/base/threads.h"
#include "mixq/formats/convert.h"
#include "mixq/quant/quantize_model.h"

namespace mixq {
namespace {

bool IsAllocatedRole(TensorRole role, bool include_embeddings) {
  switch (role) {
    case TensorRole::kLinear:
      return true;
    case TensorRole::kEmbedding:
    case TensorRole::kOutput:
      return include_embeddings;
    case TensorRole::kNorm:
      return false;
  }
  return false;
}

// The tensor as float rows, whatever it is stored as (QuantizeModel requantizes the same way).
std::vector<float> ReadAsFloat(const TensorView& src, const std::string& name) {
  if (!CanReadAsFloat(src.dtype)) {
    Fail("tensor '{}' is stored as {}, which mixq cannot read to requantize", name, DTypeName(src.dtype));
  }
  std::vector<float> x(static_cast<size_t>(src.elements()));
  TensorToFloat(src, x.data());
  return x;
}

// `format` applied to the float copy `x` of tensor `like`: owned storage and the view the kernels run.
TensorView QuantizeInto(const WeightFormat& format, const TensorView& like, const std::string& name,
                        const std::vector<float>& x, const float* importance, AlignedBuffer& storage) {
  const std::optional<size_t> bytes = TensorBytes(format.dtype, like.shape, format.group);
  MIXQ_CHECK(bytes.has_value());
  storage.Resize(*bytes);
  QuantizeMatrix(format, x.data(), like.rows(), like.cols(), storage.data(), importance);
  TensorView view;
  view.name = name;
  view.dtype = format.dtype;
  view.shape = like.shape;
  view.data = storage.data();
  view.bytes = *bytes;
  view.group = IsIntFormat(format.dtype) ? format.group : 0;
  return view;
}

// Replaces tensor `name` of `weights` by `view`; a tied head (output sharing token_embd's storage, or
// left empty) follows token_embd. Returns whether the name was found.
bool ReplaceView(const LlamaConfig& config, LlamaWeights& weights, const std::string& name, const TensorView& view) {
  const std::byte* embd_data = weights.token_embd.data;
  bool found = false;
  ForEachTensor(config, weights, [&](TensorSlot& slot) {
    if (slot.name == name) *slot.view = view, found = true;
  });
  if (found && name == "token_embd.weight" && !weights.output.empty() && weights.output.data == embd_data) {
    weights.output = view;
  }
  return found;
}

void ValidateImportance(const Model& model, const ImportanceMap& importance) {
  std::map<std::string, int64_t> cols;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) { cols[slot.name] = slot.view->cols(); });
  for (const auto& [name, values] : importance) {
    const auto it = cols.find(name);
    if (it == cols.end()) {
      Fail("importance is given for tensor '{}', which the model does not have (a calibration file of "
           "another model?)",
           name);
    }
    if (static_cast<int64_t>(values.size()) != it->second) {
      Fail("importance of tensor '{}' has {} values, expected its {} input columns", name, values.size(),
           it->second);
    }
    for (size_t j = 0; j < values.size(); ++j) {
      if (!std::isfinite(values[j]) || values[j] < 0.0f) {
        Fail("importance of tensor '{}' column {} is {}, expected a finite value >= 0", name, j, values[j]);
      }
    }
  }
}

const float* ImportanceOf(const ImportanceMap& importance, const std::string& name) {
  const auto it = importance.find(name);
  return it == importance.end() ? nullptr : it->second.data();
}

}  // namespace

const char* SensitivityModeName(SensitivityMode mode) {
  return mode == SensitivityMode::kKl ? "kl" : "output";
}

std::optional<SensitivityMode> ParseSensitivityMode(std::string_view name) {
  if (name == "kl") return SensitivityMode::kKl;
  if (name == "output") return SensitivityMode::kOutput;
  return std::nullopt;
}

std::vector<std::vector<int32_t>> TokenWindows(std::span<const int32_t> tokens, int64_t window_tokens,
                                               int64_t first, int64_t count, int32_t bos) {
  if (window_tokens < 2) Fail("calibration windows must hold at least 2 tokens, got {}", window_tokens);
  if (first < 0 || count < 1) Fail("calibration windows: first {} and count {} must be >= 0 and >= 1", first, count);
  const int64_t needed = (first + count) * window_tokens;
  if (needed > static_cast<int64_t>(tokens.size())) {
    Fail("the calibration text has {} tokens, too few for windows {}..{} of {} tokens ({} needed)", tokens.size(),
         first, first + count - 1, window_tokens, needed);
  }
  std::vector<std::vector<int32_t>> windows;
  for (int64_t w = first; w < first + count; ++w) {
    const auto begin = tokens.begin() + w * window_tokens;
    windows.emplace_back(begin, begin + window_tokens);
    if (bos >= 0) windows.back()[0] = bos;
  }
  return windows;
}

double KlFromLogits(std::span<const float> base, double base_log_normalizer, std::span<const float> other) {
  MIXQ_CHECK_EQ(base.size(), other.size());
  const double other_log_normalizer = LogSumExp(other);
  double kl = 0.0;
  for (size_t i = 0; i < base.size(); ++i) {
    const double log_p = base[i] - base_log_normalizer;
    const double log_q = other[i] - other_log_normalizer;
    kl += std::exp(log_p) * (log_p - log_q);
  }
  return kl;
}

KlEvaluator::KlEvaluator(const LlamaConfig& config, const LlamaWeights& base, std::vector<std::vector<int32_t>> windows)
    : config_(config), windows_(std::move(windows)) {
  if (windows_.empty()) Fail("KL sensitivity needs at least one calibration window");
  for (size_t w = 0; w < windows_.size(); ++w) {
    if (windows_[w].empty()) Fail("calibration window {} is empty", w);
    for (const int32_t t : windows_[w]) {
      if (t < 0 || t >= config_.vocab_size) {
        Fail("calibration window {} holds token {}, outside the model's vocabulary of {}", w, t, config_.vocab_size);
      }
    }
    longest_ = std::max<int64_t>(longest_, static_cast<int64_t>(windows_[w].size()));
  }
  state_ = MakeState();
  const int64_t vocab = config_.vocab_size;
  for (const std::vector<int32_t>& window : windows_) {
    const float* logits = Forward(config_, base, state_, window, 0, true);
    const int64_t n = static_cast<int64_t>(window.size());
    logits_.insert(logits_.end(), logits, logits + n * vocab);
    for (int64_t t = 0; t < n; ++t) {
      log_normalizers_.push_back(LogSumExp({logits + t * vocab, static_cast<size_t>(vocab)}));
    }
  }
}

InferenceState KlEvaluator::MakeState() const {
  return MakeInferenceState(config_, longest_, std::min<int64_t>(longest_, 512));
}

double KlEvaluator::MeanKl(const LlamaWeights& weights) { return MeanKl(weights, state_); }

double KlEvaluator::MeanKl(const LlamaWeights& weights, InferenceState& state) const {
  const int64_t vocab = config_.vocab_size;
  double sum = 0.0;
  int64_t row0 = 0;
  for (const std::vector<int32_t>& window : windows_) {
    const float* logits = Forward(config_, weights, state, window, 0, true);
    const int64_t n = static_cast<int64_t>(window.size());
    double window_sum = 0.0;
    // A non-finite logit would throw inside; no exception may leave an OpenMP region.
    bool broken = false;
#pragma omp parallel for schedule(static) reduction(+ : window_sum) reduction(|| : broken)
    for (int64_t t = 0; t < n; ++t) {
      const float* row = logits + t * vocab;
      bool finite = true;
      for (int64_t i = 0; i < vocab; ++i) finite = finite && std::isfinite(row[i]);
      if (!finite) {
        broken = true;
        continue;
      }
      window_sum += KlFromLogits({logits_.data() + (row0 + t) * vocab, static_cast<size_t>(vocab)},
                                 log_normalizers_[static_cast<size_t>(row0 + t)], {row, static_cast<size_t>(vocab)});
    }
    if (broken) Fail("the quantized model produced a non-finite logit: its weights are broken");
    sum += window_sum;
    row0 += n;
  }
  return sum / static_cast<double>(row0);
}

QuantizedWeights QuantizeWeights(const Model& model, const std::map<std::string, WeightFormat>& formats,
                                 const ImportanceMap& importance) {
  QuantizedWeights out;
  out.weights = model.weights;
  out.storage.reserve(formats.size());
  std::set<std::string> seen;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    const auto it = formats.find(slot.name);
    if (it == formats.end()) {
      out.bytes += static_cast<int64_t>(slot.view->bytes);
      return;
    }
    const std::string why = WhyCannotStore(it->second, slot.view->cols());
    if (!why.empty()) Fail("tensor '{}' cannot be stored as {}: {}", slot.name, WeightFormatName(it->second), why);
    const std::vector<float> x = ReadAsFloat(*slot.view, slot.name);
    out.storage.emplace_back();
    const TensorView view = QuantizeInto(it->second, *slot.view, slot.name, x, ImportanceOf(importance, slot.name),
                                         out.storage.back());
    MIXQ_CHECK(ReplaceView(model.config, out.weights, slot.name, view));
    out.bytes += static_cast<int64_t>(view.bytes);
    seen.insert(slot.name);
  });
  for (const auto& [name, format] : formats) {
    if (!seen.count(name)) Fail("no tensor '{}' in the model to quantize as {}", name, WeightFormatName(format));
  }
  return out;
}

SensitivityTable MeasureSensitivity(const Model& model, const SensitivityOptions& options) {
  if (options.candidates.empty()) Fail("--candidates: no candidate formats given");
  ValidateImportance(model, options.importance);
  SensitivityTable table;
  table.mode = options.mode;
  table.candidates = options.candidates;
  table.fixed_format = options.fixed_format;
  table.include_embeddings = options.include_embeddings;
  table.importance_weighted = !options.importance.empty();

  // Which tensors are allocated, and what everything else will occupy in the file.
  struct Work {
    std::string name;
    const TensorView* src;
  };
  std::vector<Work> work;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    const TensorView& src = *slot.view;
    table.total_parameters += src.elements();
    if (IsAllocatedRole(slot.role, options.include_embeddings)) {
      work.push_back({slot.name, &src});
      return;
    }
    if (slot.role != TensorRole::kNorm && options.fixed_format) {
      const WeightFormat used = FallbackFormat(*options.fixed_format, src.cols());
      table.fixed_bytes += static_cast<int64_t>(*TensorBytes(used.dtype, src.shape, used.group));
    } else {
      table.fixed_bytes += static_cast<int64_t>(src.bytes);
    }
  });

  int64_t fallen_back = 0;
  for (const Work& w : work) {
    TensorCandidates t;
    t.name = w.name;
    t.shape = w.src->shape;
    std::vector<std::string> refusals;
    for (const WeightFormat& f : options.candidates) {
      const std::string why = WhyCannotStore(f, w.src->cols());
      if (why.empty()) {
        t.candidates.push_back({f, *TensorBytes(f.dtype, t.shape, f.group), 0.0});
      } else {
        refusals.push_back(fmt::format("{}: {}", WeightFormatName(f), why));
      }
    }
    if (t.candidates.empty()) {
      // What QuantizeModel would write for each candidate: measured as such, named in the policy.
      std::vector<std::string> used_names;
      for (const WeightFormat& f : options.candidates) {
        const WeightFormat used = FallbackFormat(f, w.src->cols());
        const bool dup = std::any_of(t.candidates.begin(), t.candidates.end(),
                                     [&](const CandidateCost& c) { return c.format == used; });
        if (dup) continue;
        t.candidates.push_back({used, *TensorBytes(used.dtype, t.shape, used.group), 0.0});
        used_names.push_back(WeightFormatName(used));
      }
      t.note = fmt::format("no candidate can store it ({}); measured their fallbacks {}", fmt::join(refusals, "; "),
                           fmt::join(used_names, ", "));
      ++fallen_back;
    }
    table.tensors.push_back(std::move(t));
  }

  if (fallen_back > 0) {
    const TensorCandidates& first = *std::find_if(table.tensors.begin(), table.tensors.end(),
                                                  [](const TensorCandidates& t) { return !t.note.empty(); });
    Warn("{} tensors fit none of the candidates; their QuantizeModel fallbacks are measured instead (the "
         "policy's comments name them), e.g. '{}': {}",
         fallen_back, first.name, first.note);
  }

  std::optional<KlEvaluator> evaluator;
  if (options.mode == SensitivityMode::kKl) {
    evaluator.emplace(model.config, model.weights, options.windows);
    table.kl_windows = evaluator->windows();
    table.kl_positions = evaluator->positions();
  }

  // One job per (tensor, candidate).
  struct Job {
    size_t tensor;
    size_t candidate;
  };
  std::vector<Job> jobs;
  int64_t largest_floats = 0;
  for (size_t i = 0; i < table.tensors.size(); ++i) {
    for (size_t c = 0; c < table.tensors[i].candidates.size(); ++c) jobs.push_back({i, c});
    largest_floats = std::max(largest_floats, work[i].src->elements());
  }
  // Pairs side by side when every thread's float copy, quantized copy and state fit in ~1 GiB together.
  const int threads = ThreadCount();
  // Only where nested regions run single-threaded (OpenMP's default), or threads would multiply.
  const bool side_by_side = threads > 1 && omp_get_max_active_levels() <= 1 &&
                            static_cast<int64_t>(jobs.size()) >= 2 * threads &&
                            largest_floats * 8 * threads <= (int64_t{1} << 30);
  std::vector<InferenceState> states;
  if (evaluator) {
    for (int i = 0; i < (side_by_side ? threads : 1); ++i) states.push_back(evaluator->MakeState());
  }

  ProgressBar progress(fmt::format("sensitivity ({})", SensitivityModeName(options.mode)),
                       static_cast<int64_t>(jobs.size()));
  int64_t done = 0;
  auto run = [&](const Job& job, InferenceState* state) {
    TensorCandidates& t = table.tensors[job.tensor];
    CandidateCost& c = t.candidates[job.candidate];
    const TensorView& src = *work[job.tensor].src;
    const std::vector<float> x = ReadAsFloat(src, t.name);
    const float* importance = ImportanceOf(options.importance, t.name);
    AlignedBuffer storage;
    const TensorView q = QuantizeInto(c.format, src, t.name, x, importance, storage);
    if (options.mode == SensitivityMode::kOutput) {
      c.sensitivity = RelativeSquaredError(q, x.data(), importance);
    } else {
      LlamaWeights trial = model.weights;
      MIXQ_CHECK(ReplaceView(model.config, trial, t.name, q));
      c.sensitivity = evaluator->MeanKl(trial, *state);
    }
  };
  if (side_by_side) {
    // Exceptions cannot leave an OpenMP region: the first is kept and rethrown after it.
    std::exception_ptr failure;
#pragma omp parallel num_threads(threads)
    {
      InferenceState* state = evaluator ? &states[static_cast<size_t>(omp_get_thread_num())] : nullptr;
#pragma omp for schedule(dynamic, 1)
      for (size_t j = 0; j < jobs.size(); ++j) {
        try {
          run(jobs[j], state);
        } catch (...) {
#pragma omp critical(mixq_sensitivity_failure)
          if (!failure) failure = std::current_exception();
        }
#pragma omp critical(mixq_sensitivity_progress)
        if (options.progress) progress.Update(++done, table.tensors[jobs[j].tensor].name);
      }
    }
    if (failure) std::rethrow_exception(failure);
  } else {
    for (const Job& job : jobs) {
      run(job, evaluator ? &states[0] : nullptr);
      if (options.progress) progress.Update(++done, table.tensors[job.tensor].name);
    }
  }
  progress.Finish();
  return table;
}

}  // namespace mixq
