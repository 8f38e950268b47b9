// Salient weights (dense-and-sparse, SpQR / SqueezeLLM style): which weights of a linear layer stay in FP16
// beside the quantized dense part. Each criterion is one function that scores every weight (higher = keep);
// the selection keeps the top fraction, per row or per tensor. docs/salient.md describes the method.
//
// Adding a criterion (e.g. the Fisher / gradient one the training core brings) is one score function and
// one row of the table in salient.cc, plus, if it reads something new, a field of SalientScoreInputs.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mixq {

// What a criterion may read besides the weights. The caller fills what the criterion's `need` names.
struct SalientScoreInputs {
  const float* w = nullptr;  // [rows, cols] the weights the dense part would quantize (after AWQ's scaling)
  int64_t rows = 0;
  int64_t cols = 0;
  // [cols] ||x_j||: the root of the calibration sum of x_j^2 over tokens (activation).
  const float* channel_norm = nullptr;
  // [cols] [H^-1]_jj of the damped layer Hessian H = 2 X X^T / n (impact); +inf for an input never active
  // in calibration (its weight changes nothing on the calibration data: score 0).
  const double* hessian_inverse_diagonal = nullptr;
};

// What a criterion needs beyond the weights.
enum class SalientNeed { kWeightsOnly, kChannelNorms, kHessian };

struct SalientCriterion {
  std::string_view name;     // the --salient-by value
  SalientNeed need;
  std::string_view formula;  // for help texts and docs
  // Writes [rows, cols] scores (finite, >= 0); higher means keep in FP16.
  void (*score)(const SalientScoreInputs& in, float* scores);
};

// Every criterion, in the order the help text lists them.
std::span<const SalientCriterion> SalientCriteria();
// nullptr when `name` names none.
const SalientCriterion* FindSalientCriterion(std::string_view name);
std::string SalientCriterionNames();  // "magnitude, activation, impact"

// Row: every row keeps the same count (round(fraction * cols)): balanced rows for the fused kernel, but the
// fraction is rounded per row. Tensor: the top round(fraction * rows * cols) scores over the whole matrix,
// so rows with more important weights get more. The default is kTensor (docs/salient.md says why).
enum class SalientScope { kRow, kTensor };
std::optional<SalientScope> ParseSalientScope(std::string_view name);
const char* SalientScopeName(SalientScope scope);

struct SalientOptions {
  double fraction = 0.0;  // of each matrix's weights, in [0, kMaxSalientFraction)
  const SalientCriterion* criterion = nullptr;
  SalientScope scope = SalientScope::kTensor;

  bool enabled() const { return fraction > 0.0; }
};

// Above this, a "sparse" part costs more than a denser format would: 50% at 32 bits each is 16 bits/weight.
inline constexpr double kMaxSalientFraction = 0.5;

// "0.5%" or "0.005" -> 0.005. Throws mixq::Error naming `option` for text that is not a number or a
// fraction outside [0, kMaxSalientFraction).
double ParseSalientFraction(std::string_view text, std::string_view option = "--salient");

// The number of salient weights of a [rows, cols] matrix: fixed by the fraction and the shape alone, so a
// file writer can size the sparse part before the quantizer runs. Row: rows * round(fraction * cols);
// tensor: round(fraction * rows * cols) (round half up).
int64_t SalientCount(double fraction, int64_t rows, int64_t cols, SalientScope scope);

// The chosen positions, CSR over rows (the layout of the stored sparse part without its values).
struct SalientSelection {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint32_t> row_ptr;  // [rows + 1]
  std::vector<uint16_t> col;      // [nnz], increasing within a row

  int64_t nnz() const { return static_cast<int64_t>(col.size()); }
  // [rows, cols]: 1 at a salient position (the `exclude` mask QuantizeIntMatrix takes).
  std::vector<uint8_t> Mask() const;
};

// Keeps the SalientCount(fraction, rows, cols, scope) highest scores; ties go to the lower column (row
// scope) or the lower row-major index (tensor scope), so the choice is deterministic.
// Throws mixq::Error naming `name` when cols > 65536 (columns are stored as uint16).
SalientSelection SelectTopScores(const float* scores, int64_t rows, int64_t cols, double fraction,
                                 SalientScope scope, const std::string& name);

// Scores with options.criterion and selects. Throws mixq::Error naming `name` when the criterion's input
// is missing or a score is not finite.
SalientSelection SelectSalient(const SalientScoreInputs& in, const SalientOptions& options, const std::string& name);

// The FP16 bits of w at the selected positions, in CSR order (the values of the stored sparse part); values
// beyond FP16's range are held at its largest finite value.
std::vector<uint16_t> SalientValuesF16(const SalientSelection& s, const float* w);
// Writes the sparse values into the dense [rows, cols] float matrix at their positions (where the dense part
// reads exactly 0, so this is dense + sparse).
void AddSalientValues(const SalientSelection& s, const uint16_t* values, float* dense);
// Bytes of the stored sparse part: (rows + 1) row pointers of 4 bytes and 4 bytes per value (column + FP16),
// as SparseRowsView::bytes counts them (0 when nothing is salient: no sparse part is stored).
size_t SalientBytes(int64_t rows, int64_t nnz);

// ||x_j|| from a calibration file's per-channel sums of squares.
std::vector<float> ChannelNorms(std::span<const double> in_sum2);

}  // namespace mixq
