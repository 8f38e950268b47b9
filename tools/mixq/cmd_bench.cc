// `mixq bench MODEL`: llama-bench-style prompt (ppN) and generation (tgN) tokens/s, with the memory-
// bandwidth bound of generation measured in the same run.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "mixq/base/threads.h"
#include "mixq/eval/speed_bench.h"
#include "mixq/kernels/bandwidth.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct BenchArgs {
  ModelArgs model;
  int64_t n_prompt = 512;
  int64_t n_gen = 128;
  int64_t n_depth = 0;
  int64_t repetitions = 5;
  bool bandwidth = true;
  bool token_bound = false;
  bool json = false;
};

void RunBench(const BenchArgs& args) {
  const Model model = LoadModelToRun(args.model, /*require_tokenizer=*/false);
  SpeedBenchOptions options;
  options.n_prompt = args.n_prompt;
  options.n_gen = args.n_gen;
  options.n_depth = args.n_depth;
  options.repetitions = args.repetitions;
  const int64_t bytes_per_token = WeightBytesPerToken(model);
  // A model this small is read from the CPU caches, not from memory: no DRAM bound applies to it.
  constexpr int64_t kCacheResidentBytes = int64_t{64} << 20;
  const bool cache_resident = bytes_per_token < kCacheResidentBytes;
  // Bandwidth on a shared or virtual machine drifts from one minute to the next, so it is probed right
  // before and after every timed generation run: each run is held to the higher probe beside it, and
  // the whole test to the highest probe of all (a lower estimate of the fraction reached).
  std::vector<double> tg_probes_gbs;
  if (args.bandwidth && !cache_resident) {
    options.between_repetitions = [&](const std::string& test) {
      if (test.starts_with("tg")) tg_probes_gbs.push_back(MeasureReadBandwidthGBs());
    };
  }
  const std::vector<SpeedTestResult> results = RunSpeedBench(model, options);
  const ModelSize size = ComputeModelSize(model);
  const SpeedTestResult* tg = nullptr;
  for (const SpeedTestResult& r : results) {
    if (r.test.starts_with("tg")) tg = &r;
  }
  std::optional<GenerationBound> tg_bound;
  if (tg != nullptr && !tg_probes_gbs.empty()) tg_bound = BoundOfGeneration(*tg, tg_probes_gbs, bytes_per_token);
  std::optional<TokenBound> token_bound;
  if (args.token_bound && args.n_gen > 0 && !cache_resident) {
    token_bound = BoundTokenByToken(TimeTokensAgainstRead(model, options));
  }
  const std::string token_test = fmt::format("tg{} token by token", args.n_gen);
  const std::string name = fmt::format("{} {}", model.metadata.count("general.name") ? model.metadata.at("general.name")
                                                                                     : model.config.architecture,
                                       DTypeName(PrimaryWeightType(model)));
  if (args.json) {
    nlohmann::ordered_json j = {{"model", model.path},
                                {"name", name},
                                {"size_bytes", size.bytes},
                                {"parameters", size.parameters},
                                {"threads", ThreadCount()},
                                {"weight_bytes_per_token", bytes_per_token},
                                {"weights_cache_resident", cache_resident},
                                {"tests", nlohmann::ordered_json::array()}};
    for (const SpeedTestResult& r : results) {
      nlohmann::ordered_json t = {{"test", r.test},
                                  {"tokens_per_second", r.mean()},
                                  {"stdev", r.stdev()},
                                  {"samples", r.tokens_per_second}};
      if (tg_bound && &r == tg) {
        const GenerationBound& b = *tg_bound;
        t["read_bandwidth_probes_gbs"] = b.probes_gbs;
        t["bound_tokens_per_second"] = b.bound_tps;
        t["fraction_of_bound"] = b.fraction;
        t["fraction_of_bound_per_repetition"] = b.fraction_per_rep;
      }
      j["tests"].push_back(std::move(t));
    }
    if (token_bound) {
      const TokenBound& b = *token_bound;
      j["token_bound"] = {{"test", token_test},
                          {"median_fraction", b.median},
                          {"p10_fraction", b.p10},
                          {"p90_fraction", b.p90},
                          {"fastest_quarter_tokens", b.fastest_quarter_tokens},
                          {"fastest_quarter_median_fraction", b.fastest_quarter_median},
                          {"fastest_quarter_min_read_gbs", b.fastest_quarter_min_gbs},
                          {"fraction_per_token", b.fraction},
                          {"read_gbs_per_token", b.read_gbs}};
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  const std::string params = size.parameters >= 1e9 ? fmt::format("{:.2f} B", size.parameters / 1e9)
                                                     : fmt::format("{:.2f} M", size.parameters / 1e6);
  fmt::print("| {:<40} | {:>10} | {:>10} | {:<7} | {:>7} | {:>8} | {:>20} |\n", "model", "size", "params", "backend",
             "threads", "test", "t/s");
  fmt::print("| {:-<40} | {:->9}: | {:->9}: | {:-<7} | {:->6}: | {:->7}: | {:->19}: |\n", "", "", "", "", "", "", "");
  for (const SpeedTestResult& r : results) {
    fmt::print("| {:<40} | {:>6.2f} MiB | {:>10} | {:<7} | {:>7} | {:>8} | {:>20} |\n", name, size.bytes / 1048576.0,
               params, "CPU", ThreadCount(), r.test, fmt::format("{:.2f} ± {:.2f}", r.mean(), r.stdev()));
  }
  if (args.bandwidth && cache_resident && args.n_gen > 0) {
    fmt::print("\n(the weights, {:.2f} MiB a token, fit in the CPU caches: no memory-bandwidth bound applies)\n",
               bytes_per_token / 1048576.0);
  }
  if (tg_bound) {
    const GenerationBound& b = *tg_bound;
    const std::string& test = tg->test;
    const auto [lo, hi] = std::minmax_element(b.probes_gbs.begin(), b.probes_gbs.end());
    fmt::print("\n{}: memory read bandwidth probed before and after each run: {:.2f}-{:.2f} GB/s; weights read per "
               "generated token: {:.2f} MiB\n",
               test, *lo, *hi, bytes_per_token / 1048576.0);
    const auto [flo, fhi] = std::minmax_element(b.fraction_per_rep.begin(), b.fraction_per_rep.end());
    fmt::print("{}: {:.1f}% of the bound at the highest probe ({:.2f} t/s); run by run, against the higher probe "
               "beside each: {:.1f}% (median of {}; {:.1f}-{:.1f}%)\n",
               test, 100.0 * b.fraction, b.bound_tps, 100.0 * b.median_fraction_per_rep, b.fraction_per_rep.size(),
               100.0 * *flo, 100.0 * *fhi);
    if (args.n_depth > 0) {
      fmt::print("{}: the bound counts the weights only; at depth {} each token also reads that many keys and "
                 "values a layer\n",
                 test, args.n_depth);
    }
  }
  if (args.token_bound && cache_resident) {
    fmt::print("\n(--token-bound: the weights fit in the CPU caches, so no token is held to a memory read)\n");
  }
  if (token_bound) {
    const TokenBound& b = *token_bound;
    const auto [lo, hi] = std::minmax_element(b.read_gbs.begin(), b.read_gbs.end());
    fmt::print("\n{}, each against the faster of two reads of the same {:.2f} MiB just before and after it: median "
               "{:.1f}% of the bound (p10 {:.1f}%, p90 {:.1f}%; reads {:.2f}-{:.2f} GB/s); the {} tokens read fastest "
               "(>= {:.2f} GB/s): median {:.1f}%\n",
               token_test, bytes_per_token / 1048576.0, 100.0 * b.median, 100.0 * b.p10, 100.0 * b.p90, *lo, *hi,
               b.fastest_quarter_tokens, b.fastest_quarter_min_gbs, 100.0 * b.fastest_quarter_median);
  }
}

}  // namespace

void RegisterBench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Prompt and generation speed, as llama-bench measures them");
  AddModelArgs(cmd, args->model);
  cmd->add_option("-p,--n-prompt", args->n_prompt, "prompt tokens for the pp test (0 skips it)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("-n,--n-gen", args->n_gen, "generated tokens for the tg test (0 skips it)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("-d,--n-depth", args->n_depth,
                  "tokens already in the context (prefilled, untimed) when each test starts, as llama-bench's -d")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("-r,--repetitions", args->repetitions, "timed repetitions of each test")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  cmd->add_flag("!--no-bandwidth", args->bandwidth, "skip the memory-bandwidth measurement");
  cmd->add_flag("--token-bound", args->token_bound,
               "also decode -n tokens one at a time, each between two plain reads of the weights a token streams, "
               "and hold each token to the faster read (a bound measured milliseconds from each token)");
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] { RunBench(*args); });
}

}  // namespace mixq::cli
