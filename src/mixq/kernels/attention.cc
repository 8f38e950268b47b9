// Attention's inner loops in Highway SIMD (see attention.h). Scores: four keys at a time, one vector
// accumulator each, lanes reduced once per key. Mix: the output slice lives in up to four vector
// accumulators while every value row passes. Tails shorter than a vector are scalar, so any head_dim works.
#include "mixq/kernels/attention.h"

#include <algorithm>
#include <cstddef>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "mixq/kernels/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace mixq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ScoresImpl(const float* q, const float* keys, int64_t stride, int64_t n_keys, int64_t head_dim, float scale,
                float* scores) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t full = head_dim / lanes * lanes;
  const auto tail = [&](const float* k) {
    float s = 0.0f;
    for (int64_t i = full; i < head_dim; ++i) s += q[i] * k[i];
    return s;
  };
  int64_t j = 0;
  for (; j + 4 <= n_keys; j += 4) {
    const float* k0 = keys + j * stride;
    const float* k1 = k0 + stride;
    const float* k2 = k1 + stride;
    const float* k3 = k2 + stride;
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (int64_t i = 0; i < full; i += lanes) {
      const auto qv = hn::LoadU(d, q + i);
      a0 = hn::MulAdd(qv, hn::LoadU(d, k0 + i), a0);
      a1 = hn::MulAdd(qv, hn::LoadU(d, k1 + i), a1);
      a2 = hn::MulAdd(qv, hn::LoadU(d, k2 + i), a2);
      a3 = hn::MulAdd(qv, hn::LoadU(d, k3 + i), a3);
    }
    scores[j] = scale * (hn::GetLane(hn::SumOfLanes(d, a0)) + tail(k0));
    scores[j + 1] = scale * (hn::GetLane(hn::SumOfLanes(d, a1)) + tail(k1));
    scores[j + 2] = scale * (hn::GetLane(hn::SumOfLanes(d, a2)) + tail(k2));
    scores[j + 3] = scale * (hn::GetLane(hn::SumOfLanes(d, a3)) + tail(k3));
  }
  for (; j < n_keys; ++j) {
    const float* k = keys + j * stride;
    auto a = hn::Zero(d);
    for (int64_t i = 0; i < full; i += lanes) a = hn::MulAdd(hn::LoadU(d, q + i), hn::LoadU(d, k + i), a);
    scores[j] = scale * (hn::GetLane(hn::SumOfLanes(d, a)) + tail(k));
  }
}

void MixImpl(const float* p, const float* values, int64_t stride, int64_t n_values, int64_t head_dim, float* out) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t full = head_dim / lanes * lanes;
  int64_t i = 0;
  for (; i + 4 * lanes <= full; i += 4 * lanes) {
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (int64_t j = 0; j < n_values; ++j) {
      const float* v = values + j * stride + i;
      const auto pj = hn::Set(d, p[j]);
      a0 = hn::MulAdd(pj, hn::LoadU(d, v), a0);
      a1 = hn::MulAdd(pj, hn::LoadU(d, v + lanes), a1);
      a2 = hn::MulAdd(pj, hn::LoadU(d, v + 2 * lanes), a2);
      a3 = hn::MulAdd(pj, hn::LoadU(d, v + 3 * lanes), a3);
    }
    hn::StoreU(a0, d, out + i);
    hn::StoreU(a1, d, out + i + lanes);
    hn::StoreU(a2, d, out + i + 2 * lanes);
    hn::StoreU(a3, d, out + i + 3 * lanes);
  }
  for (; i < full; i += lanes) {
    auto a = hn::Zero(d);
    for (int64_t j = 0; j < n_values; ++j) a = hn::MulAdd(hn::Set(d, p[j]), hn::LoadU(d, values + j * stride + i), a);
    hn::StoreU(a, d, out + i);
  }
  for (; i < head_dim; ++i) {
    float s = 0.0f;
    for (int64_t j = 0; j < n_values; ++j) s += p[j] * values[j * stride + i];
    out[i] = s;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mixq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mixq {

HWY_EXPORT(ScoresImpl);
HWY_EXPORT(MixImpl);

void AttentionScores(const float* q, const float* keys, int64_t stride, int64_t n_keys, int64_t head_dim, float scale,
                     float* scores) {
  HWY_DYNAMIC_DISPATCH(ScoresImpl)(q, keys, stride, n_keys, head_dim, scale, scores);
}

void AttentionMix(const float* p, const float* values, int64_t stride, int64_t n_values, int64_t head_dim,
                  float* out) {
  HWY_DYNAMIC_DISPATCH(MixImpl)(p, values, stride, n_values, head_dim, out);
}

}  // namespace mixq
#endif  // HWY_ONCE
