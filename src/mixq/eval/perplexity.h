// Perplexity of a model on a token stream, under llama.cpp's or GPTQ's windowing, and the chunked
// evaluation loop that KL-divergence and other per-token measures reuse.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mixq/model/model.h"

namespace mixq {

enum class PerplexityScoring {
  // llama.cpp's llama-perplexity: windows of ctx tokens cut from the text tokenized once (with BOS);
  // each window's first token is replaced by BOS; only the second half of each window is scored
  // (positions ctx/2 .. ctx-2 predict the next token), so every scored token sees >= ctx/2 of context.
  kLlamaCpp,
  // GPTQ/AWQ/SmoothQuant papers' code: the text tokenized once (BOS only at its very start), cut into
  // non-overlapping windows of ctx tokens, every token after the first of each window scored.
  kGptq,
};

// "llamacpp" / "gptq"; nullopt-like failure is reported by the caller.
const char* PerplexityScoringName(PerplexityScoring scoring);

struct ChunkPlan {
  int64_t ctx = 512;
  int64_t n_chunks = 0;   // windows evaluated
  int64_t first_scored = 0;  // index inside a window of the first logit that is scored
  PerplexityScoring scoring = PerplexityScoring::kLlamaCpp;
};

// How `n_tokens` of text split into windows; `max_chunks` < 0 means all. Throws mixq::Error if the text
// is too short for one window (llama.cpp asks for 2 * ctx tokens; so do we, in its mode).
ChunkPlan PlanChunks(int64_t n_tokens, int64_t ctx, int64_t max_chunks, PerplexityScoring scoring);

// Evaluates each window and hands its logits [ctx, vocab] and its (BOS-substituted) tokens to `fn`.
using ChunkLogitsFn =
    std::function<void(int64_t chunk, const float* logits, std::span<const int32_t> window_tokens)>;
void ForEachChunkLogits(const Model& model, std::span<const int32_t> tokens, const ChunkPlan& plan,
                        const ChunkLogitsFn& fn);

struct LogSoftmaxResult {
  double log_prob;  // log p(token)
  float prob;
};
// log p(token) from logits, as llama.cpp computes it (float max, double sum of expf).
LogSoftmaxResult LogSoftmaxAt(std::span<const float> logits, int32_t token);

struct PerplexityResult {
  double ppl = 0.0;
  double ppl_stderr = 0.0;       // ppl * stderr of the mean NLL, as llama.cpp reports "+/-"
  double mean_nll = 0.0;
  int64_t tokens_scored = 0;
  int64_t n_chunks = 0;
  int64_t ctx = 0;
  int64_t text_tokens = 0;
  double seconds = 0.0;
  double tokens_per_second = 0.0;  // tokens evaluated (n_chunks * ctx) per second
  std::vector<double> running_ppl;  // after each chunk, as llama.cpp prints [1]x,[2]y,...
};

struct PerplexityOptions {
  int64_t ctx = 512;
  int64_t max_chunks = -1;
  PerplexityScoring scoring = PerplexityScoring::kLlamaCpp;
  bool progress = true;
};

PerplexityResult EvaluatePerplexity(const Model& model, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options);

// The tokens of `text` as the chosen convention tokenizes it (both: once, with BOS at the start).
std::vector<int32_t> TokenizeForPerplexity(const Model& model, const std::string& text);

}  // namespace mixq
