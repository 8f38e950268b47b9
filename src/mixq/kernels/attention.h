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

// Up to kAttentionQueries queries of one head at once (prefill: consecutive tokens), so that each key and
// value row is loaded once for all of them instead of once per query. Query i's results equal the
// single-query functions' on it alone bit for bit (the same sums in the same order): a model's batched
// logits stay those of its token-by-token run.
constexpr int kAttentionQueries = 4;

// scores[i][j] = scale * q[i] . key j, for i < n_q and j < n_keys.
void AttentionScoresQueries(const float* const* q, int n_q, const float* keys, int64_t stride, int64_t n_keys,
                            int64_t head_dim, float scale, float* const* scores);

// out[i][d] = sum_{j < n_values[i]} p[i][j] * values[j * stride + d], for i < n_q and d < head_dim.
void AttentionMixQueries(const float* const* p, const int64_t* n_values, int n_q, const float* values,
                         int64_t stride, int64_t head_dim, float* const* out);

}  // namespace mixq
