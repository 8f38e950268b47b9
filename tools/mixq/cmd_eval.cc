// `mixq eval MODEL --task hellaswag,...`: zero-shot accuracy with standard errors, optionally beside a base model.
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/base/threads.h"
#include "mixq/eval/zeroshot.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct EvalArgs {
  ModelArgs model;
  std::string tasks;
  std::string data_dir = "../shared/data";
  int64_t limit = 0;
  uint64_t seed = 1234;
  int64_t max_tokens = 0;
  bool no_reuse = false;
  std::string parallel = "auto";
  bool json = false;
  std::string compare;
};

std::string PlusMinus(double value, double error) { return fmt::format("{:.4f} ± {:.4f}", value, error); }

nlohmann::ordered_json TaskJson(const TaskResult& r) {
  nlohmann::ordered_json j = {{"task", ZeroShotTaskName(r.task)},
                              {"items", r.n_items},
                              {"items_available", r.n_available},
                              {"acc", r.acc},
                              {"acc_stderr", r.acc_stderr},
                              {"acc_norm", r.acc_norm},
                              {"acc_norm_stderr", r.acc_norm_stderr}};
  if (r.has_target_ppl) {
    j["target_ppl"] = r.target_ppl;
    j["target_ppl_stderr"] = r.target_ppl_stderr;
  }
  j["truncated_items"] = r.truncated;
  j["tokens_run"] = r.tokens_run;
  j["seconds"] = r.seconds;
  j["items_per_second"] = r.items_per_second;
  return j;
}

nlohmann::ordered_json RunJson(const std::string& path, const std::vector<TaskResult>& results) {
  nlohmann::ordered_json tasks = nlohmann::ordered_json::array();
  for (const TaskResult& r : results) tasks.push_back(TaskJson(r));
  const ZeroShotAverage avg = AverageTasks(results);
  return {{"model", path},
          {"tasks", tasks},
          {"average",
           {{"acc", avg.acc}, {"acc_stderr", avg.acc_stderr}, {"acc_norm", avg.acc_norm}, {"acc_norm_stderr", avg.acc_norm_stderr}}}};
}

void PrintTable(const std::string& path, const std::vector<TaskResult>& results) {
  fmt::print("{}\n", path);
  fmt::print("{:<11} {:>6}  {:<17}  {:<17}  {}\n", "task", "items", "acc", "acc_norm", "");
  for (const TaskResult& r : results) {
    std::string extra;
    if (r.has_target_ppl) extra = fmt::format("target ppl {:.2f} ± {:.2f}", r.target_ppl, r.target_ppl_stderr);
    if (r.truncated > 0) extra += fmt::format("{}{} items cut to fit", extra.empty() ? "" : "; ", r.truncated);
    fmt::print("{:<11} {:>6}  {:<17}  {:<17}  {}\n", ZeroShotTaskName(r.task), r.n_items, PlusMinus(r.acc, r.acc_stderr),
               PlusMinus(r.acc_norm, r.acc_norm_stderr), extra);
  }
  if (results.size() > 1) {
    const ZeroShotAverage avg = AverageTasks(results);
    fmt::print("{:<11} {:>6}  {:<17}  {:<17}\n", "average", "", PlusMinus(avg.acc, avg.acc_stderr),
               PlusMinus(avg.acc_norm, avg.acc_norm_stderr));
  }
  for (const TaskResult& r : results) {
    fmt::print("{}: {:.1f} items/s, {} tokens run, {:.2f} s\n", ZeroShotTaskName(r.task), r.items_per_second,
               r.tokens_run, r.seconds);
  }
}

void PrintComparison(const std::string& base_path, const std::vector<TaskResult>& base, const std::string& model_path,
                     const std::vector<TaskResult>& model) {
  fmt::print("BASE  = {}\nMODEL = {}\n", base_path, model_path);
  fmt::print("{:<11} {:<9} {:<17}  {:<17}  {}\n", "task", "metric", "BASE", "MODEL", "Δ (MODEL - BASE, paired error)");
  for (size_t i = 0; i < model.size(); ++i) {
    for (const bool norm : {false, true}) {
      const TaskResult& b = base[i];
      const TaskResult& m = model[i];
      const PairedDelta d = PairedAccuracyDelta(b, m, norm);
      fmt::print("{:<11} {:<9} {:<17}  {:<17}  {:+.4f} ± {:.4f}\n", ZeroShotTaskName(m.task), norm ? "acc_norm" : "acc",
                 norm ? PlusMinus(b.acc_norm, b.acc_norm_stderr) : PlusMinus(b.acc, b.acc_stderr),
                 norm ? PlusMinus(m.acc_norm, m.acc_norm_stderr) : PlusMinus(m.acc, m.acc_stderr), d.delta, d.stderr_value);
    }
    if (model[i].has_target_ppl) {
      fmt::print("{:<11} {:<9} {:<17}  {:<17}  {:+.2f}\n", ZeroShotTaskName(model[i].task), "tgt_ppl",
                 fmt::format("{:.2f}", base[i].target_ppl), fmt::format("{:.2f}", model[i].target_ppl),
                 model[i].target_ppl - base[i].target_ppl);
    }
  }
  const ZeroShotAverage b = AverageTasks(base);
  const ZeroShotAverage m = AverageTasks(model);
  fmt::print("{:<11} {:<9} {:<17}  {:<17}  {:+.4f}\n", "average", "acc", PlusMinus(b.acc, b.acc_stderr),
             PlusMinus(m.acc, m.acc_stderr), m.acc - b.acc);
  fmt::print("{:<11} {:<9} {:<17}  {:<17}  {:+.4f}\n", "average", "acc_norm", PlusMinus(b.acc_norm, b.acc_norm_stderr),
             PlusMinus(m.acc_norm, m.acc_norm_stderr), m.acc_norm - b.acc_norm);
}

std::vector<TaskResult> EvaluateAll(const std::string& path, const ModelArgs& model_args,
                                    const std::vector<TaskData>& data, const ZeroShotOptions& options,
                                    const std::string& parallel) {
  ModelArgs args = model_args;
  args.path = path;
  const Model model = LoadModelToRun(args);
  std::vector<TaskResult> results;
  ZeroShotOptions model_options = options;
  model_options.item_threads = parallel == "items"     ? ThreadCount()
                               : parallel == "kernels" ? 1
                                                       : AutoItemThreads(model);
  Info("{}: {} item(s) at a time", path, model_options.item_threads);
  for (const TaskData& d : data) results.push_back(EvaluateZeroShotTask(model, d, model_options));
  return results;
}

void RunEval(const EvalArgs& args) {
  const std::vector<ZeroShotTask> tasks = ParseZeroShotTasks(args.tasks);
  std::vector<TaskData> data;
  for (const ZeroShotTask task : tasks) data.push_back(LoadTask(task, args.data_dir));
  ZeroShotOptions options;
  options.limit = args.limit;
  options.seed = args.seed;
  options.reuse_prefix = !args.no_reuse;
  options.max_tokens = args.max_tokens;
  options.progress = !args.json;
  std::vector<TaskResult> base;
  if (!args.compare.empty()) base = EvaluateAll(args.compare, args.model, data, options, args.parallel);
  const std::vector<TaskResult> results = EvaluateAll(args.model.path, args.model, data, options, args.parallel);
  if (args.json) {
    nlohmann::ordered_json j = RunJson(args.model.path, results);
    j["limit"] = args.limit;
    j["seed"] = args.seed;
    j["prefix_reuse"] = !args.no_reuse;
    if (!base.empty()) {
      j["base"] = RunJson(args.compare, base);
      nlohmann::ordered_json deltas = nlohmann::ordered_json::array();
      for (size_t i = 0; i < results.size(); ++i) {
        const PairedDelta d = PairedAccuracyDelta(base[i], results[i], false);
        const PairedDelta dn = PairedAccuracyDelta(base[i], results[i], true);
        deltas.push_back({{"task", ZeroShotTaskName(results[i].task)},
                          {"acc_delta", d.delta},
                          {"acc_delta_stderr", d.stderr_value},
                          {"acc_norm_delta", dn.delta},
                          {"acc_norm_delta_stderr", dn.stderr_value}});
      }
      j["delta"] = deltas;
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  if (args.limit > 0) fmt::print("subset: at most {} items per task, seed {}\n", args.limit, args.seed);
  if (base.empty()) {
    PrintTable(args.model.path, results);
  } else {
    PrintComparison(args.compare, base, args.model.path, results);
  }
}

}  // namespace

void RegisterEval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Zero-shot accuracy: HellaSwag, WinoGrande, PIQA, LAMBADA, MMLU");
  AddModelArgs(cmd, args->model);
  cmd->add_option("--task", args->tasks, "comma-separated: hellaswag,winogrande,piqa,lambada,mmlu")->required();
  cmd->add_option("--data", args->data_dir, "folder holding the task files, laid out as ../shared/data")
      ->capture_default_str();
  cmd->add_option("--limit", args->limit, "evaluate a seeded random subset of at most N items per task (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", args->seed, "seed of the --limit subset")->capture_default_str();
  cmd->add_option("--max-tokens", args->max_tokens,
                  "longest candidate in tokens; longer ones lose their start (default: the model's context, at most 4096)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-reuse", args->no_reuse, "run every candidate from scratch instead of reusing the context's KV cache");
  cmd->add_option("--parallel", args->parallel,
                  "items: each thread scores its own items; kernels: one item at a time, threads inside the "
                  "kernels; auto: items for models narrower than 1024")
      ->check(CLI::IsMember({"auto", "items", "kernels"}))
      ->capture_default_str();
  cmd->add_option("--compare", args->compare, "a base model to evaluate on the same items, printed beside MODEL with Δ");
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] { RunEval(*args); });
}

}  // namespace mixq::cli
