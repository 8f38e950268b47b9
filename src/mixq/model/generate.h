// Autoregressive generation: batched prefill of the prompt, then one decode step per new token.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "mixq/model/model.h"
#include "mixq/model/sampler.h"

namespace mixq {

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0.0;
  double generation_seconds = 0.0;
  bool stopped_at_eos = false;
  bool stopped_at_context = false;
  double prompt_tokens_per_second() const { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0.0; }
  double generation_tokens_per_second() const {
    return generation_seconds > 0 ? generated_tokens / generation_seconds : 0.0;
  }
};

// Generates up to `max_new_tokens` after `prompt` (which must be non-empty), calling `on_token` with
// each new token as soon as it is sampled; stops at EOS or when the context is full. `context` <= 0
// means the model's trained context.
GenerationStats Generate(const Model& model, const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                         Sampler& sampler, const std::function<void(int32_t)>& on_token, int64_t context = 0);

}  // namespace mixq
