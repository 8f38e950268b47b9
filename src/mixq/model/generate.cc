// Autoregressive generation.
#include "mixq/model/generate.h"

#include <algorithm>

#include "mixq/base/error.h"
#include "mixq/base/timer.h"
#include "mixq/model/forward.h"

namespace mixq {

GenerationStats Generate(const Model& model, const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                         Sampler& sampler, const std::function<void(int32_t)>& on_token, int64_t context) {
  const LlamaConfig& c = model.config;
  if (context <= 0) context = c.context_length;
  if (prompt.empty()) Fail("the prompt has no tokens");
  for (int32_t t : prompt) {
    if (t < 0 || t >= c.vocab_size) Fail("prompt token id {} is outside the vocabulary (0..{})", t, c.vocab_size - 1);
  }
  if (static_cast<int64_t>(prompt.size()) >= context) {
    Fail("the prompt has {} tokens, which fills the context of {}", prompt.size(), context);
  }
  InferenceState state = MakeInferenceState(c, context, std::min<int64_t>(512, static_cast<int64_t>(prompt.size())));
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());

  Timer timer;
  const float* logits = Forward(model, state, prompt, 0, /*all_logits=*/false);
  stats.prompt_seconds = timer.ElapsedSeconds();

  timer.Reset();
  int64_t pos = stats.prompt_tokens;
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int32_t token = SampleToken(sampler, {logits, static_cast<size_t>(c.vocab_size)});
    if (model.tokenizer.loaded() && token == model.tokenizer.eos()) {
      stats.stopped_at_eos = true;
      break;
    }
    ++stats.generated_tokens;
    on_token(token);
    if (pos >= context) {
      stats.stopped_at_context = true;
      break;
    }
    if (i + 1 == max_new_tokens) break;
    logits = Forward(model, state, std::span<const int32_t>(&token, 1), pos, /*all_logits=*/false);
    ++pos;
  }
  stats.generation_seconds = timer.ElapsedSeconds();
  return stats;
}

}  // namespace mixq
