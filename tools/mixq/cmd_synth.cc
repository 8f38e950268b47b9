// `mixq synth --preset NAME [--layers N] OUT.gguf`: a model with a real architecture's shapes and random
// weights, for speed and memory benchmarks (its metadata says it is synthetic).
#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/base/timer.h"
#include "mixq/model/save_gguf.h"
#include "mixq/model/synth.h"
#include "tools/mixq/commands.h"

namespace mixq::cli {
namespace {

struct SynthArgs {
  std::string preset;
  int64_t layers = 0;
  std::string type = "f16";
  uint64_t seed = 1;
  std::string output;
};

void RunSynth(const SynthArgs& args) {
  const SynthPreset& preset = FindSynthPreset(args.preset);
  const auto dtype = DTypeFromName(args.type);
  if (!dtype) Fail("--type '{}' is not a type name (f32, f16, bf16)", args.type);
  Timer timer;
  const Model model = MakeSyntheticModel(preset, args.layers, *dtype, args.seed);
  SaveGgufModel(model, args.output, *dtype);
  const ModelSize size = ComputeModelSize(model);
  fmt::print("wrote {}: {} ({}), {:.3f} B parameters, {:.2f} GiB, in {:.1f} s\n", args.output,
             model.metadata.at("general.name"), DTypeName(*dtype), size.parameters / 1e9,
             size.bytes / 1073741824.0, timer.ElapsedSeconds());
  fmt::print("synthetic: random weights; use it for speed and memory only, never for quality\n");
}

}  // namespace

void RegisterSynth(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  std::vector<std::string> names;
  for (const SynthPreset& p : SynthPresets()) names.push_back(p.name);
  CLI::App* cmd = app.add_subcommand("synth", "Write a model with a real architecture's shapes and random weights");
  cmd->add_option("--preset", args->preset, "architecture to copy")->required()->check(CLI::IsMember(names));
  cmd->add_option("--layers", args->layers, "keep only the first N layers (default: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{4096}));
  cmd->add_option("--type", args->type, "weight type: f32, f16, bf16")->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("--seed", args->seed, "random seed");
  cmd->add_option("output", args->output, "output GGUF file")->required();
  cmd->callback([args] { RunSynth(*args); });
}

}  // namespace mixq::cli
