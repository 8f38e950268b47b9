// Perplexity under llama.cpp's and GPTQ's conventions.
#include "mixq/eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/progress.h"
#include "mixq/base/timer.h"
#include "mixq/model/forward.h"

namespace mixq {

const char* PerplexityScoringName(PerplexityScoring scoring) {
  return scoring == PerplexityScoring::kLlamaCpp ? "llamacpp" : "gptq";
}

ChunkPlan PlanChunks(int64_t n_tokens, int64_t ctx, int64_t max_chunks, PerplexityScoring scoring) {
  if (ctx < 2) Fail("--ctx {} is too small: a window needs at least 2 tokens", ctx);
  ChunkPlan plan;
  plan.ctx = ctx;
  plan.scoring = scoring;
  const int64_t min_tokens = scoring == PerplexityScoring::kLlamaCpp ? 2 * ctx : ctx;
  if (n_tokens < min_tokens) {
    Fail("the text has {} tokens, but --ctx {} needs at least {} ({} scoring)", n_tokens, ctx, min_tokens,
         PerplexityScoringName(scoring));
  }
  plan.n_chunks = n_tokens / ctx;
  if (max_chunks >= 0) plan.n_chunks = std::min(plan.n_chunks, max_chunks);
  if (plan.n_chunks < 1) Fail("--chunks {} leaves nothing to evaluate", max_chunks);
  plan.first_scored = scoring == PerplexityScoring::kLlamaCpp ? ctx / 2 : 0;
  return plan;
}

void ForEachChunkLogits(const Model& model, std::span<const int32_t> tokens, const ChunkPlan& plan,
                        const ChunkLogitsFn& fn) {
  InferenceState state = MakeInferenceState(model.config, plan.ctx, std::min<int64_t>(plan.ctx, 512));
  std::vector<int32_t> window(static_cast<size_t>(plan.ctx));
  for (int64_t chunk = 0; chunk < plan.n_chunks; ++chunk) {
    const auto begin = tokens.begin() + chunk * plan.ctx;
    std::copy(begin, begin + plan.ctx, window.begin());
    if (plan.scoring == PerplexityScoring::kLlamaCpp && model.tokenizer.loaded() && model.tokenizer.vocab().add_bos) {
      window[0] = model.tokenizer.bos();
    }
    const float* logits = Forward(model, state, window, 0, /*all_logits=*/true);
    fn(chunk, logits, window);
  }
}

LogSoftmaxResult LogSoftmaxAt(std::span<const float> logits, int32_t token) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum_exp = 0.0;
  for (float v : logits) sum_exp += std::exp(v - max_logit);
  const float shifted = logits[static_cast<size_t>(token)] - max_logit;
  return {shifted - std::log(sum_exp), static_cast<float>(std::exp(shifted) / sum_exp)};
}

std::vector<int32_t> TokenizeForPerplexity(const Model& model, const std::string& text) {
  return model.tokenizer.Encode(text, model.tokenizer.vocab().add_bos);
}

PerplexityResult EvaluatePerplexity(const Model& model, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options) {
  const ChunkPlan plan = PlanChunks(static_cast<int64_t>(tokens.size()), options.ctx, options.max_chunks,
                                    options.scoring);
  const int64_t vocab = model.config.vocab_size;
  PerplexityResult result;
  result.ctx = plan.ctx;
  result.n_chunks = plan.n_chunks;
  result.text_tokens = static_cast<int64_t>(tokens.size());
  double nll_sum = 0.0;
  double nll2_sum = 0.0;
  ProgressBar progress("perplexity", plan.n_chunks);
  Timer timer;
  ForEachChunkLogits(model, tokens, plan, [&](int64_t chunk, const float* logits, std::span<const int32_t> window) {
    // Position i predicts window[i + 1]; the last position has nothing to predict inside the window.
    for (int64_t i = plan.first_scored; i < plan.ctx - 1; ++i) {
      const LogSoftmaxResult r = LogSoftmaxAt({logits + i * vocab, static_cast<size_t>(vocab)}, window[i + 1]);
      nll_sum += -r.log_prob;
      nll2_sum += r.log_prob * r.log_prob;
      ++result.tokens_scored;
    }
    result.running_ppl.push_back(std::exp(nll_sum / static_cast<double>(result.tokens_scored)));
    if (options.progress) progress.Update(chunk + 1, fmt::format("ppl {:.4f}", result.running_ppl.back()));
  });
  progress.Finish();
  result.seconds = timer.ElapsedSeconds();
  const double n = static_cast<double>(result.tokens_scored);
  result.mean_nll = nll_sum / n;
  result.ppl = std::exp(result.mean_nll);
  // Standard error of the mean NLL, propagated to PPL (d ppl = ppl * d nll), as llama.cpp does.
  const double variance = nll2_sum / n - result.mean_nll * result.mean_nll;
  result.ppl_stderr = variance > 0.0 && n > 1 ? result.ppl * std::sqrt(variance / (n - 1)) : 0.0;
  result.tokens_per_second = static_cast<double>(plan.n_chunks * plan.ctx) / std::max(result.seconds, 1e-9);
  return result;
}

}  // namespace mixq
