// The two inner loops of attention over a float KV cache: one query against a run of keys, and the
// probability-weighted sum of a run of values. Keys and values are rows `stride` floats apart (a head's
// slice of the cache rows). Highway SIMD for every x86 target, dispatched to the best one the CPU runs.
#pragma once

#include <cstdint>

namespace mixq {

// scores[j] = scale * sum_d q[d] * keys[j * stride + d], for j < n_keys.
void AttentionScores(const float* q, const float* keys, int64_t stride, int64_t n_keys, int64_t head_dim, float scale,
                     float* scores);

// out[d] = sum_j p[j] * values[j * stride + d], for d < head_dim (out is overwritten).
void AttentionMix(const float* p, const float* values, int64_t stride, int64_t n_values, int64_t head_dim,
                  float* out);

}  // namespace mixq
