// `mixq kld BASE QUANT -f TEXT`: KL divergence of QUANT from BASE with llama.cpp's statistics.
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/base/log.h"
#include "mixq/eval/kld.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct KldArgs {
  std::vector<std::string> models;  // BASE QUANT, or QUANT alone with --base-logits
  std::string tokenizer;
  bool refuse_nonfinite = false;
  int threads = 0;
  std::string text_file;
  int64_t ctx = 512;
  int64_t chunks = -1;
  std::string scoring = "llamacpp";
  bool json = false;
  std::string save_base;
  std::string base_precision = "f16";
  std::string base_logits;
};

ModelArgs ArgsFor(const KldArgs& args, const std::string& path) {
  ModelArgs m;
  m.path = path;
  m.tokenizer = args.tokenizer;
  m.refuse_nonfinite = args.refuse_nonfinite;
  m.threads = args.threads;
  return m;
}

// "value ± error" with llama.cpp's field widths.
std::string Pm(const ValueWithError& v, int value_width, int error_width, int precision, double scale = 1.0) {
  return fmt::format("{:{}.{}f} ± {:{}.{}f}", scale * v.value, value_width, precision, scale * v.error, error_width,
                     precision);
}

nlohmann::ordered_json VwJson(const ValueWithError& v) { return {{"value", v.value}, {"error", v.error}}; }

nlohmann::ordered_json PercentilesJson(const Percentiles& p) {
  return {{"max", p.maximum}, {"p99.9", p.p99_9}, {"p99", p.p99}, {"p95", p.p95},   {"p90", p.p90},
          {"p75", p.p75},     {"median", p.median}, {"p25", p.p25}, {"p10", p.p10}, {"p5", p.p5},
          {"p1", p.p1},       {"p0.1", p.p0_1},   {"min", p.minimum}};
}

void PrintChunkRow(int64_t chunk, const KldSummary& s) {
  fmt::print("{:4d}    {:9.4f} ± {:9.4f}    {:10.5f} ± {:10.5f}    {:10.5f} ± {:10.5f}    {:6.3f} ± {:6.3f} %    "
             "{:6.3f} ± {:6.3f} %\n",
             chunk + 1, s.ppl_quant.value, s.ppl_quant.error, s.log_ppl_ratio.value, s.log_ppl_ratio.error,
             s.kld.value, s.kld.error, 100.0 * s.p_diff_rms.value, 100.0 * s.p_diff_rms.error,
             100.0 * s.same_top.value, 100.0 * s.same_top.error);
  std::fflush(stdout);
}

void PrintSummary(const KldSummary& s) {
  fmt::print("\n====== Perplexity statistics ======\n");
  fmt::print("Mean PPL(Q)                   : {}\n", Pm(s.ppl_quant, 10, 10, 6));
  fmt::print("Mean PPL(base)                : {}\n", Pm(s.ppl_base, 10, 10, 6));
  fmt::print("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%\n", 100.0 * s.log_ppl_correlation);
  fmt::print("Mean ln(PPL(Q)/PPL(base))     : {}\n", Pm(s.log_ppl_ratio, 10, 10, 6));
  fmt::print("Mean PPL(Q)/PPL(base)         : {}\n", Pm(s.ppl_ratio, 10, 10, 6));
  fmt::print("Mean PPL(Q)-PPL(base)         : {}\n", Pm(s.ppl_diff, 10, 10, 6));
  fmt::print("\n====== KL divergence statistics ======\n");
  const Percentiles& k = s.kld_percentiles;
  fmt::print("Mean    KLD: {}\n", Pm(s.kld, 10, 10, 6));
  fmt::print("Maximum KLD: {:10.6f}\n99.9%   KLD: {:10.6f}\n99.0%   KLD: {:10.6f}\n95.0%   KLD: {:10.6f}\n"
             "90.0%   KLD: {:10.6f}\nMedian  KLD: {:10.6f}\n10.0%   KLD: {:10.6f}\n 5.0%   KLD: {:10.6f}\n"
             " 1.0%   KLD: {:10.6f}\n 0.1%   KLD: {:10.6f}\nMinimum KLD: {:10.6f}\n",
             k.maximum, k.p99_9, k.p99, k.p95, k.p90, k.median, k.p10, k.p5, k.p1, k.p0_1, k.minimum);
  fmt::print("\n====== Token probability statistics ======\n");
  const Percentiles& d = s.p_diff_percentiles;
  fmt::print("Mean    Δp: {} %\n", Pm(s.p_diff, 6, 5, 3, 100.0));
  fmt::print("Maximum Δp: {:6.3f}%\n99.9%   Δp: {:6.3f}%\n99.0%   Δp: {:6.3f}%\n95.0%   Δp: {:6.3f}%\n"
             "90.0%   Δp: {:6.3f}%\n75.0%   Δp: {:6.3f}%\nMedian  Δp: {:6.3f}%\n25.0%   Δp: {:6.3f}%\n"
             "10.0%   Δp: {:6.3f}%\n 5.0%   Δp: {:6.3f}%\n 1.0%   Δp: {:6.3f}%\n 0.1%   Δp: {:6.3f}%\n"
             "Minimum Δp: {:6.3f}%\n",
             100 * d.maximum, 100 * d.p99_9, 100 * d.p99, 100 * d.p95, 100 * d.p90, 100 * d.p75, 100 * d.median,
             100 * d.p25, 100 * d.p10, 100 * d.p5, 100 * d.p1, 100 * d.p0_1, 100 * d.minimum);
  fmt::print("RMS Δp    : {} %\n", Pm(s.p_diff_rms, 6, 5, 3, 100.0));
  fmt::print("Same top p: {} %\n", Pm(s.same_top, 6, 5, 3, 100.0));
}

void RunKldCommand(const KldArgs& args, const CLI::App& cmd) {
  const bool from_file = !args.base_logits.empty();
  if (!from_file && args.models.size() != 2) {
    Fail("kld needs BASE and QUANT models (got {}), or QUANT with --base-logits FILE", args.models.size());
  }
  KldOptions options;
  options.ctx = args.ctx;
  options.max_chunks = args.chunks;
  options.scoring = args.scoring == "gptq" ? PerplexityScoring::kGptq : PerplexityScoring::kLlamaCpp;
  options.save_base_path = args.save_base;
  options.save_encoding = args.base_precision == "f32" ? BaseLogitsEncoding::kF32 : BaseLogitsEncoding::kF16;
  if (from_file) {
    // What the file was made with is the default; options given explicitly must agree (checked later).
    const BaseLogitsHeader header = ReadBaseLogitsHeader(args.base_logits);
    if (cmd.count("--ctx") == 0) options.ctx = header.ctx;
    if (cmd.count("--chunks") == 0) options.max_chunks = header.n_chunks;
    if (cmd.count("--scoring") == 0) options.scoring = header.scoring;
  }
  std::optional<Model> base;
  if (args.models.size() == 2) base.emplace(LoadModelToRun(ArgsFor(args, args.models[0])));
  const Model quant = LoadModelToRun(ArgsFor(args, args.models.back()));
  if (options.ctx > quant.config.context_length) {
    Warn("--ctx {} is larger than the model's trained context ({}); quality will suffer", options.ctx,
         quant.config.context_length);
  }
  const std::string text = ReadFileToString(args.text_file);
  std::string note;
  const std::vector<int32_t> tokens = base ? TokensForKld(text, *base, quant, &note) : TokenizeForPerplexity(quant, text);
  if (!note.empty()) Warn("{}", note);
  if (!args.json) {
    fmt::print("{} tokens; windows of {} tokens, {} scoring\n", tokens.size(), options.ctx,
               PerplexityScoringName(options.scoring));
    fmt::print("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
               "Δp RMS            Same top p\n");
    options.on_chunk = [](int64_t chunk, int64_t, const KldSummary& s) { PrintChunkRow(chunk, s); };
  }
  const KldResult r = from_file ? EvaluateKldFromFile(args.base_logits, quant, tokens, options)
                                : EvaluateKld(*base, quant, tokens, options);
  const KldSummary& s = r.summary;
  if (args.json) {
    nlohmann::ordered_json j = {
        {"base", from_file ? args.base_logits : base->path},
        {"quant", quant.path},
        {"text", args.text_file},
        {"scoring", PerplexityScoringName(options.scoring)},
        {"ctx", r.ctx},
        {"chunks", r.n_chunks},
        {"text_tokens", r.text_tokens},
        {"tokens_scored", s.count},
        {"ppl_quant", VwJson(s.ppl_quant)},
        {"ppl_base", VwJson(s.ppl_base)},
        {"log_ppl_correlation", std::isfinite(s.log_ppl_correlation) ? nlohmann::ordered_json(s.log_ppl_correlation)
                                                                      : nlohmann::ordered_json(nullptr)},
        {"log_ppl_ratio", VwJson(s.log_ppl_ratio)},
        {"ppl_ratio", VwJson(s.ppl_ratio)},
        {"ppl_diff", VwJson(s.ppl_diff)},
        {"kld", VwJson(s.kld)},
        {"kld_percentiles", PercentilesJson(s.kld_percentiles)},
        {"p_diff", VwJson(s.p_diff)},
        {"p_diff_percentiles", PercentilesJson(s.p_diff_percentiles)},
        {"p_diff_rms", VwJson(s.p_diff_rms)},
        {"same_top", VwJson(s.same_top)},
        {"seconds", r.seconds}};
    if (!args.save_base.empty()) j["saved_base_logits"] = args.save_base;
    fmt::print("{}\n", j.dump(2));
    return;
  }
  PrintSummary(s);
  fmt::print("\n{} positions compared in {:.2f} s\n", s.count, r.seconds);
  if (!args.save_base.empty()) {
    fmt::print("base logits saved to {} ({})\n", args.save_base, BaseLogitsEncodingName(options.save_encoding));
  }
}

}  // namespace

void RegisterKld(CLI::App& app) {
  auto args = std::make_shared<KldArgs>();
  CLI::App* cmd = app.add_subcommand(
      "kld", "KL divergence of QUANT's next-token distributions from BASE's (llama.cpp's --kl-divergence statistics)");
  cmd->add_option("models", args->models, "BASE QUANT (or QUANT alone with --base-logits)")
      ->required()
      ->expected(1, 2);
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer file for both models (llama2.c tokenizer.bin or tokenizer.model)");
  cmd->add_flag("--refuse-nonfinite", args->refuse_nonfinite, "refuse weights holding NaN/Inf (default: warn)");
  cmd->add_option("-t,--threads", args->threads, "worker threads (default: one per core)")->check(CLI::Range(0, 1024));
  cmd->add_option("-f,--file", args->text_file, "text file to evaluate")->required();
  cmd->add_option("-c,--ctx", args->ctx, "tokens per window (default 512, or the --base-logits file's)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  cmd->add_option("--chunks", args->chunks, "evaluate at most this many windows (default: all, or the file's)");
  cmd->add_option("--scoring", args->scoring, "llamacpp (default) or gptq windows, as `mixq ppl`")
      ->check(CLI::IsMember({"llamacpp", "gptq"}));
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->add_option("--save-base", args->save_base, "write BASE's logits (per scored position) to this file while computing");
  cmd->add_option("--base-precision", args->base_precision,
                  "encoding of --save-base: f16 (half the size) or f32 (reuse reproduces results exactly)")
      ->check(CLI::IsMember({"f16", "f32"}));
  cmd->add_option("--base-logits", args->base_logits, "read BASE's logits from a --save-base file instead of running BASE");
  cmd->callback([args, cmd] { RunKldCommand(*args, *cmd); });
}

}  // namespace mixq::cli
