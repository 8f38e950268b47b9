// `mixq calibrate MODEL --data FILE -o STATS`: runs the model over sampled windows of real text and writes
// the activation statistics of every linear layer (an imatrix llama.cpp reads, plus mixq's extras), then
// ranks the layers by activation spikes.
#include <algorithm>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mixq/base/error.h"
#include "mixq/base/timer.h"
#include "mixq/quant/calibration.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct CalibrateArgs {
  ModelArgs model;
  CalibrationOptions calib;
  std::string output;
  int top = 10;
  bool json = false;
};

void RunCalibrate(const CalibrateArgs& args) {
  if (!args.output.ends_with(".gguf")) Fail("-o '{}' must end in .gguf (statistics are written as GGUF)", args.output);
  if (args.top < 0) Fail("--top {} is out of range (>= 0)", args.top);
  const Model model = LoadModelFromArgs(args.model);
  Timer timer;
  const auto windows = SampleCalibrationWindows(model, args.calib);
  CalibrationStats stats = CollectCalibrationStats(model, windows, args.calib.data_path);
  stats.seed = args.calib.seed;
  SaveCalibrationStats(stats, args.output);
  const std::vector<SpikeRank> spikes = RankSpikes(stats);
  const size_t shown = std::min(spikes.size(), static_cast<size_t>(args.top));
  if (args.json) {
    nlohmann::ordered_json ranked = nlohmann::ordered_json::array();
    for (const SpikeRank& r : spikes) {
      ranked.push_back({{"name", r.name},
                        {"max_input", r.max_input},
                        {"max_output", r.max_output},
                        {"input_ratio", r.input_ratio},
                        {"output_ratio", r.output_ratio}});
    }
    nlohmann::ordered_json j = {{"output", args.output},       {"windows", stats.chunks},
                                {"ctx", stats.chunk_size},     {"tokens", stats.chunks * stats.chunk_size},
                                {"linears", stats.linears.size()}, {"seconds", timer.ElapsedSeconds()},
                                {"spikes", ranked}};
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("calibrated {} linear layers on {} windows x {} tokens of {} in {:.1f} s\n", stats.linears.size(),
             stats.chunks, stats.chunk_size, args.calib.data_path, timer.ElapsedSeconds());
  fmt::print("activation spikes (max |x| over the calibration tokens, and its ratio to the median layer):\n");
  fmt::print("{:<28} {:>12} {:>8} {:>12} {:>8}\n", "linear", "max |input|", "ratio", "max |output|", "ratio");
  for (size_t i = 0; i < shown; ++i) {
    const SpikeRank& r = spikes[i];
    fmt::print("{:<28} {:>12.4g} {:>8.2f} {:>12.4g} {:>8.2f}\n", r.name, r.max_input, r.input_ratio, r.max_output,
               r.output_ratio);
  }
  fmt::print("wrote {}\n", args.output);
}

}  // namespace

void RegisterCalibrate(CLI::App& app) {
  auto args = std::make_shared<CalibrateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate", "Collect activation statistics of every linear layer (imatrix, AWQ scales, spikes)");
  AddModelArgs(cmd, args->model);
  cmd->add_option("--data", args->calib.data_path, "calibration text: a plain text file, or JSONL with \"text\"")
      ->required();
  cmd->add_option("--samples", args->calib.samples, "windows sampled from the text (default 128)");
  cmd->add_option("--ctx", args->calib.ctx, "tokens per window (default 512)");
  cmd->add_option("--seed", args->calib.seed, "seed of the window sampling (default 0)");
  cmd->add_option("-o,--output", args->output, "the statistics file to write (.gguf)")->required();
  cmd->add_option("--top", args->top, "spike-ranked layers to print (default 10)");
  cmd->add_flag("--json", args->json, "print the summary and the full spike ranking as JSON");
  cmd->callback([args] { RunCalibrate(*args); });
}

}  // namespace mixq::cli
