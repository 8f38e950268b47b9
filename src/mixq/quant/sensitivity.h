// How much each tensor's quantization to each candidate format hurts the model: the table that
// `--target-bpw` allocates bits from (budget.h), measured as the KL divergence of the model with only
// that tensor quantized, or cheaply as the tensor's importance-weighted relative weight error.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixq/base/aligned_buffer.h"
#include "mixq/formats/weight_format.h"
#include "mixq/kernels/ops.h"
#include "mixq/model/forward.h"
#include "mixq/model/model.h"

namespace mixq {

enum class SensitivityMode {
  // mean KL(base || model with only this tensor quantized) of the next-token distributions over
  // calibration windows: measures what the user sees, costs one forward pass per (tensor, candidate).
  kKl,
  // sum_ij imp_j (W_ij - Q(W)_ij)^2 / sum_ij imp_j W_ij^2: the relative output error of the layer under
  // a diagonal input covariance imp (mean x^2 per input channel; 1 without calibration). No forward pass,
  // so it scales to big models, but it cannot see how errors in different layers propagate.
  kOutput,
};
const char* SensitivityModeName(SensitivityMode mode);  // "kl", "output"
std::optional<SensitivityMode> ParseSensitivityMode(std::string_view name);

// Per-input-channel importance by GGUF tensor name (cols values each): the calibration file's mean x^2.
using ImportanceMap = std::map<std::string, std::vector<float>>;

struct SensitivityOptions {
  SensitivityMode mode = SensitivityMode::kOutput;
  std::vector<WeightFormat> candidates;  // formats to choose from (order kept in the table)
  // kl mode: calibration token windows, each run from position 0 with a fresh cache; every position's
  // next-token distribution counts (see TokenWindows).
  std::vector<std::vector<int32_t>> windows;
  // Given to QuantizeMatrix (imatrix-weighted quantization) and, in output mode, the error's weights.
  ImportanceMap importance;
  // Whether token_embd.weight (the head too when tied) and output.weight are allocated; when false they
  // are fixed like the norms.
  bool include_embeddings = true;
  // What tensors that are not allocated (and are not norms) become: the policy's `default` line; nullopt
  // keeps them as stored. A format that cannot hold a tensor falls back as QuantizeModel falls back.
  std::optional<WeightFormat> fixed_format;
  bool progress = true;
};

struct CandidateCost {
  WeightFormat format;
  size_t bytes = 0;          // TensorBytes of the tensor in this format
  double sensitivity = 0.0;  // the mode's measure; lower is better
};

struct TensorCandidates {
  std::string name;  // GGUF name
  Shape shape;
  std::vector<CandidateCost> candidates;  // the options' candidates that can store the tensor, in order
  // Set when no candidate could store the tensor and their QuantizeModel fallbacks were measured instead.
  std::string note;

  int64_t parameters() const { return ElementCount(shape); }
};

struct SensitivityTable {
  SensitivityMode mode = SensitivityMode::kOutput;
  std::vector<WeightFormat> candidates;
  std::vector<TensorCandidates> tensors;      // the tensors to allocate, in GGUF order
  int64_t fixed_bytes = 0;                    // norms and tensors not allocated, as they will be stored
  int64_t total_parameters = 0;               // every tensor of the model file (llama.cpp's bpw divisor)
  std::optional<WeightFormat> fixed_format;   // as SensitivityOptions::fixed_format
  bool include_embeddings = true;
  int64_t kl_windows = 0;    // kl mode: windows and positions the mean is over
  int64_t kl_positions = 0;
  bool importance_weighted = false;
};

// Measures every (tensor, candidate) pair of `model`. Throws mixq::Error for no candidates, a kl mode
// without windows, a token out of the vocabulary, an importance vector whose name is not a tensor of the
// model or whose length is not the tensor's columns (or holds a negative or non-finite value), and a
// tensor stored in a type mixq cannot read. Small models run one (tensor, candidate) pair per thread, each
// pair single-threaded (few barriers: robust on a loaded machine, and the kernels gain nothing from
// threads on tiny matrices); big ones run the pairs in turn with the threads inside QuantizeMatrix and
// the forward pass, so memory stays one float copy of a tensor.
SensitivityTable MeasureSensitivity(const Model& model, const SensitivityOptions& options);

// ---- Pieces, public for tests and for evaluating a finished allocation ------------------------------

// `count` consecutive windows of `window_tokens` tokens cut from `tokens` starting at window `first`
// (so calibration and held-out windows can come from one tokenized text); each window's first token is
// replaced by `bos` when bos >= 0, as llama-perplexity does. Throws mixq::Error if the text is too short.
std::vector<std::vector<int32_t>> TokenWindows(std::span<const int32_t> tokens, int64_t window_tokens,
                                               int64_t first, int64_t count, int32_t bos);

// KL(p || q) = sum_i p_i (log p_i - log q_i) of two logit rows, in double (0 for identical rows).
double KlFromLogits(std::span<const float> base, double base_log_normalizer, std::span<const float> other);

// The base model's next-token distributions over fixed windows, computed once, and the mean KL of any
// other set of weights (same config) from them. MeanKl(weights) uses one inference state held here (not
// for concurrent use); MeanKl(weights, state) with a state from MakeState() per thread is.
class KlEvaluator {
 public:
  KlEvaluator(const LlamaConfig& config, const LlamaWeights& base, std::vector<std::vector<int32_t>> windows);
  // Mean over every position of every window of KL(base || weights).
  double MeanKl(const LlamaWeights& weights);
  double MeanKl(const LlamaWeights& weights, InferenceState& state) const;
  InferenceState MakeState() const;
  int64_t positions() const { return static_cast<int64_t>(log_normalizers_.size()); }
  int64_t windows() const { return static_cast<int64_t>(windows_.size()); }

 private:
  LlamaConfig config_;
  std::vector<std::vector<int32_t>> windows_;
  int64_t longest_ = 0;
  InferenceState state_;
  std::vector<float> logits_;            // [positions, vocab]
  std::vector<double> log_normalizers_;  // [positions]
};

// A model's weight views with some tensors replaced by quantized copies owned here (by QuantizeMatrix,
// run by the real kernels): a plan evaluated without writing a file. Tensors not in `formats` keep the
// model's views; a tied head follows token_embd. Formats must be able to store their tensors.
struct QuantizedWeights {
  LlamaWeights weights;
  std::vector<AlignedBuffer> storage;
  int64_t bytes = 0;  // of every tensor the model file would hold (norms and unreplaced tensors as stored)
};
QuantizedWeights QuantizeWeights(const Model& model, const std::map<std::string, WeightFormat>& formats,
                                 const ImportanceMap& importance = {});

}  // namespace mixq
