// GPTQ (Frantar et al. 2022, as AutoGPTQ implements it): a linear layer's weights quantized column by
// column into mixq's INT formats, each column's rounding error fed back into the columns not yet quantized
// through the inverse of the layer's input Hessian H = 2/n sum x x^T. docs/gptq.md describes the choices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mixq/formats/weight_format.h"
#include "mixq/model/forward.h"

namespace mixq {

// H = (2/n) sum_t x_t x_t^T over every calibration token seen so far, for one linear layer of `cols` inputs.
//
// Kept in float: at cols = 11008 the matrix is 485 MB (969 MB in double) and each batch costs a
// [n, cols] x [cols, n] product, twice as fast in float. The running-mean form keeps the magnitudes
// those of one token's x x^T however many tokens come, and float's ~1e-7 relative rounding per batch is
// far below the 1% damping GPTQ adds; the factorisation, where conditioning matters, is done in double
// (GptqQuantizeMatrix).
// Storage: only the lower triangle is maintained (entry (i, j), i >= j, at data()[j * cols + i], i.e.
// column-major lower == row-major upper); Matrix() gives the full symmetric copy.
class HessianAccumulator {
 public:
  // `name` (e.g. "blk.0.attn_q") only labels error messages.
  explicit HessianAccumulator(int64_t cols, std::string name = {});

  // Adds a batch of activations `x` [n_tokens, cols] (row-major float, as LinearCall::input):
  // H = H * n_old / n_new + (2 / n_new) * x^T x. Throws mixq::Error for a column-count mismatch or a
  // non-finite activation (H is left unchanged then).
  void Add(const float* x, int64_t n_tokens, int64_t cols);
  // The input of one observed linear call (call.input, call.n_tokens, call.in_dim).
  void Add(const LinearCall& call);

  int64_t cols() const { return cols_; }
  int64_t n_tokens() const { return n_tokens_; }
  const std::string& name() const { return name_; }
  // [cols, cols]; see the storage note above: only the lower triangle (column-major) is meaningful.
  const float* data() const { return h_.data(); }
  // The full symmetric H, row-major [cols, cols].
  std::vector<float> Matrix() const;

 private:
  int64_t cols_;
  int64_t n_tokens_ = 0;
  std::string name_;
  std::vector<float> h_;
};

struct GptqOptions {
  double damp = 0.01;        // lambda = damp * mean(diag H) is added to H's diagonal
  int64_t block_size = 128;  // columns per lazy batch update (a block never straddles a group start)
  bool act_order = false;    // process columns by decreasing diag(H); group params then fixed upfront
  // Group (scale, zero) search weighs each column's squared error by diag(H) (its mean 2*x_j^2), as an
  // imatrix does for RTN; false: plain squared error.
  bool weight_params_by_hessian = true;
  // When the damped H is not (numerically) positive definite, damp is multiplied by 10 (0 becomes 1e-4)
  // up to this many times before giving up.
  int max_damp_retries = 4;
  bool keep_dequantized = false;  // fill GptqResult::dequantized
};

struct GptqResult {
  WeightFormat format;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;         // RowBytes(format.dtype, cols, format.group)
  std::vector<std::byte> data;  // rows * row_bytes, exactly the layout QuantizeIntMatrix writes
  double damp = 0.0;            // the damp fraction finally used
  double lambda = 0.0;          // the absolute value added to diag(H): damp * mean(diag H)
  int retries = 0;              // how many times the damping was raised
  // 1/2 sum_rows sum_j (w_j - q_j)^2 / U_jj^2 (AutoGPTQ's loss, U the upper Cholesky factor of H^-1, w_j
  // the error-updated weight): equals 1/2 sum_rows (w - q)^T H_damped (w - q) for the original rows w, i.e.
  // the mean over calibration tokens of ||x (W - Q)^T||^2 under the damped H.
  double proxy_loss = 0.0;
  std::vector<float> dequantized;  // [rows, cols] row-major when options.keep_dequantized (dense + sparse)
  // With a salient mask: the FP16 value (as float) each salient weight is kept at, in row-major order of the
  // mask's positions (the order of a CSR sparse part); the dense codes there are the zero-point.
  std::vector<float> salient_values;
};

// Quantizes the row-major [rows, cols] float matrix `w` (a linear layer's weight, one output channel per
// row) into `format` (a mixq INT format) with GPTQ, given the Hessian of its inputs.
// `hessian` is [cols, cols] symmetric; only the entries hessian[j * cols + i] with i >= j are read (the
// layout HessianAccumulator::data() keeps). `name` labels messages and errors.
// Throws mixq::Error naming the tensor for a non-INT format, a bad option, non-finite weights or Hessian,
// or a Hessian still not positive definite after options.max_damp_retries raises of the damping (each
// raise is logged as a warning).
// salient: optional [rows, cols] mask of weights kept in FP16 (quant/salient.h, SpQR's outliers): when the
// column loop reaches one, its "quantized" value is its current (error-updated) weight rounded to FP16, so
// its error is only that rounding, which is fed forward as any other; the dense part stores the zero-point
// code there, and the group parameters are searched without it (formats/int_quant.h's exclude).
GptqResult GptqQuantizeMatrix(const float* w, int64_t rows, int64_t cols, const float* hessian,
                              const WeightFormat& format, const GptqOptions& options, const std::string& name,
                              const uint8_t* salient = nullptr);
// The same with the accumulated Hessian (its cols must equal `cols`).
GptqResult GptqQuantizeMatrix(const float* w, int64_t rows, int64_t cols, const HessianAccumulator& hessian,
                              const WeightFormat& format, const GptqOptions& options, const std::string& name,
                              const uint8_t* salient = nullptr);

// [H^-1]_jj for every input j of the Hessian GPTQ would factor (dead inputs fixed, damped as
// options.damp, raised as GPTQ raises it): the denominator of the OBS saliency w^2 / [H^-1]_jj that
// --salient-by impact ranks by. +inf for a dead input (H_jj = 0: its weight never meets a nonzero input).
// Throws mixq::Error as GptqQuantizeMatrix does for a bad Hessian.
std::vector<double> HessianInverseDiagonal(const float* hessian, int64_t cols, const GptqOptions& options,
                                           const std::string& name);

}  // namespace mixq
