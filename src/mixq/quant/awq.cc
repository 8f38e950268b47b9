// AWQ for one LLaMA block: scale search, folding and clipping (AutoAWQ's method on mixq's quantizers).
#include "mixq/quant/awq.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <random>

#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/timer.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/ops.h"
#include "mixq/quant/quantize_model.h"

namespace mixq {
namespace {

constexpr double kMinScale = 1e-4;  // AutoAWQ's clamp on s before normalisation
// Rows of a weight difference measured per MatMul call: bounds the [n_tokens, rows] scratch.
constexpr int64_t kErrorRowChunk = 512;

constexpr LinearKind kAttnInputLinears[] = {LinearKind::kQ, LinearKind::kK, LinearKind::kV};
constexpr LinearKind kAttnOutputLinears[] = {LinearKind::kO};
constexpr LinearKind kFfnInputLinears[] = {LinearKind::kGate, LinearKind::kUp};
constexpr LinearKind kFfnDownLinears[] = {LinearKind::kDown};

bool IsFloatFormat(const WeightFormat& f) { return Traits(f.dtype).is_float; }

bool AllFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

TensorView F32View(const float* data, int64_t rows, int64_t cols) {
  TensorView v;
  v.name = "awq_scratch";
  v.dtype = DType::kF32;
  v.shape = {rows, cols};
  v.data = reinterpret_cast<const std::byte*>(data);
  v.bytes = static_cast<size_t>(rows * cols) * sizeof(float);
  return v;
}

// The output error ||X D^T||^2 of each row of a weight difference D [rows, d] on fixed inputs X [n, d].
// When d < n it goes through the Gram matrix X^T X (d^2 work per row instead of n * d): the same
// quadratic form, cheaper for narrow clipping groups and wide calibration sets.
class RowErrorMeter {
 public:
  RowErrorMeter(const float* x, int64_t n, int64_t d) : x_(x), n_(n), d_(d) {
    if (d_ < n_) {
      std::vector<float> xt(static_cast<size_t>(d_ * n_));
      for (int64_t t = 0; t < n_; ++t) {
        for (int64_t c = 0; c < d_; ++c) xt[static_cast<size_t>(c * n_ + t)] = x_[t * d_ + c];
      }
      gram_.resize(static_cast<size_t>(d_ * d_));
      MatMul(F32View(xt.data(), d_, n_), xt.data(), d_, gram_.data());
    }
  }

  // err[r] = ||X D_r||^2 for r < rows.
  void RowErrors(const float* delta, int64_t rows, double* err) const {
    const bool gram = !gram_.empty();
    std::vector<float> y(static_cast<size_t>((gram ? d_ : n_) * std::min(rows, kErrorRowChunk)));
    for (int64_t r0 = 0; r0 < rows; r0 += kErrorRowChunk) {
      const int64_t m = std::min(kErrorRowChunk, rows - r0);
      const float* d = delta + r0 * d_;
      if (gram) {
        // y[r, a] = sum_b H[a, b] D[r, b]; err_r = sum_a y[r, a] D[r, a].
        MatMul(F32View(gram_.data(), d_, d_), d, m, y.data());
        for (int64_t r = 0; r < m; ++r) {
          double e = 0.0;
          for (int64_t a = 0; a < d_; ++a) e += static_cast<double>(y[r * d_ + a]) * d[r * d_ + a];
          err[r0 + r] = e;
        }
      } else {
        // y[t, r] = sum_c X[t, c] D[r, c]; err_r = sum_t y[t, r]^2.
        MatMul(F32View(d, m, d_), x_, n_, y.data());
        for (int64_t r = 0; r < m; ++r) err[r0 + r] = 0.0;
        for (int64_t t = 0; t < n_; ++t) {
          for (int64_t r = 0; r < m; ++r) {
            const double v = y[t * m + r];
            err[r0 + r] += v * v;
          }
        }
      }
    }
  }

  double Total(const float* delta, int64_t rows) const {
    std::vector<double> err(static_cast<size_t>(rows));
    RowErrors(delta, rows, err.data());
    return std::accumulate(err.begin(), err.end(), 0.0);
  }

 private:
  const float* x_;
  int64_t n_;
  int64_t d_;
  std::vector<float> gram_;  // [d, d] X^T X, empty when d >= n
};

// Which scale group's inputs a linear reads.
AwqGroup GroupOf(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQ:
    case LinearKind::kK:
    case LinearKind::kV: return AwqGroup::kAttnInput;
    case LinearKind::kO: return AwqGroup::kAttnOutput;
    case LinearKind::kGate:
    case LinearKind::kUp: return AwqGroup::kFfnInput;
    case LinearKind::kDown: return AwqGroup::kFfnDown;
    case LinearKind::kOutput: break;  // the head belongs to no block
  }
  MIXQ_CHECK(false);
  return AwqGroup::kAttnInput;
}

int GroupIndex(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQ: return 0;
    case LinearKind::kO: return 1;
    case LinearKind::kGate: return 2;
    case LinearKind::kDown: return 3;
    default: return -1;  // the other linears read the same input as one of these
  }
}

int64_t GroupInDim(const LayerFloat& lf, AwqGroup group) {
  return lf.linear(AwqGroupLinears(group).front()).shape[1];
}

// Whether the attention-output group can be folded: attn_v's output channels are attn_output's input
// channels only without grouped-query attention.
std::string AttnOutputSkipReason(const LayerFloat& lf) {
  if (lf.wv.shape[0] == lf.wo.shape[1]) return {};
  return fmt::format("grouped-query attention: attn_v gives {} channels, attn_output reads {}", lf.wv.shape[0],
                     lf.wo.shape[1]);
}

// Input columns per clipping group; 0 = not clipped.
int64_t ClipGroupSize(const WeightFormat& f, int64_t cols) {
  if (IsFloatFormat(f)) return 0;
  if (IsIntFormat(f.dtype)) {
    if (f.per_tensor) return 0;  // one scale for the whole tensor: a row's clip cannot be judged alone
    return f.group == 0 ? cols : std::min(f.group, cols);
  }
  return Traits(f.dtype).block_size;  // ggml blocks are quantized independently of each other
}

void CheckStorable(const WeightFormat& f, const Tensor& w, int64_t layer, LinearKind kind) {
  const std::string why = WhyCannotStore(f, w.shape[1]);
  if (!why.empty()) {
    Fail("AWQ layer {} {}: format {} cannot hold its rows: {}", layer, LinearKindName(kind), WeightFormatName(f),
         why);
  }
}

void CheckOptions(const AwqOptions& o) {
  if (o.n_grid < 1) Fail("AWQ option n_grid: expected >= 1, got {}", o.n_grid);
  if (o.n_clip_grid < 1) Fail("AWQ option n_clip_grid: expected >= 1, got {}", o.n_clip_grid);
  if (!(o.max_shrink >= 0.0 && o.max_shrink < 1.0)) {
    Fail("AWQ option max_shrink: expected a value in [0, 1), got {}", o.max_shrink);
  }
  if (o.max_tokens < 1) Fail("AWQ option max_tokens: expected >= 1, got {}", o.max_tokens);
}

// The sorted indices of `count` of `total` tokens, uniformly without replacement.
std::vector<int64_t> SampleTokens(int64_t total, int64_t count, uint64_t seed) {
  std::vector<int64_t> idx(static_cast<size_t>(total));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  if (count >= total) return idx;
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < count; ++i) {
    // Partial Fisher-Yates; the modulo bias at 2^64 is irrelevant here.
    const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(total - i));
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
  }
  idx.resize(static_cast<size_t>(count));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// Thrown by the observer once attn_output has run: the rest of the block is not needed for the
// attention group's error, and ForwardLayer has no way to stop early (it is two thirds of the work).
struct StopAfterAttnOutput {};

// attn_output's outputs ([tokens, dim], windows concatenated) of block `lw` on each window.
std::vector<float> AttnOutputs(const LlamaConfig& config, const LayerWeights& lw, int64_t layer,
                               const std::vector<std::vector<float>>& windows) {
  LlamaConfig one = config;
  one.n_layers = 1;
  int64_t max_ctx = 1;
  for (const auto& w : windows) max_ctx = std::max(max_ctx, static_cast<int64_t>(w.size()) / config.dim);
  InferenceState state = MakeInferenceState(one, max_ctx, max_ctx);
  std::vector<float> out;
  state.observer = [&](const LinearCall& call) {
    if (call.kind != LinearKind::kO) return;
    out.insert(out.end(), call.output, call.output + call.n_tokens * call.out_dim);
    throw StopAfterAttnOutput{};
  };
  for (const auto& w : windows) {
    const int64_t n = static_cast<int64_t>(w.size()) / config.dim;
    std::copy(w.begin(), w.end(), state.x.as<float>());
    PrepareRope(one, state, 0, n);
    try {
      ForwardLayer(one, lw, layer, state, 0, n, 0);
    } catch (const StopAfterAttnOutput&) {
    }
  }
  return out;
}

// The MLP's output down(silu(x gate^T) * (x up^T)) ([n, dim]) for inputs x [n, in].
std::vector<float> MlpOutputs(const TensorView& gate, const TensorView& up, const TensorView& down, const float* x,
                              int64_t n) {
  const int64_t hidden = gate.shape[0];
  std::vector<float> g(static_cast<size_t>(n * hidden)), u(g.size());
  std::vector<float> y(static_cast<size_t>(n * down.shape[0]));
  MatMul(gate, x, n, g.data());
  MatMul(up, x, n, u.data());
  SwiGlu(g.data(), u.data(), n * hidden);
  MatMul(down, g.data(), n, y.data());
  return y;
}

double SquaredDistance(const std::vector<float>& a, const std::vector<float>& b) {
  MIXQ_CHECK_EQ(a.size(), b.size());
  double e = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    e += d * d;
  }
  return e;
}

// AutoAWQ's min-max parameters of one set of values sharing a scale, as FakeQuantizeMinMax documents.
struct MinMaxParams {
  float scale = 0.0f;
  float inv = 0.0f;  // 1 / scale, 0 when the scale is 0 (every value reads back as 0)
  float zero = 0.0f;
  float code_lo = 0.0f;
  float code_hi = 0.0f;
};

MinMaxParams MinMaxFor(float lo, float hi, int bits, bool symmetric) {
  MinMaxParams p;
  float scale = 0.0f;
  if (symmetric) {
    const float nmax = static_cast<float>(1 << (bits - 1));
    scale = std::max(-lo, hi) / (nmax - 1.0f);
    p.code_lo = -nmax;
    p.code_hi = nmax - 1.0f;
  } else {
    const float qmax = static_cast<float>((1 << bits) - 1);
    scale = (hi - lo) / qmax;
    p.code_lo = 0.0f;
    p.code_hi = qmax;
  }
  // Stored as FP16, as mixq's INT rows hold it.
  p.scale = F16ToF32(F32ToF16(std::min(scale, 65504.0f)));
  if (!(p.scale > 0.0f)) return MinMaxParams{};
  p.inv = 1.0f / p.scale;
  if (!symmetric) p.zero = std::clamp(std::nearbyint(-lo * p.inv), p.code_lo, p.code_hi);
  return p;
}

void ApplyMinMax(const MinMaxParams& p, const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float code = std::clamp(std::nearbyint(x[i] * p.inv) + p.zero, p.code_lo, p.code_hi);
    out[i] = (code - p.zero) * p.scale;
  }
}

// The search's fake quantizer for one matrix: AutoAWQ's min-max for INT formats when asked, otherwise the
// format's own. `parallel` = false keeps it on the calling thread (inside a parallel loop).
void SearchFakeQuantize(const WeightFormat& format, AwqQuantizer quantizer, const float* w, int64_t rows,
                        int64_t cols, float* out, bool parallel) {
  if (quantizer == AwqQuantizer::kMinMax && IsIntFormat(format.dtype)) {
    FakeQuantizeMinMax(format, w, rows, cols, out, parallel);
    return;
  }
  const std::vector<float> q = FakeQuantize(format, w, rows, cols);
  std::copy(q.begin(), q.end(), out);
}

// Work (multiply-adds, weights) below which a loop here runs on one thread: on a busy 2-core machine a
// parallel region on small work waits for descheduled threads longer than the work takes.
constexpr int64_t kMinParallelWork = int64_t{1} << 18;

}  // namespace

const char* AwqGroupName(AwqGroup group) {
  switch (group) {
    case AwqGroup::kAttnInput: return "attn_norm->attn_q,attn_k,attn_v";
    case AwqGroup::kAttnOutput: return "attn_v->attn_output";
    case AwqGroup::kFfnInput: return "ffn_norm->ffn_gate,ffn_up";
    case AwqGroup::kFfnDown: return "ffn_up->ffn_down";
  }
  MIXQ_CHECK(false);
  return "";
}

std::span<const LinearKind> AwqGroupLinears(AwqGroup group) {
  switch (group) {
    case AwqGroup::kAttnInput: return kAttnInputLinears;
    case AwqGroup::kAttnOutput: return kAttnOutputLinears;
    case AwqGroup::kFfnInput: return kFfnInputLinears;
    case AwqGroup::kFfnDown: return kFfnDownLinears;
  }
  MIXQ_CHECK(false);
  return {};
}

std::vector<float> FakeQuantize(const WeightFormat& format, const float* w, int64_t rows, int64_t cols) {
  // The quantizers check finiteness inside parallel loops, where an exception cannot escape.
  if (!AllFinite(w, rows * cols)) Fail("FakeQuantize: non-finite weight in a [{}, {}] matrix", rows, cols);
  const std::optional<size_t> bytes = TensorBytes(format.dtype, {rows, cols}, format.group);
  if (!bytes) Fail("FakeQuantize: {} cannot hold rows of {} weights", WeightFormatName(format), cols);
  std::vector<std::byte> packed(*bytes);
  QuantizeMatrix(format, w, rows, cols, packed.data());
  std::vector<float> out(static_cast<size_t>(rows * cols));
  TensorToFloat(TensorView{"", format.dtype, {rows, cols}, packed.data(), *bytes, format.group}, out.data());
  return out;
}

void FakeQuantizeMinMax(const WeightFormat& format, const float* w, int64_t rows, int64_t cols, float* out,
                        bool parallel) {
  MIXQ_CHECK(IsIntFormat(format.dtype));
  const DTypeTraits& traits = Traits(format.dtype);
  if (format.per_tensor) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < rows * cols; ++i) lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
    ApplyMinMax(MinMaxFor(lo, hi, traits.bits, traits.symmetric), w, out, rows * cols);
    return;
  }
  const int64_t group = format.group == 0 ? cols : std::min(format.group, cols);
#pragma omp parallel for schedule(static) if (parallel && rows * cols > kMinParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += group) {
      const int64_t len = std::min(group, cols - c0);
      const float* x = w + r * cols + c0;
      float lo = 0.0f, hi = 0.0f;
      for (int64_t i = 0; i < len; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
      ApplyMinMax(MinMaxFor(lo, hi, traits.bits, traits.symmetric), x, out + r * cols + c0, len);
    }
  }
}

AwqInputs CollectAwqInputs(const LlamaConfig& config, const LayerFloat& lf, int64_t layer,
                           std::span<const std::vector<float>> windows, const AwqOptions& options) {
  CheckOptions(options);
  if (windows.empty()) Fail("AWQ layer {}: no calibration windows", layer);
  int64_t total = 0;
  int64_t max_ctx = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    const auto size = static_cast<int64_t>(windows[w].size());
    if (size == 0 || size % config.dim != 0) {
      Fail("AWQ layer {}: calibration window {} has {} values, expected a positive multiple of dim {}", layer, w,
           size, config.dim);
    }
    total += size / config.dim;
    max_ctx = std::max(max_ctx, size / config.dim);
  }

  AwqInputs in;
  in.layer = layer;
  in.n_tokens_total = total;
  const std::vector<int64_t> picked = SampleTokens(total, options.max_tokens, options.seed);
  in.n_sampled = static_cast<int64_t>(picked.size());
  // sample_row[global token] = its row in `samples`, or -1.
  std::vector<int64_t> sample_row(static_cast<size_t>(total), -1);
  for (size_t i = 0; i < picked.size(); ++i) sample_row[static_cast<size_t>(picked[i])] = static_cast<int64_t>(i);

  const LayerWeights views = lf.views();
  for (int g = 0; g < kAwqGroups; ++g) {
    const int64_t d = GroupInDim(lf, static_cast<AwqGroup>(g));
    in.in_dim[g] = d;
    in.samples[g].assign(static_cast<size_t>(in.n_sampled * d), 0.0f);
  }
  std::array<std::vector<double>, kAwqGroups> abs_sums;
  for (int g = 0; g < kAwqGroups; ++g) abs_sums[g].assign(static_cast<size_t>(in.in_dim[g]), 0.0);

  int64_t attn_tokens = 0;
  for (const std::vector<float>& window : windows) {
    const int64_t n = static_cast<int64_t>(window.size()) / config.dim;
    if (!in.attn_windows.empty() && attn_tokens + n > options.max_tokens) break;
    in.attn_windows.push_back(window);
    attn_tokens += n;
  }
  in.mlp_reference.assign(static_cast<size_t>(in.n_sampled * config.dim), 0.0f);

  LlamaConfig one = config;
  one.n_layers = 1;
  InferenceState state = MakeInferenceState(one, max_ctx, max_ctx);
  int64_t window_start = 0;  // global index of the current window's first token
  size_t window_index = 0;
  state.observer = [&](const LinearCall& call) {
    if (call.kind == LinearKind::kO && window_index < in.attn_windows.size()) {
      in.attn_reference.insert(in.attn_reference.end(), call.output, call.output + call.n_tokens * call.out_dim);
    }
    if (call.kind == LinearKind::kDown) {
      for (int64_t t = 0; t < call.n_tokens; ++t) {
        const int64_t row = sample_row[static_cast<size_t>(window_start + t)];
        if (row >= 0) std::copy_n(call.output + t * call.out_dim, call.out_dim, in.mlp_reference.data() + row * call.out_dim);
      }
    }
    const int g = GroupIndex(call.kind);
    if (g < 0) return;
    MIXQ_CHECK_EQ(call.in_dim, in.in_dim[g]);
    double* sums = abs_sums[g].data();
    for (int64_t t = 0; t < call.n_tokens; ++t) {
      const float* x = call.input + t * call.in_dim;
      for (int64_t c = 0; c < call.in_dim; ++c) sums[c] += std::fabs(static_cast<double>(x[c]));
      const int64_t row = sample_row[static_cast<size_t>(window_start + t)];
      if (row >= 0) std::copy_n(x, call.in_dim, in.samples[g].data() + row * call.in_dim);
    }
  };
  for (const std::vector<float>& window : windows) {
    const int64_t n = static_cast<int64_t>(window.size()) / config.dim;
    std::copy(window.begin(), window.end(), state.x.as<float>());
    PrepareRope(one, state, 0, n);
    ForwardLayer(one, views, layer, state, 0, n, 0);
    window_start += n;
    ++window_index;
  }
  for (int g = 0; g < kAwqGroups; ++g) {
    in.mean_abs[g].resize(abs_sums[g].size());
    for (size_t c = 0; c < abs_sums[g].size(); ++c) {
      in.mean_abs[g][c] = static_cast<float>(abs_sums[g][c] / static_cast<double>(total));
    }
  }
  return in;
}

AwqGroupResult AwqSearchGroupScale(const LlamaConfig& config, const LayerFloat& lf, int64_t layer, AwqGroup group,
                                   const AwqInputs& inputs, const std::array<WeightFormat, kLinearKinds>& formats,
                                   const AwqOptions& options) {
  CheckOptions(options);
  const int g = static_cast<int>(group);
  const int64_t d = GroupInDim(lf, group);
  AwqGroupResult result;
  result.scales.assign(static_cast<size_t>(d), 1.0f);
  if (group == AwqGroup::kAttnOutput) {
    result.skip_reason = AttnOutputSkipReason(lf);
    if (!result.skip_reason.empty()) return result;
  }
  std::vector<LinearKind> quantized;
  for (LinearKind kind : AwqGroupLinears(group)) {
    const WeightFormat& f = formats[static_cast<size_t>(kind)];
    if (IsFloatFormat(f)) continue;
    CheckStorable(f, lf.linear(kind), layer, kind);
    quantized.push_back(kind);
  }
  if (quantized.empty()) {
    result.skip_reason = "every linear of the group stays float";
    return result;
  }
  if (inputs.in_dim[g] != d || static_cast<int64_t>(inputs.mean_abs[g].size()) != d ||
      static_cast<int64_t>(inputs.samples[g].size()) != inputs.n_sampled * d) {
    Fail("AWQ layer {} {}: calibration inputs have {} channels, the weights read {}", layer, AwqGroupName(group),
         inputs.in_dim[g], d);
  }
  if (inputs.n_sampled < 1) Fail("AWQ layer {} {}: no calibration tokens", layer, AwqGroupName(group));

  // The attention and MLP groups are measured on their module's output; the others on their one linear.
  const bool linear_objective = group == AwqGroup::kAttnOutput || group == AwqGroup::kFfnDown;
  std::optional<RowErrorMeter> meter;
  if (linear_objective) meter.emplace(inputs.samples[g].data(), inputs.n_sampled, d);
  if (group == AwqGroup::kAttnInput && inputs.attn_reference.empty()) {
    Fail("AWQ layer {} {}: no attention windows in the calibration inputs", layer, AwqGroupName(group));
  }
  const float* mean_abs = inputs.mean_abs[g].data();
  result.searched = true;
  result.error_rtn = std::numeric_limits<double>::quiet_NaN();
  double best = std::numeric_limits<double>::infinity();
  bool found = false;
  std::vector<float> s(static_cast<size_t>(d));
  std::array<std::vector<float>, kLinearKinds> candidate;  // Q(W s) / s of each quantized linear
  std::vector<float> scaled;                              // W s
  for (int i = 0; i < options.n_grid; ++i) {
    const double alpha = static_cast<double>(i) / options.n_grid;
    // AutoAWQ: s = x_mean^alpha clamped to 1e-4, then divided by sqrt(max * min). pow(x, 0) is 1 for every
    // x (NaN included), so alpha = 0 is exactly s = 1: plain RTN.
    double s_max = -std::numeric_limits<double>::infinity();
    double s_min = std::numeric_limits<double>::infinity();
    std::vector<double> sd(static_cast<size_t>(d));
    bool finite = true;
    for (int64_t c = 0; c < d; ++c) {
      const double v = std::max(std::pow(static_cast<double>(mean_abs[c]), alpha), kMinScale);
      if (!std::isfinite(v)) finite = false;
      sd[static_cast<size_t>(c)] = v;
      s_max = std::max(s_max, v);
      s_min = std::min(s_min, v);
    }
    const double norm = std::sqrt(s_max * s_min);
    for (int64_t c = 0; c < d && finite; ++c) {
      s[static_cast<size_t>(c)] = static_cast<float>(sd[static_cast<size_t>(c)] / norm);
      if (!std::isfinite(s[static_cast<size_t>(c)]) || !(s[static_cast<size_t>(c)] > 0.0f)) finite = false;
    }
    for (size_t k = 0; k < quantized.size() && finite; ++k) {
      const Tensor& w = lf.linear(quantized[k]);
      const int64_t rows = w.shape[0];
      const float* wp = w.view().as<float>();
      std::vector<float>& cand = candidate[static_cast<size_t>(quantized[k])];
      cand.resize(static_cast<size_t>(rows * d));
      scaled.resize(cand.size());
      const float* sp = s.data();
#pragma omp parallel for schedule(static) if (rows * d > kMinParallelWork)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < d; ++c) scaled[r * d + c] = wp[r * d + c] * sp[c];
      }
      if (!AllFinite(scaled.data(), rows * d)) {
        finite = false;
        break;
      }
      SearchFakeQuantize(formats[static_cast<size_t>(quantized[k])], options.quantizer, scaled.data(), rows, d,
                         cand.data(), true);
#pragma omp parallel for schedule(static) if (rows * d > kMinParallelWork)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < d; ++c) cand[r * d + c] /= sp[c];
      }
    }
    double error = 0.0;
    if (finite) {
      // The weights each linear runs with: its candidate, or its FP32 weights when it stays float.
      auto view = [&](LinearKind kind) {
        const std::vector<float>& cand = candidate[static_cast<size_t>(kind)];
        const Tensor& w = lf.linear(kind);
        if (IsFloatFormat(formats[static_cast<size_t>(kind)])) return w.view();
        TensorView v = F32View(cand.data(), w.shape[0], w.shape[1]);
        v.name = w.name;
        return v;
      };
      switch (group) {
        case AwqGroup::kAttnInput: {
          LayerWeights lw = lf.views();
          lw.wq = view(LinearKind::kQ);
          lw.wk = view(LinearKind::kK);
          lw.wv = view(LinearKind::kV);
          error = SquaredDistance(AttnOutputs(config, lw, layer, inputs.attn_windows), inputs.attn_reference);
          break;
        }
        case AwqGroup::kFfnInput:
          error = SquaredDistance(MlpOutputs(view(LinearKind::kGate), view(LinearKind::kUp), lf.w_down.view(),
                                             inputs.samples[g].data(), inputs.n_sampled),
                                  inputs.mlp_reference);
          break;
        case AwqGroup::kAttnOutput:
        case AwqGroup::kFfnDown: {
          for (LinearKind kind : quantized) {
            const Tensor& w = lf.linear(kind);
            const float* wp = w.view().as<float>();
            std::vector<float> delta(static_cast<size_t>(w.shape[0] * d));
            const float* cp = candidate[static_cast<size_t>(kind)].data();
            const auto size = static_cast<int64_t>(delta.size());
#pragma omp parallel for schedule(static) if (size > kMinParallelWork)
            for (int64_t j = 0; j < size; ++j) delta[j] = wp[j] - cp[j];
            error += meter->Total(delta.data(), w.shape[0]);
          }
          break;
        }
      }
    }
    if (!finite || !std::isfinite(error)) {
      ++result.n_nonfinite;
      continue;
    }
    if (i == 0) result.error_rtn = error;
    if (error < best) {
      best = error;
      found = true;
      result.alpha = alpha;
      result.scales = s;
    }
  }
  if (!found) {
    Fail("AWQ layer {} {}: all {} grid points gave non-finite scales or error (NaN/Inf in the calibration "
         "inputs or the weights?)",
         layer, AwqGroupName(group), options.n_grid);
  }
  result.error_best = best;
  return result;
}

void AwqFoldScales(LayerFloat& lf, AwqGroup group, std::span<const float> s) {
  const int64_t d = GroupInDim(lf, group);
  if (static_cast<int64_t>(s.size()) != d) {
    Fail("AwqFoldScales {}: expected {} scales, got {}", AwqGroupName(group), d, s.size());
  }
  for (size_t c = 0; c < s.size(); ++c) {
    if (!std::isfinite(s[c]) || !(s[c] > 0.0f)) {
      Fail("AwqFoldScales {}: scale {} is {}, expected a finite positive value", AwqGroupName(group), c, s[c]);
    }
  }
  if (group == AwqGroup::kAttnOutput) {
    const std::string why = AttnOutputSkipReason(lf);
    if (!why.empty()) Fail("AwqFoldScales {}: cannot fold under {}", AwqGroupName(group), why);
  }
  // The op before: a norm weight [d], or the rows of the linear whose outputs are the group's inputs.
  auto divide_rows = [&](Tensor& t) {
    const int64_t cols = t.shape.size() == 1 ? 1 : t.shape[1];
    float* p = t.as<float>();
    for (int64_t r = 0; r < d; ++r) {
      for (int64_t c = 0; c < cols; ++c) p[r * cols + c] /= s[static_cast<size_t>(r)];
    }
  };
  switch (group) {
    case AwqGroup::kAttnInput: divide_rows(lf.attn_norm); break;
    case AwqGroup::kAttnOutput: divide_rows(lf.wv); break;
    case AwqGroup::kFfnInput: divide_rows(lf.ffn_norm); break;
    case AwqGroup::kFfnDown: divide_rows(lf.w_up); break;
  }
  for (LinearKind kind : AwqGroupLinears(group)) {
    Tensor& w = lf.linear(kind);
    float* p = w.as<float>();
    for (int64_t r = 0; r < w.shape[0]; ++r) {
      for (int64_t c = 0; c < d; ++c) p[r * d + c] *= s[static_cast<size_t>(c)];
    }
  }
}

AwqLinearResult AwqClipLinear(Tensor& w, const WeightFormat& format, const float* x, int64_t n_tokens,
                              const AwqOptions& options) {
  CheckOptions(options);
  MIXQ_CHECK(w.dtype == DType::kF32 && w.shape.size() == 2);
  const int64_t rows = w.shape[0];
  const int64_t cols = w.shape[1];
  AwqLinearResult result;
  result.clip_group = ClipGroupSize(format, cols);
  if (result.clip_group == 0 || n_tokens < 1) return result;
  const std::string why = WhyCannotStore(format, cols);
  if (!why.empty()) Fail("AWQ clip of '{}': format {}: {}", w.name, WeightFormatName(format), why);
  if (!AllFinite(w.as<float>(), rows * cols)) Fail("AWQ clip of '{}': non-finite weight", w.name);
  result.clipped = true;

  // AutoAWQ: shrink = 1 - i / n_grid for i < int(max_shrink * n_grid); i = 0 (no clipping) always included.
  const int n_shrink = std::max(1, static_cast<int>(options.max_shrink * options.n_clip_grid));
  const int64_t group = result.clip_group;
  const int64_t n_groups = (cols + group - 1) / group;
  // A slice of whole clipping groups quantizes exactly as they do inside the full row.
  const WeightFormat slice_format =
      IsIntFormat(format.dtype) ? WeightFormat{format.dtype, format.group == 0 ? 0 : group, false} : format;
  float* p = w.as<float>();
  // Per clipping group: the sum of the chosen shrinks, and of the rows' errors at shrink 1 and at their best.
  std::vector<double> shrink_sum(static_cast<size_t>(n_groups), 0.0);
  std::vector<double> error_before(static_cast<size_t>(n_groups), 0.0), error_after(error_before.size());

  // One clipping group: its own [n_tokens, len] inputs (through their Gram matrix when narrower than the
  // token count, so every sampled token costs nothing per shrink), every shrink quantized on the group's
  // [rows, len] slice.
  auto clip_group = [&](int64_t k, bool parallel) {
    const int64_t c0 = k * group;
    const int64_t len = std::min(group, cols - c0);
    std::vector<float> xg(static_cast<size_t>(n_tokens * len));
    for (int64_t t = 0; t < n_tokens; ++t) std::copy_n(x + t * cols + c0, len, xg.data() + t * len);
    const RowErrorMeter meter(xg.data(), n_tokens, len);
    std::vector<float> wg(static_cast<size_t>(rows * len)), cg(wg.size()), q(wg.size());
    std::vector<double> err(static_cast<size_t>(rows)), best_err(static_cast<size_t>(rows));
    std::vector<float> max_abs(static_cast<size_t>(rows)), best_shrink(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(p + r * cols + c0, len, wg.data() + r * len);
      float m = 0.0f;
      for (int64_t c = 0; c < len; ++c) m = std::max(m, std::fabs(wg[r * len + c]));
      max_abs[r] = m;
      best_err[r] = std::numeric_limits<double>::infinity();
      best_shrink[r] = 1.0f;
    }
    for (int i = 0; i < n_shrink; ++i) {
      const float shrink = static_cast<float>(1.0 - static_cast<double>(i) / options.n_clip_grid);
      for (int64_t r = 0; r < rows; ++r) {
        const float lim = max_abs[r] * shrink;
        for (int64_t c = 0; c < len; ++c) cg[r * len + c] = std::clamp(wg[r * len + c], -lim, lim);
      }
      SearchFakeQuantize(slice_format, options.quantizer, cg.data(), rows, len, q.data(), parallel);
      // Error against the unclipped weights, as AutoAWQ's org_out.
      for (size_t j = 0; j < q.size(); ++j) q[j] = wg[j] - q[j];
      meter.RowErrors(q.data(), rows, err.data());
      for (int64_t r = 0; r < rows; ++r) {
        if (i == 0) error_before[static_cast<size_t>(k)] += err[r];
        if (err[r] < best_err[r]) best_err[r] = err[r], best_shrink[r] = shrink;
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float lim = max_abs[r] * best_shrink[r];
      for (int64_t c = 0; c < len; ++c) p[r * cols + c0 + c] = std::clamp(p[r * cols + c0 + c], -lim, lim);
      shrink_sum[static_cast<size_t>(k)] += best_shrink[r];
      error_after[static_cast<size_t>(k)] += best_err[r];
    }
  };
  // Groups write disjoint columns: run them on the threads, each single-threaded inside, when there are
  // enough of them; a few wide groups (per-channel INT) use the threads inside instead.
  if (n_groups >= 8) {
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < n_groups; ++k) clip_group(k, false);
  } else {
    for (int64_t k = 0; k < n_groups; ++k) clip_group(k, true);
  }
  result.error_before = std::accumulate(error_before.begin(), error_before.end(), 0.0);
  result.error_after = std::accumulate(error_after.begin(), error_after.end(), 0.0);
  result.mean_clip = std::accumulate(shrink_sum.begin(), shrink_sum.end(), 0.0) / static_cast<double>(rows * n_groups);
  return result;
}

AwqLayerResult AwqLayer(const LlamaConfig& config, LayerFloat& lf, int64_t layer,
                        std::span<const std::vector<float>> windows,
                        const std::array<WeightFormat, kLinearKinds>& formats, const AwqOptions& options) {
  Timer timer;
  CheckOptions(options);
  for (int k = 0; k < kLinearKinds; ++k) {
    const auto kind = static_cast<LinearKind>(k);
    const WeightFormat& f = formats[static_cast<size_t>(k)];
    if (!IsFloatFormat(f)) CheckStorable(f, lf.linear(kind), layer, kind);
  }
  AwqLayerResult result;
  result.layer = layer;
  AwqInputs inputs = CollectAwqInputs(config, lf, layer, windows, options);
  result.n_tokens_total = inputs.n_tokens_total;
  result.n_sampled = inputs.n_sampled;

  // As AutoAWQ: every group is searched on the original weights and inputs, then all are folded.
  for (int g = 0; g < kAwqGroups; ++g) {
    result.groups[g] = AwqSearchGroupScale(config, lf, layer, static_cast<AwqGroup>(g), inputs, formats, options);
  }
  for (int g = 0; g < kAwqGroups; ++g) {
    const AwqGroupResult& r = result.groups[g];
    if (!r.searched) continue;
    AwqFoldScales(lf, static_cast<AwqGroup>(g), r.scales);
    // The clip search sees the inputs the folded weights will: x / s (AutoAWQ scales its cached inputs too).
    const int64_t d = inputs.in_dim[g];
    float* x = inputs.samples[g].data();
    for (int64_t t = 0; t < inputs.n_sampled; ++t) {
      for (int64_t c = 0; c < d; ++c) x[t * d + c] /= r.scales[static_cast<size_t>(c)];
    }
  }
  if (options.clip) {
    for (int k = 0; k < kLinearKinds; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      // AutoAWQ skips q and k: their errors pass through the softmax, which the output error ignores.
      if (kind == LinearKind::kQ || kind == LinearKind::kK) continue;
      const int g = static_cast<int>(GroupOf(kind));
      result.linears[static_cast<size_t>(k)] = AwqClipLinear(lf.linear(kind), formats[static_cast<size_t>(k)],
                                                             inputs.samples[g].data(), inputs.n_sampled, options);
    }
  }
  result.seconds = timer.ElapsedSeconds();
  return result;
}

}  // namespace mixq
