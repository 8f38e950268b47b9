// Salient-weight criteria (one score function each) and the top-fraction selection.
#include "mixq/quant/salient.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/formats/float16.h"

namespace mixq {
namespace {

// |w_ij|: large weights are the ones rounding hurts most in absolute terms.
void ScoreMagnitude(const SalientScoreInputs& in, float* scores) {
  for (int64_t i = 0; i < in.rows * in.cols; ++i) scores[i] = std::fabs(in.w[i]);
}

// |w_ij| * ||x_j||: the Wanda / AWQ statistic, the size of the weight's contribution to the output.
void ScoreActivation(const SalientScoreInputs& in, float* scores) {
  for (int64_t r = 0; r < in.rows; ++r) {
    for (int64_t j = 0; j < in.cols; ++j) {
      scores[r * in.cols + j] = std::fabs(in.w[r * in.cols + j]) * in.channel_norm[j];
    }
  }
}

// w_ij^2 / [H^-1]_jj: the OBS saliency (SpQR): the increase of the layer's output error when w_ij alone is
// removed and the other weights of its row compensate optimally.
void ScoreImpact(const SalientScoreInputs& in, float* scores) {
  for (int64_t r = 0; r < in.rows; ++r) {
    for (int64_t j = 0; j < in.cols; ++j) {
      const double w = in.w[r * in.cols + j];
      const double d = in.hessian_inverse_diagonal[j];
      scores[r * in.cols + j] = std::isinf(d) ? 0.0f : static_cast<float>(w * w / d);
    }
  }
}

constexpr SalientCriterion kCriteria[] = {
    {"magnitude", SalientNeed::kWeightsOnly, "|w_ij|", ScoreMagnitude},
    {"activation", SalientNeed::kChannelNorms, "|w_ij| * ||x_j||", ScoreActivation},
    {"impact", SalientNeed::kHessian, "w_ij^2 / [H^-1]_jj", ScoreImpact},
};

int64_t RoundHalfUp(double x) { return static_cast<int64_t>(std::floor(x + 0.5)); }

}  // namespace

std::span<const SalientCriterion> SalientCriteria() { return kCriteria; }

const SalientCriterion* FindSalientCriterion(std::string_view name) {
  for (const SalientCriterion& c : kCriteria) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string SalientCriterionNames() {
  std::string names;
  for (const SalientCriterion& c : kCriteria) {
    if (!names.empty()) names += ", ";
    names += c.name;
  }
  return names;
}

std::optional<SalientScope> ParseSalientScope(std::string_view name) {
  if (name == "row") return SalientScope::kRow;
  if (name == "tensor") return SalientScope::kTensor;
  return std::nullopt;
}

const char* SalientScopeName(SalientScope scope) { return scope == SalientScope::kRow ? "row" : "tensor"; }

double ParseSalientFraction(std::string_view text, std::string_view option) {
  std::string_view number = text;
  const bool percent = !number.empty() && number.back() == '%';
  if (percent) number.remove_suffix(1);
  double value = 0.0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || !std::isfinite(value)) {
    Fail("{} '{}' is not a fraction; expected e.g. 0.5% or 0.005", option, text);
  }
  const double fraction = percent ? value / 100.0 : value;
  if (!(fraction >= 0.0 && fraction < kMaxSalientFraction)) {
    Fail("{} '{}' is out of range: expected a fraction >= 0 and < {}% of the weights", option, text,
         kMaxSalientFraction * 100.0);
  }
  return fraction;
}

int64_t SalientCount(double fraction, int64_t rows, int64_t cols, SalientScope scope) {
  MIXQ_CHECK(fraction >= 0.0 && fraction < kMaxSalientFraction);
  MIXQ_CHECK(rows >= 0 && cols >= 0);
  if (scope == SalientScope::kRow) return rows * RoundHalfUp(fraction * static_cast<double>(cols));
  return RoundHalfUp(fraction * static_cast<double>(rows) * static_cast<double>(cols));
}

std::vector<uint8_t> SalientSelection::Mask() const {
  std::vector<uint8_t> mask(static_cast<size_t>(rows * cols), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (uint32_t i = row_ptr[r]; i < row_ptr[r + 1]; ++i) mask[static_cast<size_t>(r * cols + col[i])] = 1;
  }
  return mask;
}

SalientSelection SelectTopScores(const float* scores, int64_t rows, int64_t cols, double fraction,
                                 SalientScope scope, const std::string& name) {
  const int64_t count = SalientCount(fraction, rows, cols, scope);
  if (count > 0 && cols > 65536) {
    Fail("salient weights of '{}': rows of {} columns; the sparse part stores columns as uint16 (at most 65536)",
         name, cols);
  }
  MIXQ_CHECK(count <= rows * cols);
  SalientSelection s;
  s.rows = rows;
  s.cols = cols;
  s.row_ptr.assign(static_cast<size_t>(rows + 1), 0);
  // Higher score first, then the lower index: a strict total order, so the selection is unique.
  auto before = [&](int64_t a, int64_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  std::vector<uint8_t> keep(static_cast<size_t>(rows * cols), 0);
  if (scope == SalientScope::kRow) {
    const int64_t per_row = rows == 0 ? 0 : count / rows;
    std::vector<int64_t> idx(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows && per_row > 0; ++r) {
      std::iota(idx.begin(), idx.end(), r * cols);
      std::nth_element(idx.begin(), idx.begin() + (per_row - 1), idx.end(), before);
      for (int64_t i = 0; i < per_row; ++i) keep[static_cast<size_t>(idx[i])] = 1;
    }
  } else if (count > 0) {
    std::vector<int64_t> idx(static_cast<size_t>(rows * cols));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    std::nth_element(idx.begin(), idx.begin() + (count - 1), idx.end(), before);
    for (int64_t i = 0; i < count; ++i) keep[static_cast<size_t>(idx[i])] = 1;
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (keep[static_cast<size_t>(r * cols + c)]) s.col.push_back(static_cast<uint16_t>(c));
    }
    s.row_ptr[static_cast<size_t>(r + 1)] = static_cast<uint32_t>(s.col.size());
  }
  MIXQ_CHECK_EQ(s.nnz(), count);
  return s;
}

SalientSelection SelectSalient(const SalientScoreInputs& in, const SalientOptions& options, const std::string& name) {
  MIXQ_CHECK(options.criterion != nullptr);
  const SalientCriterion& c = *options.criterion;
  if (c.need == SalientNeed::kChannelNorms && in.channel_norm == nullptr) {
    Fail("--salient-by {} for '{}': no activation statistics for this tensor (give --calib STATS with it)", c.name,
         name);
  }
  if (c.need == SalientNeed::kHessian && in.hessian_inverse_diagonal == nullptr) {
    Fail("--salient-by {} for '{}': no layer Hessian (give calibration text with --data FILE)", c.name, name);
  }
  std::vector<float> scores(static_cast<size_t>(in.rows * in.cols));
  c.score(in, scores.data());
  for (int64_t i = 0; i < in.rows * in.cols; ++i) {
    if (!std::isfinite(scores[i]) || scores[i] < 0.0f) {
      Fail("--salient-by {} for '{}': score of weight [{}, {}] is {}; expected finite and >= 0", c.name, name,
           i / in.cols, i % in.cols, scores[i]);
    }
  }
  return SelectTopScores(scores.data(), in.rows, in.cols, options.fraction, options.scope, name);
}

std::vector<uint16_t> SalientValuesF16(const SalientSelection& s, const float* w) {
  std::vector<uint16_t> values;
  values.reserve(s.col.size());
  for (int64_t r = 0; r < s.rows; ++r) {
    for (uint32_t i = s.row_ptr[r]; i < s.row_ptr[r + 1]; ++i) {
      values.push_back(F32ToF16(std::clamp(w[r * s.cols + s.col[i]], -65504.0f, 65504.0f)));
    }
  }
  return values;
}

void AddSalientValues(const SalientSelection& s, const uint16_t* values, float* dense) {
  for (int64_t r = 0; r < s.rows; ++r) {
    for (uint32_t i = s.row_ptr[r]; i < s.row_ptr[r + 1]; ++i) dense[r * s.cols + s.col[i]] += F16ToF32(values[i]);
  }
}

size_t SalientBytes(int64_t rows, int64_t nnz) {
  return nnz == 0 ? 0 : static_cast<size_t>(rows + 1) * 4 + static_cast<size_t>(nnz) * 4;
}

std::vector<float> ChannelNorms(std::span<const double> in_sum2) {
  std::vector<float> norms(in_sum2.size());
  for (size_t j = 0; j < in_sum2.size(); ++j) norms[j] = static_cast<float>(std::sqrt(std::max(0.0, in_sum2[j])));
  return norms;
}

}  // namespace mixq
