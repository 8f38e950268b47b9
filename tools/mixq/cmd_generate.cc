// `mixq generate MODEL -p PROMPT -n N`: streams generated text, then prompt and generation speed.
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/model/generate.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct GenerateArgs {
  ModelArgs model;
  std::string prompt;
  int64_t n_predict = 128;
  float temperature = 0.8f;
  float top_p = 0.95f;
  int64_t seed = -1;
  int64_t context = 0;
};

void RunGenerate(const GenerateArgs& args) {
  const Model model = LoadModelToRun(args.model);
  SamplerOptions sampling;
  sampling.temperature = args.temperature;
  sampling.top_p = args.top_p;
  sampling.seed = args.seed >= 0 ? static_cast<uint64_t>(args.seed)
                                 : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  Sampler sampler = MakeSampler(sampling);
  if (args.context > model.config.context_length) {
    Warn("--ctx {} is larger than the model's trained context ({}); quality will suffer", args.context,
         model.config.context_length);
  }
  const std::vector<int32_t> prompt = model.tokenizer.Encode(args.prompt, /*add_bos=*/true);
  // Echo the prompt as the tokenizer sees it, then stream each new piece as soon as it exists.
  int32_t previous = -1;
  auto print_token = [&](int32_t token) { fmt::print("{}", model.tokenizer.DecodeNext(&previous, token)); };
  for (int32_t t : prompt) print_token(t);
  std::fflush(stdout);
  const GenerationStats stats = Generate(
      model, prompt, args.n_predict, sampler,
      [&](int32_t token) {
        print_token(token);
        std::fflush(stdout);
      },
      args.context);
  fmt::print("\n");
  std::fflush(stdout);
  fmt::print(stderr, "\nprompt:     {:5} tokens in {:8.3f} s = {:9.2f} tokens/s\n", stats.prompt_tokens,
             stats.prompt_seconds, stats.prompt_tokens_per_second());
  fmt::print(stderr, "generation: {:5} tokens in {:8.3f} s = {:9.2f} tokens/s{}\n", stats.generated_tokens,
             stats.generation_seconds, stats.generation_tokens_per_second(),
             stats.stopped_at_eos ? " (stopped at end of text)" : stats.stopped_at_context ? " (context full)" : "");
  fmt::print(stderr, "seed {}, temperature {:g}, top-p {:g}\n", sampling.seed, sampling.temperature, sampling.top_p);
}

}  // namespace

void RegisterGenerate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt, streaming tokens");
  AddModelArgs(cmd, args->model);
  cmd->add_option("-p,--prompt", args->prompt, "prompt text (default: empty, i.e. start from BOS)");
  cmd->add_option("-n,--n-predict", args->n_predict, "tokens to generate")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--temp", args->temperature, "temperature; 0 = greedy");
  cmd->add_option("--top-p", args->top_p, "nucleus sampling mass, 0 < p <= 1");
  cmd->add_option("--seed", args->seed, "random seed (default: from the clock, printed at the end)");
  cmd->add_option("-c,--ctx", args->context, "context size (default: the model's trained context)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  cmd->callback([args] { RunGenerate(*args); });
}

}  // namespace mixq::cli
