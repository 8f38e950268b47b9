// Attention's inner loops in Highway SIMD (see attention.h). Scores: four keys at a time, one vector
// accumulator each, lanes reduced once per key. Mix: the output slice lives in up to four vector
// accumulators while every value row passes. Tails shorter than a vector are scalar, so any head_dim works.
#include "mixq/kernels/attention.h"

#include <algorithm>
#include <cstddef>

#include "mixq/base/check.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "mixq/kernels/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace mixq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The dimensions past the last whole vector, as every scores kernel sums them (one function, so that the
// multi-query kernels equal the single-query one bit for bit whatever the compiler contracts; 0 when there
// are none, without the call).
HWY_NOINLINE float TailDotLoop(const float* q, const float* k, int64_t from, int64_t to) {
  float s = 0.0f;
  for (int64_t i = from; i < to; ++i) s += q[i] * k[i];
  return s;
}
HWY_INLINE float TailDot(const float* q, const float* k, int64_t from, int64_t to) {
  return from < to ? TailDotLoop(q, k, from, to) : 0.0f;
}

// out[i] = sum_j p[j] * values[j * stride + i] for one dimension i past the last whole vector (as above).
HWY_NOINLINE float TailMix(const float* p, const float* values, int64_t stride, int64_t n_values, int64_t i) {
  float s = 0.0f;
  for (int64_t j = 0; j < n_values; ++j) s += p[j] * values[j * stride + i];
  return s;
}

void ScoresImpl(const float* q, const float* keys, int64_t stride, int64_t n_keys, int64_t head_dim, float scale,
                float* scores) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t full = head_dim / lanes * lanes;
  const auto tail = [&](const float* k) { return TailDot(q, k, full, head_dim); };
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
  for (; i < head_dim; ++i) out[i] = TailMix(p, values, stride, n_values, i);
}

// kQ queries x kKeys keys a step: each key vector loaded once for all queries. Per (query, key) the same
// accumulator sequence as ScoresImpl (one vector over the whole vectors, lanes summed, tail, scale).
template <int kQ>
void ScoresQueriesTile(const float* const* q, const float* keys, int64_t stride, int64_t n_keys, int64_t head_dim,
                       float scale, float* const* scores) {
  constexpr int kKeys = HWY_MAX_BYTES >= 64 ? 4 : 2;  // 16 accumulators of 32 registers; AVX2 8 of 16
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t full = head_dim / lanes * lanes;
  int64_t j = 0;
  for (; j + kKeys <= n_keys; j += kKeys) {
    const float* k[kKeys];
    for (int c = 0; c < kKeys; ++c) k[c] = keys + (j + c) * stride;
    hn::Vec<decltype(d)> acc[kQ][kKeys];
    for (int a = 0; a < kQ; ++a) {
      for (int c = 0; c < kKeys; ++c) acc[a][c] = hn::Zero(d);
    }
    for (int64_t i = 0; i < full; i += lanes) {
      hn::Vec<decltype(d)> kv[kKeys];
      for (int c = 0; c < kKeys; ++c) kv[c] = hn::LoadU(d, k[c] + i);
      for (int a = 0; a < kQ; ++a) {
        const auto qv = hn::LoadU(d, q[a] + i);
        for (int c = 0; c < kKeys; ++c) acc[a][c] = hn::MulAdd(qv, kv[c], acc[a][c]);
      }
    }
    for (int a = 0; a < kQ; ++a) {
      for (int c = 0; c < kKeys; ++c) {
        const float tail = TailDot(q[a], k[c], full, head_dim);
        scores[a][j + c] = scale * (hn::GetLane(hn::SumOfLanes(d, acc[a][c])) + tail);
      }
    }
  }
  for (int a = 0; a < kQ; ++a) {
    if (j < n_keys) ScoresImpl(q[a], keys + j * stride, stride, n_keys - j, head_dim, scale, scores[a] + j);
  }
}

void ScoresQueriesImpl(const float* const* q, int n_q, const float* keys, int64_t stride, int64_t n_keys,
                       int64_t head_dim, float scale, float* const* scores) {
  switch (n_q) {
    case 4: return ScoresQueriesTile<4>(q, keys, stride, n_keys, head_dim, scale, scores);
    case 3: return ScoresQueriesTile<3>(q, keys, stride, n_keys, head_dim, scale, scores);
    case 2: return ScoresQueriesTile<2>(q, keys, stride, n_keys, head_dim, scale, scores);
    default:
      for (int a = 0; a < n_q; ++a) ScoresImpl(q[a], keys, stride, n_keys, head_dim, scale, scores[a]);
  }
}

// kQ queries share each value load over the values all of them weigh (the shortest query's); each query
// then takes its own last values alone. Per output vector the same sequence of MulAdds as MixImpl.
template <int kQ>
void MixQueriesTile(const float* const* p, const int64_t* n_values, const float* values, int64_t stride,
                    int64_t head_dim, float* const* out) {
  constexpr int kVecs = HWY_MAX_BYTES >= 64 ? 4 : 2;  // kQ x kVecs accumulators
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t full = head_dim / lanes * lanes;
  int64_t shared = n_values[0];
  for (int a = 1; a < kQ; ++a) shared = std::min(shared, n_values[a]);
  int64_t i = 0;
  for (; i < full; i += kVecs * lanes) {
    const int vecs = static_cast<int>(std::min<int64_t>(kVecs, (full - i) / lanes));
    hn::Vec<decltype(d)> acc[kQ][kVecs];
    for (int a = 0; a < kQ; ++a) {
      for (int c = 0; c < kVecs; ++c) acc[a][c] = hn::Zero(d);
    }
    if (vecs == kVecs) {
      for (int64_t j = 0; j < shared; ++j) {
        const float* v = values + j * stride + i;
        hn::Vec<decltype(d)> vv[kVecs];
        for (int c = 0; c < kVecs; ++c) vv[c] = hn::LoadU(d, v + c * lanes);
        for (int a = 0; a < kQ; ++a) {
          const auto pj = hn::Set(d, p[a][j]);
          for (int c = 0; c < kVecs; ++c) acc[a][c] = hn::MulAdd(pj, vv[c], acc[a][c]);
        }
      }
    } else {
      for (int64_t j = 0; j < shared; ++j) {
        for (int c = 0; c < vecs; ++c) {
          const auto vv = hn::LoadU(d, values + j * stride + i + c * lanes);
          for (int a = 0; a < kQ; ++a) acc[a][c] = hn::MulAdd(hn::Set(d, p[a][j]), vv, acc[a][c]);
        }
      }
    }
    for (int a = 0; a < kQ; ++a) {
      for (int64_t j = shared; j < n_values[a]; ++j) {
        const auto pj = hn::Set(d, p[a][j]);
        for (int c = 0; c < vecs; ++c) {
          acc[a][c] = hn::MulAdd(pj, hn::LoadU(d, values + j * stride + i + c * lanes), acc[a][c]);
        }
      }
      for (int c = 0; c < vecs; ++c) hn::StoreU(acc[a][c], d, out[a] + i + c * lanes);
    }
  }
  for (int a = 0; a < kQ; ++a) {
    for (int64_t t = full; t < head_dim; ++t) out[a][t] = TailMix(p[a], values, stride, n_values[a], t);
  }
}

void MixQueriesImpl(const float* const* p, const int64_t* n_values, int n_q, const float* values, int64_t stride,
                    int64_t head_dim, float* const* out) {
  switch (n_q) {
    case 4: return MixQueriesTile<4>(p, n_values, values, stride, head_dim, out);
    case 3: return MixQueriesTile<3>(p, n_values, values, stride, head_dim, out);
    case 2: return MixQueriesTile<2>(p, n_values, values, stride, head_dim, out);
    default:
      for (int a = 0; a < n_q; ++a) MixImpl(p[a], values, stride, n_values[a], head_dim, out[a]);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mixq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mixq {

HWY_EXPORT(ScoresImpl);
HWY_EXPORT(MixImpl);
HWY_EXPORT(ScoresQueriesImpl);
HWY_EXPORT(MixQueriesImpl);

void AttentionScores(const float* q, const float* keys, int64_t stride, int64_t n_keys, int64_t head_dim, float scale,
                     float* scores) {
  HWY_DYNAMIC_DISPATCH(ScoresImpl)(q, keys, stride, n_keys, head_dim, scale, scores);
}

void AttentionMix(const float* p, const float* values, int64_t stride, int64_t n_values, int64_t head_dim,
                  float* out) {
  HWY_DYNAMIC_DISPATCH(MixImpl)(p, values, stride, n_values, head_dim, out);
}

void AttentionScoresQueries(const float* const* q, int n_q, const float* keys, int64_t stride, int64_t n_keys,
                            int64_t head_dim, float scale, float* const* scores) {
  MIXQ_CHECK(n_q >= 1 && n_q <= kAttentionQueries);
  HWY_DYNAMIC_DISPATCH(ScoresQueriesImpl)(q, n_q, keys, stride, n_keys, head_dim, scale, scores);
}

void AttentionMixQueries(const float* const* p, const int64_t* n_values, int n_q, const float* values,
                         int64_t stride, int64_t head_dim, float* const* out) {
  MIXQ_CHECK(n_q >= 1 && n_q <= kAttentionQueries);
  HWY_DYNAMIC_DISPATCH(MixQueriesImpl)(p, n_values, n_q, values, stride, head_dim, out);
}

}  // namespace mixq
#endif  // HWY_ONCE
