// AWQ (activation-aware weight quantization, Lin et al. 2023, as AutoAWQ implements it) for one LLaMA
// block: per-input-channel scales searched against each linear's output error and folded into the op
// before, then AutoAWQ's weight clipping search. The block stays FP32; the caller quantizes it after.
//
// The steps are public so a driver (and the tests) can run them one at a time:
//   CollectAwqInputs     run the FP32 block over the calibration windows, keep the 4 groups' inputs
//   AwqSearchGroupScale  the alpha grid search of one scale group
//   AwqFoldScales        fold chosen scales into the op before and the group's weight columns
//   AwqClipLinear        the clipping search of one linear on its (scaled) inputs
//   AwqLayer             all of the above, in AutoAWQ's order
// docs/awq.md describes the method, where it follows AutoAWQ and where it simplifies.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mixq/formats/weight_format.h"
#include "mixq/model/config.h"
#include "mixq/model/forward.h"
#include "mixq/quant/layer_float.h"

namespace mixq {

// The four places a block's activations can be rescaled for free: each is an op whose output channels
// feed the input channels of some linears, so dividing the op's output by s and multiplying those
// linears' weight columns by s leaves the block's function unchanged.
enum class AwqGroup {
  kAttnInput,   // attn_norm weight -> attn_q, attn_k, attn_v
  kAttnOutput,  // attn_v rows -> attn_output (only without grouped-query attention)
  kFfnInput,    // ffn_norm weight -> ffn_gate, ffn_up
  kFfnDown,     // ffn_up rows -> ffn_down
};
inline constexpr int kAwqGroups = 4;
const char* AwqGroupName(AwqGroup group);  // "attn_norm->attn_q,attn_k,attn_v", ...
// The linears whose input columns share the group's scales.
std::span<const LinearKind> AwqGroupLinears(AwqGroup group);

// The fake quantizer the searches measure with, for mixq's INT formats (ggml and float formats always use
// their own quantizer).
enum class AwqQuantizer {
  // AutoAWQ's pseudo-quantizer: per group, the scale spans [min(w, 0), max(w, 0)] (symmetric: max|w| onto
  // code 2^(bits-1) - 1), FP16-rounded as stored, no scale search. About 40x cheaper than kFormat
  // (mixq's INT quantizer searches 38 scales per group), but it measures a quantizer other than the one
  // that stores the rows: measurably worse on stories260K (docs/awq.md: cost and quality).
  kMinMax,
  // The format's own quantizer (QuantizeMatrix: mixq's INT scale search), exactly what RTN stores.
  kFormat,
};

struct AwqOptions {
  int n_grid = 20;           // alpha in {0, 1/n_grid, ..., (n_grid-1)/n_grid}; 1 searches alpha = 0 only
  bool clip = true;          // run the clipping search after folding
  AwqQuantizer quantizer = AwqQuantizer::kFormat;
  // Calibration tokens kept (sampled uniformly without replacement, seeded) for the error the scale search
  // minimises; the attention objective runs on the first whole windows holding at most this many tokens.
  // Every search product is proportional to it (docs/awq.md: 2048 is the CPU trade-off measured on
  // stories260K; AutoAWQ runs 128 x 512 on a GPU). Memory: max_tokens * (2 * dim + q_dim + hidden_dim) floats, plus about
  // 3 * max_tokens * dim for the attention windows and the references. The per-channel means |x| use
  // every token.
  int64_t max_tokens = 2048;
  int n_clip_grid = 20;      // clip shrink candidates are 1 - i / n_clip_grid ...
  double max_shrink = 0.5;   // ... for i < max_shrink * n_clip_grid (AutoAWQ: 1.00, 0.95, ..., 0.55)
  uint64_t seed = 0;         // token sampling
};

// The inputs of the four scale groups, gathered from the FP32 block.
struct AwqInputs {
  int64_t layer = 0;
  int64_t n_tokens_total = 0;  // every token of every window
  int64_t n_sampled = 0;       // tokens kept in `samples`
  std::array<int64_t, kAwqGroups> in_dim{};
  std::array<std::vector<float>, kAwqGroups> mean_abs;  // [in_dim]: mean |x| per channel over all tokens
  std::array<std::vector<float>, kAwqGroups> samples;   // [n_sampled, in_dim]
  // AutoAWQ measures the attention-input group on the attention's output (attn_output's), which needs
  // whole sequences: the first windows holding at most max_tokens tokens (at least one window).
  std::vector<std::vector<float>> attn_windows;  // block inputs [ctx, dim]
  std::vector<float> attn_reference;             // [tokens of attn_windows, dim] FP32 attn_output outputs
  // ... and the FFN-input group on the MLP's output: ffn_down's FP32 outputs of the sampled tokens.
  std::vector<float> mlp_reference;              // [n_sampled, dim]
};

struct AwqGroupResult {
  bool searched = false;
  std::string skip_reason;     // why not searched (GQA, only float linears); empty when searched
  double alpha = 0.0;          // the chosen exponent; 0 = no scaling
  // The squared error of the group's inspected output (AutoAWQ's module2inspect; see AwqSearchGroupScale)
  // on the calibration tokens, at alpha 0 (plain RTN; NaN if that point was non-finite) and at the chosen
  // alpha (<= error_rtn).
  double error_rtn = 0.0;
  double error_best = 0.0;
  int n_nonfinite = 0;         // grid points skipped because their scales or error were NaN/Inf
  std::vector<float> scales;   // [in_dim] the chosen s (all 1 when not searched)
};

struct AwqLinearResult {
  bool clipped = false;        // false: float format, attn_q/attn_k (AutoAWQ skips them), per-tensor INT
  int64_t clip_group = 0;      // input columns per clipping group
  double mean_clip = 1.0;      // mean chosen shrink (max_val / max|w|) over rows and groups
  // The clip search's objective: the sum over rows r and clipping groups g of ||X_g (w_rg - Q(w'_rg))||^2
  // on the sampled inputs, w the unclipped weights and w' = w before clipping / the chosen clip after, Q
  // the search's fake quantizer (options.quantizer). Cross-group terms are left out, as in AutoAWQ's
  // per-group search, so after <= before always (shrink 1 is a candidate).
  double error_before = 0.0;
  double error_after = 0.0;
};

struct AwqLayerResult {
  int64_t layer = 0;
  int64_t n_tokens_total = 0;
  int64_t n_sampled = 0;
  std::array<AwqGroupResult, kAwqGroups> groups;
  std::array<AwqLinearResult, kLinearKinds> linears;
  double seconds = 0.0;
};

// Runs block `layer` (FP32 weights `lf`) over each window ([ctx, dim] residual stream entering the
// block, each from position 0) and returns the groups' inputs. Throws mixq::Error for a window whose size
// is not a positive multiple of config.dim.
AwqInputs CollectAwqInputs(const LlamaConfig& config, const LayerFloat& lf, int64_t layer,
                           std::span<const std::vector<float>> windows, const AwqOptions& options);

// AWQ's alpha grid search for one group on `lf`'s current weights: s = mean|x|^alpha (clamped to 1e-4,
// then divided by sqrt(max s * min s)); each non-float linear of the group becomes Q(W diag s) diag(1/s)
// and the error is AutoAWQ's module2inspect output error against FP32:
//   attention input:  attn_output's output (attention run with the candidate q, k, v) on attn_windows
//   attention output: ||X W_o^T - X W_o'^T||^2 on the sampled tokens
//   FFN input:        the MLP's output down(silu(gate) * up) on the sampled tokens (FP32 ffn_down)
//   FFN down:         ||X W_d^T - X W_d'^T||^2 on the sampled tokens
// Non-finite grid points are skipped; throws mixq::Error naming the layer and group if all are. Returns
// searched = false (scales all 1) for the attention-output group under grouped-query attention and for
// groups whose linears are all float.
AwqGroupResult AwqSearchGroupScale(const LlamaConfig& config, const LayerFloat& lf, int64_t layer, AwqGroup group,
                                   const AwqInputs& inputs, const std::array<WeightFormat, kLinearKinds>& formats,
                                   const AwqOptions& options);

// Divides the group's preceding op output by s (norm weight, or attn_v / ffn_up rows) and multiplies the
// group's weight columns by s. Throws mixq::Error if s has the wrong length or a non-positive or
// non-finite value, or for kAttnOutput under grouped-query attention.
void AwqFoldScales(LayerFloat& lf, AwqGroup group, std::span<const float> s);

// AutoAWQ's auto_clip for one linear w ([rows, cols] FP32, modified in place) whose inputs are x
// ([n_tokens, cols], already divided by the folded scales): per row and clipping group, the shrink of
// max|w| whose clamped, fake-quantized weights give the least output error. The clipping group is the
// format's group (INT -gN), the whole row (INT per-channel), the block (ggml types: 32, or 256 for the
// K-quants and IQ4_XS); per-tensor INT and float formats are not clipped. Each group's error goes through
// its Gram matrix X_g^T X_g when narrower than n_tokens; groups run on the threads in parallel.
AwqLinearResult AwqClipLinear(Tensor& w, const WeightFormat& format, const float* x, int64_t n_tokens,
                              const AwqOptions& options);

// AWQ on block `layer`: collect inputs, search all four groups on the original weights, fold them, then
// clip every quantized linear except attn_q and attn_k. `lf` is modified in place; `formats` are the
// formats the caller will quantize each linear to (float ones are left out of the searches). Throws
// mixq::Error for bad options, a format that cannot store a linear's rows, or an all-non-finite search.
AwqLayerResult AwqLayer(const LlamaConfig& config, LayerFloat& lf, int64_t layer,
                        std::span<const std::vector<float>> windows,
                        const std::array<WeightFormat, kLinearKinds>& formats, const AwqOptions& options = {});

// Quantizes w ([rows, cols] FP32) into `format` and reads it back: what RTN stores, what the searches
// measure with AwqQuantizer::kFormat, and what tests compare against. Float formats round through their type.
std::vector<float> FakeQuantize(const WeightFormat& format, const float* w, int64_t rows, int64_t cols);

// AutoAWQ's pseudo-quantizer (AwqQuantizer::kMinMax) in an INT format's bits, group and symmetry, read
// back: per group (row, or tensor when per_tensor) lo = min(w, 0), hi = max(w, 0); asymmetric: scale =
// (hi - lo) / (2^bits - 1) rounded to FP16, zero = round(-lo / scale); symmetric: scale = max|w| /
// (2^(bits-1) - 1); codes clamped to the format's range. Writes rows * cols values to out; rows run in
// parallel when `parallel`. Checks (MIXQ_CHECK) that the format is INT.
void FakeQuantizeMinMax(const WeightFormat& format, const float* w, int64_t rows, int64_t cols, float* out,
                        bool parallel = true);

}  // namespace mixq
