// `mixq bench MODEL`: llama-bench-style prompt (ppN) and generation (tgN) tokens/s, with the memory-
// bandwidth bound of generation measured in the same run.
#include <algorithm>

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
  int64_t repetitions = 5;
  bool bandwidth = true;
  bool json = false;
};

void RunBench(const BenchArgs& args) {
  const Model model = LoadModelToRun(args.model, /*require_tokenizer=*/false);
  SpeedBenchOptions options;
  options.n_prompt = args.n_prompt;
  options.n_gen = args.n_gen;
  options.repetitions = args.repetitions;
  // Bandwidth on a shared or virtual machine drifts, so it is measured both before and after the
  // tests, and the higher reading sets the bound (the percentage reached is then a lower estimate).
  const double read_gbs_before = args.bandwidth ? MeasureReadBandwidthGBs() : 0.0;
  const std::vector<SpeedTestResult> results = RunSpeedBench(model, options);
  const double read_gbs_after = args.bandwidth ? MeasureReadBandwidthGBs() : 0.0;
  const double read_gbs = std::max(read_gbs_before, read_gbs_after);
  const ModelSize size = ComputeModelSize(model);
  const int64_t bytes_per_token = WeightBytesPerToken(model);
  const double bound_tps = read_gbs > 0 ? read_gbs * 1e9 / static_cast<double>(bytes_per_token) : 0.0;
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
                                {"read_bandwidth_gbs", read_gbs},
                                {"read_bandwidth_gbs_before", read_gbs_before},
                                {"read_bandwidth_gbs_after", read_gbs_after},
                                {"tg_bound_tokens_per_second", bound_tps},
                                {"tests", nlohmann::ordered_json::array()}};
    for (const SpeedTestResult& r : results) {
      j["tests"].push_back({{"test", r.test},
                            {"tokens_per_second", r.mean()},
                            {"stdev", r.stdev()},
                            {"samples", r.tokens_per_second}});
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
  if (read_gbs > 0) {
    fmt::print("\nmemory read bandwidth, measured before/after the tests: {:.2f} / {:.2f} GB/s; weights read per "
               "generated token: {:.2f} MiB\n",
               read_gbs_before, read_gbs_after, bytes_per_token / 1048576.0);
    // A model this small is read from the CPU caches, not from memory: no DRAM bound applies to it.
    constexpr int64_t kCacheResidentBytes = int64_t{64} << 20;
    if (bytes_per_token < kCacheResidentBytes) {
      fmt::print("(the weights fit in the CPU caches, so the memory-bandwidth bound does not apply)\n");
    }
    for (const SpeedTestResult& r : results) {
      if (r.test.starts_with("tg") && bytes_per_token >= kCacheResidentBytes) {
        fmt::print("{}: bound at the higher bandwidth {:.2f} t/s; reached {:.1f}% of it\n", r.test, bound_tps,
                   100.0 * r.mean() / bound_tps);
      }
    }
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
  cmd->add_option("-r,--repetitions", args->repetitions, "timed repetitions of each test")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  cmd->add_flag("!--no-bandwidth", args->bandwidth, "skip the memory-bandwidth measurement");
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] { RunBench(*args); });
}

}  // namespace mixq::cli
