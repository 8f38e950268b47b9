// GPTQ into mixq INT formats: the Hessian accumulator, the damped inverse-Cholesky factor, and the column
// loop with lazy block updates, rows processed in parallel (GPTQ treats every output row independently).
#include "mixq/quant/gptq.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/int_quant.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

// Columns of H updated per parallel task: wide enough for an efficient GEMM, narrow enough that the
// wasted upper half of each diagonal block (panel/cols of the work) stays small.
constexpr int64_t kHessianPanel = 128;
// Rows per parallel task of the column loop: a task's block of W (rows x block_size floats) stays in L2.
constexpr int64_t kRowChunk = 256;
// A Cholesky pivot whose square is below this fraction of its diagonal entry means the damped H is
// singular to working precision: its inverse would be noise, so the damping is raised instead.
constexpr double kMinRelativePivot = 1e-10;

std::string Label(const std::string& name) { return name.empty() ? std::string("<unnamed>") : name; }

// Inverts the upper-triangular `r` in place (its strictly lower part is ignored and left as is) by halves:
// [A B; 0 C]^-1 = [A^-1, -A^-1 B C^-1; 0, C^-1]. Eigen's triangular solve against the identity does n^3
// flops on one thread; this does n^3/3, mostly in triangular-times-dense products.
void InvertUpperInPlace(Eigen::Ref<MatrixD> r) {
  const int64_t n = r.rows();
  if (n <= 128) {
    MatrixD inv = MatrixD::Identity(n, n);
    r.triangularView<Eigen::Upper>().solveInPlace(inv);
    r.triangularView<Eigen::Upper>() = inv;
    return;
  }
  const int64_t k = n / 2;
  InvertUpperInPlace(r.topLeftCorner(k, k));
  InvertUpperInPlace(r.bottomRightCorner(n - k, n - k));
  const MatrixD t = r.topLeftCorner(k, k).triangularView<Eigen::Upper>() * r.topRightCorner(k, n - k);
  r.topRightCorner(k, n - k).noalias() = -t * r.bottomRightCorner(n - k, n - k).triangularView<Eigen::Upper>();
}

// The upper-triangular U with H^-1 = U^T U (what GPTQ walks), or false if H is not numerically positive
// definite. Instead of AutoGPTQ's cholesky -> cholesky_inverse -> cholesky (three cubic steps), one
// Cholesky of H in reversed order and one triangular inverse: J H J = M M^T gives H = R R^T with R = J M J
// upper triangular, so H^-1 = R^-T R^-1 and U = R^-1 (the Cholesky factor is unique).
// Takes `h` = J H J (H with rows and columns in reverse order, so no reversed copy is needed), consumed.
bool UpperCholeskyOfInverse(MatrixD& h, MatrixF* u) {
  const int64_t n = h.rows();
  const Eigen::VectorXd diag = h.diagonal();
  Eigen::LLT<Eigen::Ref<MatrixD>, Eigen::Lower> llt(h);
  if (llt.info() != Eigen::Success) return false;
  for (int64_t k = 0; k < n; ++k) {
    const double pivot = h(k, k);
    if (!(pivot * pivot >= kMinRelativePivot * diag(k)) || !std::isfinite(pivot)) return false;
  }
  h.reverseInPlace();  // the upper triangle now holds R = J M J
  InvertUpperInPlace(h);
  h.triangularView<Eigen::StrictlyLower>().setZero();
  if (!h.allFinite()) return false;
  *u = h.cast<float>();
  return true;
}

// The per-weight step of GPTQ for mixq's INT formats: group parameters are set per (row, group) and a
// weight is then rounded with them. A format with other group parameters (ggml's blocks) would be another
// struct with the same three members; the column loop below only calls these.
struct IntColumnQuantizer {
  IntColumnQuantizer(const WeightFormat& format, int64_t rows_, int64_t cols_, const uint8_t* salient_)
      : layout(format.dtype, cols_, format.group), rows(rows_), cols(cols_), salient(salient_) {
    params.resize(static_cast<size_t>(rows * layout.n_groups));
    codes.resize(static_cast<size_t>(rows * cols));
    if (salient != nullptr) sparse.resize(static_cast<size_t>(rows * cols));
  }

  IntRowLayout layout;
  int64_t rows, cols;
  const uint8_t* salient;              // [rows, cols] or null
  std::vector<IntGroupParams> params;  // [rows, n_groups]
  std::vector<uint8_t> codes;          // [rows, cols], original column order
  std::vector<float> sparse;           // [rows, cols] the FP16 values kept at salient positions

  int64_t group() const { return layout.group; }

  // The (scale, zero) of group k of `row` from the group's current values x[0..n) (the group's columns in
  // original order), each value's squared error weighed by importance (null: 1).
  // Salient weights of the group take no part.
  void ChooseParams(int64_t row, int64_t k, const float* x, int64_t n, const float* importance) {
    const uint8_t* exclude = salient == nullptr ? nullptr : salient + row * cols + layout.GroupStart(k);
    params[static_cast<size_t>(row * layout.n_groups + k)] =
        SearchIntGroupParams(x, n, importance, layout.bits, layout.symmetric, exclude);
  }

  // Rounds weight `w` of (row, original column `col`) with its group's parameters; returns the value stored
  // (dense + sparse: for a salient weight, w rounded to FP16 over a dense zero).
  float Quantize(int64_t row, int64_t col, float w) {
    const IntGroupParams& p = params[static_cast<size_t>(row * layout.n_groups + col / layout.group)];
    if (salient != nullptr && salient[row * cols + col] != 0) {
      codes[static_cast<size_t>(row * cols + col)] = static_cast<uint8_t>(p.zero);
      const float kept = F16ToF32(F32ToF16(std::clamp(w, -65504.0f, 65504.0f)));  // FP16's finite range
      sparse[static_cast<size_t>(row * cols + col)] = kept;
      return kept;
    }
    const int code = IntCode(w, p, layout.bits);
    codes[static_cast<size_t>(row * cols + col)] = static_cast<uint8_t>(code);
    return p.scale * static_cast<float>(code - p.zero);
  }

  // Writes the rows in tensor/int_layout.h's layout (the same bytes QuantizeIntMatrix writes for the same
  // parameters and codes).
  void Pack(std::byte* dst) const {
    auto* out = reinterpret_cast<uint8_t*>(dst);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      uint8_t* row = out + static_cast<size_t>(r) * layout.row_bytes;
      std::memset(row, 0, layout.row_bytes);
      for (int64_t k = 0; k < layout.n_groups; ++k) {
        const IntGroupParams& p = params[static_cast<size_t>(r * layout.n_groups + k)];
        const uint16_t scale_bits = F32ToF16(p.scale);
        std::memcpy(row + 2 * k, &scale_bits, sizeof(scale_bits));
        if (!layout.symmetric)
          WritePackedCode(row + layout.zeros_offset, k, layout.bits, static_cast<uint32_t>(p.zero));
        uint8_t* group_codes = row + layout.GroupCodesOffset(k);
        const uint8_t* src = codes.data() + r * cols + layout.GroupStart(k);
        for (int64_t i = 0; i < layout.GroupLength(k); ++i) WritePackedCode(group_codes, i, layout.bits, src[i]);
      }
    }
  }
};

void Validate(const float* w, int64_t rows, int64_t cols, const float* hessian, const WeightFormat& format,
              const GptqOptions& options, const std::string& label) {
  if (!IsIntFormat(format.dtype)) {
    Fail(
        "GPTQ of {}: format {} is not a mixq INT format; GPTQ supports mixq's INT formats (int<2..8>-g<N>, "
        "-pc, -pt, optionally -sym)",
        label, WeightFormatName(format));
  }
  if (format.group < 0 || (format.per_tensor && format.group != 0)) {
    Fail("GPTQ of {}: format with group {} and per_tensor {}: expected group >= 0, and 0 when per-tensor", label,
         format.group, format.per_tensor);
  }
  if (rows < 0 || cols < 1) Fail("GPTQ of {}: shape [{}, {}]: expected rows >= 0 and cols >= 1", label, rows, cols);
  if (!std::isfinite(options.damp) || options.damp < 0.0) {
    Fail("GPTQ of {}: damp {} : expected a finite value >= 0", label, options.damp);
  }
  if (options.block_size < 1) Fail("GPTQ of {}: block_size {}: expected >= 1", label, options.block_size);
  if (options.max_damp_retries < 0) {
    Fail("GPTQ of {}: max_damp_retries {}: expected >= 0", label, options.max_damp_retries);
  }
  MIXQ_CHECK(w != nullptr || rows == 0);
  MIXQ_CHECK(hessian != nullptr);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = w[r * cols + c];
      if (!std::isfinite(v))
        Fail("GPTQ of {}: weight [{}, {}] is {}; only finite weights can be quantized", label, r, c, v);
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = j; i < cols; ++i) {
      const float v = hessian[j * cols + i];
      if (!std::isfinite(v)) Fail("GPTQ of {}: Hessian entry [{}, {}] is {}; expected finite", label, i, j, v);
    }
    const float d = hessian[j * cols + j];
    if (d < 0.0f) {
      Fail("GPTQ of {}: Hessian diagonal [{}, {}] is {}; a Hessian 2/n sum x x^T has a diagonal >= 0", label, j, j, d);
    }
  }
}

// U with H^-1 = U^T U for the damped H with columns in the order `perm` (dead inputs' diagonal set to 1),
// raising the damping until H is positive definite (each raise logged). `hess(i, j)` reads H.
template <typename Hess>
MatrixF DampedInverseFactor(const Hess& hess, const std::vector<char>& dead, const std::vector<int64_t>& perm,
                            const GptqOptions& options, const std::string& label, double* damp_used,
                            double* lambda_used, int* retries) {
  const int64_t cols = static_cast<int64_t>(perm.size());
  auto diag_fixed = [&](int64_t j) { return dead[j] ? 1.0 : static_cast<double>(hess(j, j)); };
  double mean_diag = 0.0;
  for (int64_t j = 0; j < cols; ++j) mean_diag += diag_fixed(j);
  mean_diag /= static_cast<double>(cols);
  MatrixF u;
  double damp = options.damp;
  for (int attempt = 0;; ++attempt) {
    // The permuted H in reverse order: entry (a, b) is H[perm[n-1-a], perm[n-1-b]].
    MatrixD hr(cols, cols);
    for (int64_t b = 0; b < cols; ++b) {
      const int64_t pb = perm[cols - 1 - b];
      for (int64_t a = 0; a < cols; ++a) {
        const int64_t pa = perm[cols - 1 - a];
        hr(a, b) = a == b ? diag_fixed(pa) : hess(pa, pb);
      }
    }
    const double lambda = damp * mean_diag;
    hr.diagonal().array() += lambda;
    if (UpperCholeskyOfInverse(hr, &u)) {
      *damp_used = damp;
      *lambda_used = lambda;
      *retries = attempt;
      return u;
    }
    if (attempt == options.max_damp_retries) {
      Fail(
          "GPTQ of {}: the Hessian plus damping {} * mean(diag H) is not positive definite after {} raises of the "
          "damping; calibrate on more tokens or start from a larger damp",
          label, damp, attempt);
    }
    const double next = damp > 0.0 ? damp * 10.0 : 1e-4;
    Warn("GPTQ of {}: the Hessian plus damping {} * mean(diag H) is not positive definite; retrying with damp {}",
         label, damp, next);
    damp = next;
  }
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t cols, std::string name) : cols_(cols), name_(std::move(name)) {
  if (cols < 1) Fail("Hessian of {}: {} columns; expected >= 1", Label(name_), cols);
  h_.assign(static_cast<size_t>(cols * cols), 0.0f);
}

void HessianAccumulator::Add(const float* x, int64_t n_tokens, int64_t cols) {
  if (cols != cols_) Fail("Hessian of {}: a batch of {} columns; expected {}", Label(name_), cols, cols_);
  if (n_tokens < 0) Fail("Hessian of {}: a batch of {} tokens; expected >= 0", Label(name_), n_tokens);
  if (n_tokens == 0) return;
  MIXQ_CHECK(x != nullptr);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = x[t * cols + c];
      if (!std::isfinite(v))
        Fail("Hessian of {}: activation [token {}, channel {}] is {}; expected finite", Label(name_), t, c, v);
    }
  }
  const int64_t n_new = n_tokens_ + n_tokens;
  const float keep = static_cast<float>(static_cast<double>(n_tokens_) / static_cast<double>(n_new));
  const float alpha = static_cast<float>(2.0 / static_cast<double>(n_new));
  // The row-major [n, cols] batch read column-major is x^T [cols, n]: column t is token t.
  const Eigen::Map<const MatrixF> xt(x, cols_, n_tokens);
  Eigen::Map<MatrixF> h(h_.data(), cols_, cols_);
  // Eigen's rank update (SYRK) runs on one thread; column panels of the lower triangle as separate GEMMs
  // use every core and do only ~panel/cols more work.
  const int64_t panels = (cols_ + kHessianPanel - 1) / kHessianPanel;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t j0 = p * kHessianPanel;
    const int64_t width = std::min(kHessianPanel, cols_ - j0);
    auto block = h.block(j0, j0, cols_ - j0, width);
    block *= keep;
    block.noalias() += alpha * xt.middleRows(j0, cols_ - j0) * xt.middleRows(j0, width).transpose();
  }
  n_tokens_ = n_new;
}

void HessianAccumulator::Add(const LinearCall& call) { Add(call.input, call.n_tokens, call.in_dim); }

std::vector<float> HessianAccumulator::Matrix() const {
  std::vector<float> full(h_.size());
  for (int64_t j = 0; j < cols_; ++j) {
    for (int64_t i = j; i < cols_; ++i) {
      const float v = h_[static_cast<size_t>(j * cols_ + i)];
      full[static_cast<size_t>(i * cols_ + j)] = v;
      full[static_cast<size_t>(j * cols_ + i)] = v;
    }
  }
  return full;
}

GptqResult GptqQuantizeMatrix(const float* w, int64_t rows, int64_t cols, const HessianAccumulator& hessian,
                              const WeightFormat& format, const GptqOptions& options, const std::string& name,
                              const uint8_t* salient) {
  if (hessian.cols() != cols) {
    Fail("GPTQ of {}: the Hessian is for {} input columns; the weight has {}", Label(name), hessian.cols(), cols);
  }
  return GptqQuantizeMatrix(w, rows, cols, hessian.data(), format, options, name, salient);
}

std::vector<double> HessianInverseDiagonal(const float* hessian, int64_t cols, const GptqOptions& options,
                                           const std::string& name) {
  const std::string label = Label(name);
  if (cols < 1) Fail("Hessian of {}: {} columns; expected >= 1", label, cols);
  // Validate's checks of the Hessian and options, with a dummy format and no weights.
  Validate(nullptr, 0, cols, hessian, WeightFormat{DType::kInt4, 0, false}, options, label);
  auto hess = [&](int64_t i, int64_t j) { return i >= j ? hessian[j * cols + i] : hessian[i * cols + j]; };
  std::vector<char> dead(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) dead[j] = hess(j, j) == 0.0f;
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  double damp = 0.0, lambda = 0.0;
  int retries = 0;
  const MatrixF u = DampedInverseFactor(hess, dead, perm, options, label, &damp, &lambda, &retries);
  // H^-1 = U^T U: its diagonal is the squared norm of each column of U.
  std::vector<double> diag(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) {
    diag[static_cast<size_t>(j)] =
        dead[j] ? std::numeric_limits<double>::infinity() : u.col(j).head(j + 1).cast<double>().squaredNorm();
  }
  return diag;
}

GptqResult GptqQuantizeMatrix(const float* w, int64_t rows, int64_t cols, const float* hessian,
                              const WeightFormat& format, const GptqOptions& options, const std::string& name,
                              const uint8_t* salient) {
  const std::string label = Label(name);
  Validate(w, rows, cols, hessian, format, options, label);

  GptqResult result;
  result.format = format;
  result.rows = rows;
  result.cols = cols;
  result.row_bytes = *RowBytes(format.dtype, cols, format.group);
  result.data.resize(static_cast<size_t>(rows) * result.row_bytes);
  if (options.keep_dequantized) result.dequantized.resize(static_cast<size_t>(rows * cols));

  auto hess = [&](int64_t i, int64_t j) { return i >= j ? hessian[j * cols + i] : hessian[i * cols + j]; };

  // Dead inputs (never active in calibration) have no curvature: their weights are dropped (set to 0, as
  // AutoGPTQ) and H_jj = 1 keeps H invertible without coupling them to anything.
  std::vector<char> dead(static_cast<size_t>(cols));
  std::vector<float> importance(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) {
    dead[j] = hess(j, j) == 0.0f;
    importance[j] = hess(j, j);
  }
  const float* group_importance = options.weight_params_by_hessian ? importance.data() : nullptr;

  // Column order: original, or by decreasing diag(H) (stable, so ties keep their order).
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  auto diag_fixed = [&](int64_t j) { return dead[j] ? 1.0 : static_cast<double>(hess(j, j)); };
  if (options.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return diag_fixed(a) > diag_fixed(b); });
  }

  MatrixF wp(rows, cols);  // the working weights, permuted columns; column-major so a column is contiguous
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t a = 0; a < cols; ++a) wp(r, a) = dead[perm[a]] ? 0.0f : w[r * cols + perm[a]];
  }

  const MatrixF u = DampedInverseFactor(hess, dead, perm, options, label, &result.damp, &result.lambda,
                                        &result.retries);

  IntColumnQuantizer quantizer(format, rows, cols, salient);
  const IntRowLayout& layout = quantizer.layout;
  const int64_t group = layout.group;
  // Group parameters fixed before the loop, from the (dead-zeroed) original weights: per-tensor (one set for
  // all rows) and act_order (the file stores groups of consecutive ORIGINAL columns, which act_order visits
  // out of order: AutoGPTQ's static_groups). Otherwise each group's parameters are chosen when the loop
  // reaches its first column, from its current error-updated weights.
  const bool static_params = format.per_tensor || options.act_order;
  if (format.per_tensor) {
    std::vector<float> all(static_cast<size_t>(rows * cols));
    std::vector<float> all_importance(group_importance == nullptr ? 0 : all.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        all[r * cols + c] = dead[c] ? 0.0f : w[r * cols + c];
        if (group_importance != nullptr) all_importance[r * cols + c] = group_importance[c];
      }
    }
    const IntGroupParams p =
        SearchIntGroupParams(all.data(), rows * cols, group_importance == nullptr ? nullptr : all_importance.data(),
                             layout.bits, layout.symmetric, salient);
    std::fill(quantizer.params.begin(), quantizer.params.end(), p);
  } else if (static_params) {
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> x(static_cast<size_t>(group));
      for (int64_t k = 0; k < layout.n_groups; ++k) {
        const int64_t start = layout.GroupStart(k), len = layout.GroupLength(k);
        for (int64_t i = 0; i < len; ++i) x[i] = dead[start + i] ? 0.0f : w[r * cols + start + i];
        quantizer.ChooseParams(r, k, x.data(), len, group_importance == nullptr ? nullptr : group_importance + start);
      }
    }
  }

  // Blocks end before the next group start (and hold whole groups when groups are shorter than a block), so
  // a group's first column is reached with every earlier column's error already fed into the whole group.
  auto block_end = [&](int64_t i1) {
    const int64_t end = std::min(cols, i1 + options.block_size);
    if (static_params) return end;
    if (group >= options.block_size) return std::min(end, (i1 / group + 1) * group);
    return std::min(cols, i1 + (options.block_size / group) * group);
  };

  MatrixF err(rows, std::min(options.block_size, cols));  // (w - q) / U_jj of a block's columns
  double loss = 0.0;
  float* deq = options.keep_dequantized ? result.dequantized.data() : nullptr;
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  for (int64_t i1 = 0; i1 < cols;) {
    const int64_t i2 = block_end(i1);
    const int64_t count = i2 - i1;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : loss) if (chunks > 1)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t r0 = chunk * kRowChunk;
      const int64_t nr = std::min(kRowChunk, rows - r0);
      std::vector<float> x(static_cast<size_t>(group));
      for (int64_t j = i1; j < i2; ++j) {
        if (!static_params && j % group == 0) {  // no permutation here: j is the original column
          const int64_t k = j / group, len = layout.GroupLength(k);
          for (int64_t r = r0; r < r0 + nr; ++r) {
            for (int64_t i = 0; i < len; ++i) x[i] = wp(r, j + i);
            quantizer.ChooseParams(r, k, x.data(), len, group_importance == nullptr ? nullptr : group_importance + j);
          }
        }
        const float d = u(j, j);
        const int64_t col = perm[j];
        for (int64_t r = r0; r < r0 + nr; ++r) {
          const float wv = wp(r, j);
          const float q = quantizer.Quantize(r, col, wv);
          if (deq != nullptr) deq[r * cols + col] = q;
          const float e = (wv - q) / d;
          err(r, j - i1) = e;
          loss += static_cast<double>(e) * e;
        }
        const auto e = err.col(j - i1).segment(r0, nr);
        for (int64_t c = j + 1; c < i2; ++c) wp.col(c).segment(r0, nr) -= u(j, c) * e;
      }
    }
    if (i2 < cols) wp.rightCols(cols - i2).noalias() -= err.leftCols(count) * u.block(i1, i2, count, cols - i2);
    i1 = i2;
  }
  result.proxy_loss = loss / 2.0;
  quantizer.Pack(result.data.data());
  if (salient != nullptr) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      if (salient[i] != 0) result.salient_values.push_back(quantizer.sparse[static_cast<size_t>(i)]);
    }
  }
  return result;
}

}  // namespace mixq
