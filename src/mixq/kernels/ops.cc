// RMSNorm, softmax, log-sum-exp and SwiGLU. Softmax and SwiGLU run Highway SIMD with its Exp (max error
// 1 ulp, as std::exp's): they were scalar std::exp loops, 3-5% of a 2048-token prefill (softmax) and,
// on one thread while the other waited, the whole SwiGLU of every layer.
#include "mixq/kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "mixq/base/check.h"
#include "mixq/base/error.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "mixq/kernels/ops.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace mixq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The most float lanes of any target's vector: the size of the buffers that take a tail.
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

// x[i] = exp(x[i] - max) over n values; returns their sum: float lanes over chunks of kSumChunk values,
// each chunk's total added in double (a float sum of a 70000-key row drifted by up to 4e-6 relative).
double ExpShiftedImpl(float* HWY_RESTRICT x, int64_t n, float max_value) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr int64_t kSumChunk = 256;
  const auto shift = hn::Set(d, max_value);
  double total = 0.0;
  int64_t i = 0;
  while (i + lanes <= n) {
    auto sum = hn::Zero(d);
    const int64_t chunk_end = std::min(n, i + kSumChunk);
    for (; i + lanes <= chunk_end; i += lanes) {
      const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), shift));
      hn::StoreU(e, d, x + i);
      sum = hn::Add(sum, e);
    }
    total += hn::GetLane(hn::SumOfLanes(d, sum));
  }
  if (i < n) {
    // The tail through a full vector in a local buffer, so it takes the same Exp; the lanes past it are
    // the lowest float, whose exp is 0.
    HWY_ALIGN float tail[kMaxLanes];
    std::fill_n(tail, kMaxLanes, std::numeric_limits<float>::lowest());
    std::copy(x + i, x + n, tail);
    const auto e = hn::Exp(d, hn::Sub(hn::Load(d, tail), shift));
    hn::Store(e, d, tail);
    std::copy_n(tail, n - i, x + i);
    total += hn::GetLane(hn::SumOfLanes(d, e));
  }
  return total;
}

// gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i]. exp's argument is held to 88 (exp(88) ~ 1.7e38 < FLT_MAX):
// beyond it silu(g) = g / (1 + e^-g) is below 1e-36 in magnitude either way, where std::exp's inf gave -0.
void SwiGluImpl(float* HWY_RESTRICT gate, const float* HWY_RESTRICT up, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto one = hn::Set(d, 1.0f);
  const auto limit = hn::Set(d, 88.0f);
  const auto silu_times = [&](auto g, auto u) {
    const auto e = hn::Exp(d, hn::Min(hn::Neg(g), limit));
    return hn::Mul(hn::Div(g, hn::Add(one, e)), u);
  };
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(silu_times(hn::LoadU(d, gate + i), hn::LoadU(d, up + i)), d, gate + i);
  }
  if (i < n) {
    HWY_ALIGN float tail_gate[kMaxLanes] = {};
    HWY_ALIGN float tail_up[kMaxLanes] = {};
    std::copy(gate + i, gate + n, tail_gate);
    std::copy(up + i, up + n, tail_up);
    hn::Store(silu_times(hn::Load(d, tail_gate), hn::Load(d, tail_up)), d, tail_gate);
    std::copy_n(tail_gate, n - i, gate + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mixq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mixq {

HWY_EXPORT(ExpShiftedImpl);
HWY_EXPORT(SwiGluImpl);

void RmsNorm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  // Sum of squares in double: the same as llama.cpp's ggml_vec_norm (ggml_float accumulation).
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum_squares / n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const float max_value = *std::max_element(x, x + n);
  const double sum = HWY_DYNAMIC_DISPATCH(ExpShiftedImpl)(x, n, max_value);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void SwiGlu(float* gate, const float* up, int64_t n) {
  const auto swiglu = HWY_DYNAMIC_DISPATCH(SwiGluImpl);
  // A prefill batch's n is tokens x hidden size (millions): both threads. Decode's one row (11008 for
  // LLaMA-2-7B, a few microseconds) stays on the calling thread.
  constexpr int64_t kChunk = int64_t{1} << 14;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n_chunks >= 4)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t begin = c * kChunk;
    swiglu(gate + begin, up + begin, std::min(kChunk, n - begin));
  }
}

double LogSumExp(std::span<const float> logits) {
  MIXQ_CHECK(!logits.empty());
  float max_logit = logits[0];
  for (float v : logits) max_logit = v > max_logit ? v : max_logit;
  // exp in double, not llama.cpp's expf: a normalizer off by e shifts every position's KLD by about e,
  // and expf's 1e-7 would drown the KLD of a near-lossless conversion (F16 vs F32 is ~1e-6).
  double sum_exp = 0.0;
  for (float v : logits) sum_exp += std::exp(static_cast<double>(v) - max_logit);
  if (!std::isfinite(max_logit) || !std::isfinite(sum_exp)) {
    Fail("the model produced non-finite logits (max {}, sum of exp {}); it cannot be compared", max_logit,
         sum_exp);
  }
  return max_logit + std::log(sum_exp);
}

}  // namespace mixq
#endif  // HWY_ONCE
