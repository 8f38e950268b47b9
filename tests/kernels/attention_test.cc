// Attention's inner loops (kernels/attention.h): the single-query kernels against double sums, and the
// multi-query kernels equal to the single-query ones bit for bit, on every Highway target this CPU runs.
#include "mixq/kernels/attention.h"

#include <gtest/gtest.h>

#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <fmt/format.h>

namespace mixq {
namespace {

std::vector<float> Normal(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Attention's inner loops against double sums, for head sizes with and without a vector tail.
TEST(AttentionKernels, ScoresAndMixMatchDoubleSums) {
  std::mt19937 rng(11);
  for (const int64_t head_dim : {1, 7, 16, 33, 64, 128, 200}) {
    for (const int64_t n : {1, 3, 4, 5, 37}) {
      SCOPED_TRACE(fmt::format("head_dim={} n={}", head_dim, n));
      const int64_t stride = head_dim * 3 + 5;  // a head's slice of wider cache rows
      const std::vector<float> q = Normal(rng, head_dim, 1.0f);
      const std::vector<float> kv = Normal(rng, n * stride, 1.0f);
      std::vector<float> scores(static_cast<size_t>(n));
      AttentionScores(q.data(), kv.data() + 2, stride, n, head_dim, 0.125f, scores.data());
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0.0, mag = 0.0;
        for (int64_t d = 0; d < head_dim; ++d) {
          dot += static_cast<double>(q[d]) * kv[j * stride + 2 + d];
          mag += std::fabs(static_cast<double>(q[d]) * kv[j * stride + 2 + d]);
        }
        ASSERT_NEAR(scores[j], 0.125 * dot, 1e-5 * 0.125 * mag + 1e-30) << "key " << j;
      }
      const std::vector<float> p = Normal(rng, n, 1.0f);
      std::vector<float> out(static_cast<size_t>(head_dim), 123.0f);
      AttentionMix(p.data(), kv.data() + 1, stride, n, head_dim, out.data());
      for (int64_t d = 0; d < head_dim; ++d) {
        double sum = 0.0, mag = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          sum += static_cast<double>(p[j]) * kv[j * stride + 1 + d];
          mag += std::fabs(static_cast<double>(p[j]) * kv[j * stride + 1 + d]);
        }
        ASSERT_NEAR(out[d], sum, 1e-5 * mag + 1e-30) << "dim " << d;
      }
    }
  }
}

// Prefill runs up to 4 consecutive queries of a head at once; the model's batched logits must stay its
// token-by-token ones, so each query's scores and output must be exactly what it gets alone. Head sizes
// with and without a vector tail (1, 7: scalar only), 1-4 queries, key counts below, at and past a tile,
// query lengths ascending (the model's case) and mixed, on every target (AVX-512: 4-key and 4-vector
// tiles; AVX2 and below: 2).
TEST(AttentionKernels, QueriesAtOnceEqualOneAtATime) {
  std::mt19937 rng(12);
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  for (const int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    for (const int64_t head_dim : {1, 7, 16, 33, 64, 72, 128, 200}) {
      for (const int64_t n : {1, 3, 4, 5, 37}) {
        for (int n_q = 1; n_q <= kAttentionQueries; ++n_q) {
          for (const bool ascending : {true, false}) {
            SCOPED_TRACE(fmt::format("target={} head_dim={} n={} n_q={} ascending={}", hwy::TargetName(target),
                                     head_dim, n, n_q, ascending));
            const int64_t stride = head_dim * 2 + 3;
            int64_t lengths[kAttentionQueries];
            for (int i = 0; i < n_q; ++i) lengths[i] = n + (ascending ? i : (i * 5 + 2) % 4);
            const int64_t most = *std::max_element(lengths, lengths + n_q);
            const std::vector<float> kv = Normal(rng, most * stride, 1.0f);
            std::vector<std::vector<float>> q(n_q), scores(n_q), p(n_q), out(n_q);
            const float* q_ptr[kAttentionQueries];
            float* scores_ptr[kAttentionQueries];
            const float* p_ptr[kAttentionQueries];
            float* out_ptr[kAttentionQueries];
            for (int i = 0; i < n_q; ++i) {
              q[i] = Normal(rng, head_dim, 1.0f);
              scores[i].assign(static_cast<size_t>(most), -1.0f);
              p[i] = Normal(rng, lengths[i], 1.0f);
              out[i].assign(static_cast<size_t>(head_dim), -1.0f);
              q_ptr[i] = q[i].data();
              scores_ptr[i] = scores[i].data();
              p_ptr[i] = p[i].data();
              out_ptr[i] = out[i].data();
            }
            AttentionScoresQueries(q_ptr, n_q, kv.data() + 1, stride, most, head_dim, 0.09f, scores_ptr);
            AttentionMixQueries(p_ptr, lengths, n_q, kv.data() + 2, stride, head_dim, out_ptr);
            for (int i = 0; i < n_q; ++i) {
              std::vector<float> alone(static_cast<size_t>(most)), alone_out(static_cast<size_t>(head_dim));
              AttentionScores(q[i].data(), kv.data() + 1, stride, most, head_dim, 0.09f, alone.data());
              AttentionMix(p[i].data(), kv.data() + 2, stride, lengths[i], head_dim, alone_out.data());
              ASSERT_EQ(scores[i], alone) << "scores of query " << i;
              ASSERT_EQ(out[i], alone_out) << "output of query " << i;
            }
          }
        }
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace
}  // namespace mixq
