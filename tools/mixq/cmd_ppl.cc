// `mixq ppl MODEL -f TEXT`: perplexity with standard error, llama.cpp's windows by default.
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/base/log.h"
#include "mixq/base/timer.h"
#include "mixq/eval/perplexity.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct PerplexityArgs {
  ModelArgs model;
  std::string text_file;
  int64_t ctx = 512;
  int64_t chunks = -1;
  std::string scoring = "llamacpp";
  bool json = false;
};

void RunPerplexity(const PerplexityArgs& args) {
  const Model model = LoadModelToRun(args.model);
  PerplexityOptions options;
  options.ctx = args.ctx;
  options.max_chunks = args.chunks;
  options.scoring = args.scoring == "gptq" ? PerplexityScoring::kGptq : PerplexityScoring::kLlamaCpp;
  options.progress = !args.json;
  if (args.ctx > model.config.context_length) {
    Warn("--ctx {} is larger than the model's trained context ({}); quality will suffer", args.ctx,
         model.config.context_length);
  }
  Timer tokenize_timer;
  const std::vector<int32_t> tokens = TokenizeForPerplexity(model, ReadFileToString(args.text_file));
  const double tokenize_seconds = tokenize_timer.ElapsedSeconds();
  const PerplexityResult r = EvaluatePerplexity(model, tokens, options);
  if (args.json) {
    nlohmann::ordered_json j = {{"model", model.path},
                                {"text", args.text_file},
                                {"scoring", PerplexityScoringName(options.scoring)},
                                {"ctx", r.ctx},
                                {"chunks", r.n_chunks},
                                {"text_tokens", r.text_tokens},
                                {"tokens_scored", r.tokens_scored},
                                {"ppl", r.ppl},
                                {"ppl_stderr", r.ppl_stderr},
                                {"mean_nll", r.mean_nll},
                                {"seconds", r.seconds},
                                {"tokens_per_second", r.tokens_per_second},
                                {"running_ppl", r.running_ppl}};
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{} tokens ({:.2f} s to tokenize); {} chunks of {} tokens, {} scoring, {} tokens scored\n",
             r.text_tokens, tokenize_seconds, r.n_chunks, r.ctx, PerplexityScoringName(options.scoring),
             r.tokens_scored);
  for (size_t i = 0; i < r.running_ppl.size(); ++i) fmt::print("[{}]{:.4f},", i + 1, r.running_ppl[i]);
  fmt::print("\nFinal estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_stderr);
  fmt::print("{:.1f} tokens/s ({:.2f} s)\n", r.tokens_per_second, r.seconds);
}

}  // namespace

void RegisterPerplexity(CLI::App& app) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* cmd = app.add_subcommand("ppl", "Perplexity of a model on a text file");
  AddModelArgs(cmd, args->model);
  cmd->add_option("-f,--file", args->text_file, "text file to evaluate")->required();
  cmd->add_option("-c,--ctx", args->ctx, "tokens per window")->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  cmd->add_option("--chunks", args->chunks, "evaluate at most this many windows (default: all)");
  cmd->add_option("--scoring", args->scoring,
                  "llamacpp: llama-perplexity's windows (BOS first, second half scored); "
                  "gptq: GPTQ/AWQ papers' windows (every token after the first scored)")
      ->check(CLI::IsMember({"llamacpp", "gptq"}));
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] { RunPerplexity(*args); });
}

}  // namespace mixq::cli
