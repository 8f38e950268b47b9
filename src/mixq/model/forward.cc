// The exact FP32 LLaMA forward pass.
#include "mixq/model/forward.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "mixq/base/check.h"
#include "mixq/formats/convert.h"
#include "mixq/kernels/attention.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/ops.h"

namespace mixq {

KvCache MakeKvCache(const LlamaConfig& config, int64_t capacity) {
  KvCache cache;
  cache.n_layers = config.n_layers;
  cache.capacity = capacity;
  cache.kv_dim = config.kv_dim();
  const size_t bytes = static_cast<size_t>(config.n_layers * capacity * config.kv_dim()) * sizeof(float);
  cache.keys.Resize(bytes);
  cache.values.Resize(bytes);
  return cache;
}

InferenceState MakeInferenceState(const LlamaConfig& c, int64_t context, int64_t max_batch) {
  MIXQ_CHECK_GE(context, 1);
  MIXQ_CHECK_GE(max_batch, 1);
  InferenceState s;
  s.cache = MakeKvCache(c, context);
  s.max_batch = max_batch;
  auto floats = [](int64_t n) { return static_cast<size_t>(n) * sizeof(float); };
  s.x.Resize(floats(max_batch * c.dim));
  s.xn.Resize(floats(max_batch * c.dim));
  s.q.Resize(floats(max_batch * c.q_dim()));
  s.k.Resize(floats(max_batch * c.kv_dim()));
  s.v.Resize(floats(max_batch * c.kv_dim()));
  s.attn.Resize(floats(max_batch * c.q_dim()));
  s.proj.Resize(floats(max_batch * c.dim));
  s.gate.Resize(floats(max_batch * c.hidden_dim));
  s.up.Resize(floats(max_batch * c.hidden_dim));
  s.rope_cos.Resize(floats(max_batch * c.head_dim / 2));
  s.rope_sin.Resize(floats(max_batch * c.head_dim / 2));
  s.scores.Resize(floats(static_cast<int64_t>(omp_get_max_threads()) * kAttentionQueries * context));
  return s;
}

namespace {

// cos/sin of every RoPE angle of positions pos0 .. pos0 + n - 1, [n, head_dim / 2] each: computed once
// per batch, since every layer's q and k rotate by the same angles.
void ComputeRopeAngles(const LlamaConfig& c, int64_t pos0, int64_t n, float* cos_out, float* sin_out) {
  const int64_t half = c.head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    // Same float arithmetic as llama2.c: freq = theta^(-2i/d), optionally divided by LLaMA-3's factor.
    float freq = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * i) / static_cast<float>(c.head_dim));
    if (!c.rope_freq_factors.empty()) freq /= c.rope_freq_factors[static_cast<size_t>(i)];
    for (int64_t t = 0; t < n; ++t) {
      const float angle = static_cast<float>(pos0 + t) * freq;
      cos_out[t * half + i] = std::cos(angle);
      sin_out[t * half + i] = std::sin(angle);
    }
  }
}

// Rotates each head of `x` ([n_heads * head_dim] for one token) by that token's angles.
void ApplyRope(const LlamaConfig& c, float* x, int64_t n_heads, const float* cos_a, const float* sin_a) {
  const int64_t half = c.head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const int64_t a = c.rope_style == RopeStyle::kInterleaved ? 2 * i : i;
    const int64_t b = c.rope_style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + h * c.head_dim;
      const float x0 = head[a];
      const float x1 = head[b];
      head[a] = x0 * cos_a[i] - x1 * sin_a[i];
      head[b] = x0 * sin_a[i] + x1 * cos_a[i];
    }
  }
}

// Causal grouped-query attention of n tokens at positions pos0.. over the cache of one layer. Queries
// that read the same KV head go through the attention kernels up to kAttentionQueries at a time, sharing
// each key and value load: consecutive tokens of a head (prefill), and the heads of a group, whose keys
// are the same (grouped-query models, in decode too).
void Attention(const LlamaConfig& c, const KvCache& cache, int64_t layer, const float* q, int64_t n,
               int64_t pos0, float* scores_all, float* out) {
  const int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  // A work item: tokens [t0, t0 + tokens_per_item) x heads [h0, h0 + heads_per_item) of one KV head.
  const int64_t heads_per_item = std::min<int64_t>(group, kAttentionQueries);
  const int64_t tokens_per_item = std::max<int64_t>(1, kAttentionQueries / heads_per_item);
  const int64_t token_items = (n + tokens_per_item - 1) / tokens_per_item;
  const int64_t head_items = (group + heads_per_item - 1) / heads_per_item;
  // Threads only pay off once there is real work: tiny models would spend their time in barriers.
  const int64_t work = n * (pos0 + n) * c.q_dim();
  // KV heads outer, tokens inner: a thread's consecutive items read the same keys while they are in L2.
#pragma omp parallel for schedule(dynamic, 1) collapse(3) if (work > (1 << 16))
  for (int64_t kv = 0; kv < c.n_kv_heads; ++kv) {
    for (int64_t hi = 0; hi < head_items; ++hi) {
      for (int64_t ti = 0; ti < token_items; ++ti) {
        const int64_t h0 = kv * group + hi * heads_per_item;
        const int64_t h1 = std::min((kv + 1) * group, h0 + heads_per_item);
        const int64_t t0 = ti * tokens_per_item;
        const int64_t t1 = std::min(n, t0 + tokens_per_item);
        float* thread_scores =
            scores_all + static_cast<int64_t>(omp_get_thread_num()) * kAttentionQueries * cache.capacity;
        const float* queries[kAttentionQueries];
        float* scores[kAttentionQueries];
        float* outs[kAttentionQueries];
        int64_t lengths[kAttentionQueries];  // keys each query sees: its token's position + 1
        int n_q = 0;
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t h = h0; h < h1; ++h, ++n_q) {
            queries[n_q] = q + t * c.q_dim() + h * c.head_dim;
            scores[n_q] = thread_scores + n_q * cache.capacity;
            outs[n_q] = out + t * c.q_dim() + h * c.head_dim;
            lengths[n_q] = pos0 + t + 1;
          }
        }
        const int64_t kv_offset = kv * c.head_dim;
        const int64_t stride = c.kv_dim();
        // The last token sees the most keys; the others' scores past their own position go unused.
        AttentionScoresQueries(queries, n_q, cache.key(layer, 0) + kv_offset, stride, pos0 + t1, c.head_dim,
                               scale, scores);
        for (int i = 0; i < n_q; ++i) Softmax(scores[i], lengths[i]);
        AttentionMixQueries(scores, lengths, n_q, cache.value(layer, 0) + kv_offset, stride, c.head_dim, outs);
      }
    }
  }
}

// Reports one linear layer's call to the observer, if any.
void Observe(InferenceState& s, int64_t layer, LinearKind kind, const TensorView& w, const float* in, int64_t n,
             float* out) {
  if (s.observer) {
    s.observer(LinearCall{.layer = layer, .kind = kind, .weight = &w, .input = in, .output = out, .n_tokens = n,
                          .in_dim = w.shape[1], .out_dim = w.shape[0]});
  }
}

// Runs one linear layer and reports it to the observer, if any.
void Linear(InferenceState& s, int64_t layer, LinearKind kind, const TensorView& w, const float* in, int64_t n,
            float* out) {
  MatMul(w, in, n, out);
  Observe(s, layer, kind, w, in, n, out);
}

// One linear layer of LinearsSameInput.
struct LinearJob {
  LinearKind kind;
  const TensorView* weight;
  float* out;
};

// Linear layers that read the same input (Q, K, V; gate, up) as one MatMulSameInput, reported to the
// observer in order. Where `stop_after` names one of them they run one by one up to it instead, and the
// result is true: the layer stops there.
bool LinearsSameInput(InferenceState& s, int64_t layer, std::span<const LinearJob> jobs, const float* in,
                      int64_t n, std::optional<LinearKind> stop_after) {
  const bool stops_here =
      std::any_of(jobs.begin(), jobs.end(), [&](const LinearJob& job) { return stop_after == job.kind; });
  if (stops_here) {
    for (const LinearJob& job : jobs) {
      Linear(s, layer, job.kind, *job.weight, in, n, job.out);
      if (stop_after == job.kind) return true;
    }
  }
  std::array<MatMulProduct, 3> products;
  MIXQ_CHECK_LE(jobs.size(), products.size());
  for (size_t i = 0; i < jobs.size(); ++i) products[i] = {jobs[i].weight, jobs[i].out};
  MatMulSameInput(std::span(products.data(), jobs.size()), in, n);
  for (const LinearJob& job : jobs) Observe(s, layer, job.kind, *job.weight, in, n, job.out);
  return false;
}

}  // namespace

const char* LinearKindName(LinearKind kind) {
  static constexpr const char* kNames[] = {"attn_q", "attn_k", "attn_v",   "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down", "output"};
  return kNames[static_cast<int>(kind)];
}

TensorView& LinearWeight(LayerWeights& layer, LinearKind kind) {
  return const_cast<TensorView&>(LinearWeight(static_cast<const LayerWeights&>(layer), kind));
}

const TensorView& LinearWeight(const LayerWeights& layer, LinearKind kind) {
  switch (kind) {
    case LinearKind::kQ: return layer.wq;
    case LinearKind::kK: return layer.wk;
    case LinearKind::kV: return layer.wv;
    case LinearKind::kO: return layer.wo;
    case LinearKind::kGate: return layer.w_gate;
    case LinearKind::kUp: return layer.w_up;
    case LinearKind::kDown: return layer.w_down;
    case LinearKind::kOutput: break;  // the head is not part of a block
  }
  MIXQ_CHECK(false);
  return layer.wq;
}

std::string LinearWeightName(int64_t layer, LinearKind kind) {
  if (kind == LinearKind::kOutput) return "output.weight";
  return fmt::format("blk.{}.{}.weight", layer, LinearKindName(kind));
}

void EmbedTokens(const LlamaConfig& c, const LlamaWeights& w, InferenceState& s, std::span<const int32_t> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  MIXQ_CHECK_LE(n, s.max_batch);
  float* x = s.x.as<float>();
  for (int64_t t = 0; t < n; ++t) {
    MIXQ_CHECK(tokens[t] >= 0 && tokens[t] < c.vocab_size);
    TensorRowToFloat(w.token_embd, tokens[t], x + t * c.dim);
  }
}

void PrepareRope(const LlamaConfig& c, InferenceState& s, int64_t pos0, int64_t n) {
  MIXQ_CHECK_LE(n, s.max_batch);
  ComputeRopeAngles(c, pos0, n, s.rope_cos.as<float>(), s.rope_sin.as<float>());
}

void ForwardLayer(const LlamaConfig& c, const LayerWeights& lw, int64_t l, InferenceState& s, int64_t cache_layer,
                  int64_t n, int64_t pos0, std::optional<LinearKind> stop_after) {
  auto stop_at = [&](LinearKind kind) { return stop_after == kind; };
  MIXQ_CHECK_LE(n, s.max_batch);
  MIXQ_CHECK(cache_layer >= 0 && cache_layer < s.cache.n_layers);
  MIXQ_CHECK_LE(pos0 + n, s.cache.capacity);
  const int64_t half = c.head_dim / 2;
  const float* rope_cos = s.rope_cos.as<float>();
  const float* rope_sin = s.rope_sin.as<float>();
  float* x = s.x.as<float>();
  float* xn = s.xn.as<float>();
  for (int64_t t = 0; t < n; ++t) {
    RmsNorm(x + t * c.dim, lw.attn_norm.as<float>(), xn + t * c.dim, c.dim, c.rms_eps);
  }
  float* q = s.q.as<float>();
  float* k = s.k.as<float>();
  float* v = s.v.as<float>();
  const LinearJob qkv[] = {{LinearKind::kQ, &lw.wq, q}, {LinearKind::kK, &lw.wk, k}, {LinearKind::kV, &lw.wv, v}};
  if (LinearsSameInput(s, l, qkv, xn, n, stop_after)) return;
  for (int64_t t = 0; t < n; ++t) {
    ApplyRope(c, q + t * c.q_dim(), c.n_heads, rope_cos + t * half, rope_sin + t * half);
    ApplyRope(c, k + t * c.kv_dim(), c.n_kv_heads, rope_cos + t * half, rope_sin + t * half);
    std::copy_n(k + t * c.kv_dim(), c.kv_dim(), s.cache.key(cache_layer, pos0 + t));
    std::copy_n(v + t * c.kv_dim(), c.kv_dim(), s.cache.value(cache_layer, pos0 + t));
  }
  Attention(c, s.cache, cache_layer, q, n, pos0, s.scores.as<float>(), s.attn.as<float>());
  float* proj = s.proj.as<float>();
  Linear(s, l, LinearKind::kO, lw.wo, s.attn.as<float>(), n, proj);
  if (stop_at(LinearKind::kO)) return;
  for (int64_t i = 0; i < n * c.dim; ++i) x[i] += proj[i];

  for (int64_t t = 0; t < n; ++t) {
    RmsNorm(x + t * c.dim, lw.ffn_norm.as<float>(), xn + t * c.dim, c.dim, c.rms_eps);
  }
  float* gate = s.gate.as<float>();
  float* up = s.up.as<float>();
  const LinearJob gate_up[] = {{LinearKind::kGate, &lw.w_gate, gate}, {LinearKind::kUp, &lw.w_up, up}};
  if (LinearsSameInput(s, l, gate_up, xn, n, stop_after)) return;
  SwiGlu(gate, up, n * c.hidden_dim);
  Linear(s, l, LinearKind::kDown, lw.w_down, gate, n, proj);
  for (int64_t i = 0; i < n * c.dim; ++i) x[i] += proj[i];
}

namespace {

// One batch of at most max_batch tokens; writes the final normed hidden states to state.xn.
void ForwardBatch(const LlamaConfig& c, const LlamaWeights& w, InferenceState& s, std::span<const int32_t> tokens,
                  int64_t pos0) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  EmbedTokens(c, w, s, tokens);
  PrepareRope(c, s, pos0, n);
  for (int64_t l = 0; l < c.n_layers; ++l) ForwardLayer(c, w.layers[static_cast<size_t>(l)], l, s, l, n, pos0);
  const float* x = s.x.as<float>();
  float* xn = s.xn.as<float>();
  for (int64_t t = 0; t < n; ++t) {
    RmsNorm(x + t * c.dim, w.output_norm.as<float>(), xn + t * c.dim, c.dim, c.rms_eps);
  }
}

}  // namespace

const float* Forward(const Model& model, InferenceState& s, std::span<const int32_t> tokens, int64_t pos0,
                     bool all_logits) {
  return Forward(model.config, model.weights, s, tokens, pos0, all_logits);
}

const float* Forward(const LlamaConfig& c, const LlamaWeights& w, InferenceState& s, std::span<const int32_t> tokens,
                     int64_t pos0, bool all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  MIXQ_CHECK_GE(n, 1);
  MIXQ_CHECK_GE(pos0, 0);
  MIXQ_CHECK_LE(pos0 + n, s.cache.capacity);
  const int64_t logit_rows = all_logits ? n : 1;
  const size_t logit_bytes = static_cast<size_t>(logit_rows * c.vocab_size) * sizeof(float);
  if (s.logits.size() < logit_bytes) s.logits.Resize(logit_bytes);
  float* logits = s.logits.as<float>();
  for (int64_t start = 0; start < n; start += s.max_batch) {
    const int64_t count = std::min(s.max_batch, n - start);
    ForwardBatch(c, w, s, tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(count)), pos0 + start);
    if (all_logits) {
      Linear(s, -1, LinearKind::kOutput, w.head(), s.xn.as<float>(), count, logits + start * c.vocab_size);
    } else if (start + count == n) {
      Linear(s, -1, LinearKind::kOutput, w.head(), s.xn.as<float>() + (count - 1) * c.dim, 1, logits);
    }
  }
  return logits;
}

}  // namespace mixq
