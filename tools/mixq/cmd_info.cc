// `mixq info MODEL`: architecture, hyper-parameters, every tensor, parameter count and bits per weight.
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "mixq/formats/weight_format.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct InfoArgs {
  ModelArgs model;
  bool json = false;
};

const char* RopeStyleName(RopeStyle style) {
  return style == RopeStyle::kInterleaved ? "interleaved (GGUF/llama2.c)" : "rotate-half (Hugging Face)";
}

void RunInfo(const InfoArgs& args) {
  const Model model = LoadModelFromArgs(args.model, /*require_tokenizer=*/false);
  const LlamaConfig& c = model.config;
  const ModelSize size = ComputeModelSize(model);
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  ForEachTensor(c, model.weights, [&](const TensorSlot& slot) {
    const TensorView& t = *slot.view;
    // mixq INT tensors show their grouping too ("int4-g128"), which their type id alone does not say.
    std::string dtype = IsIntFormat(t.dtype) ? WeightFormatName(WeightFormat{t.dtype, t.group}) : DTypeName(t.dtype);
    // A salient part shows as "+N" FP16 weights; its bytes count with the tensor's.
    if (!t.salient.empty()) dtype += fmt::format(" +{}", t.salient.nnz);
    tensors.push_back({{"name", slot.name},
                       {"dtype", dtype},
                       {"shape", t.shape},
                       {"bytes", t.bytes + t.salient.bytes(t.rows())},
                       {"salient", t.salient.nnz}});
  });
  const std::string tokenizer =
      model.tokenizer.loaded() ? fmt::format("{} ({} tokens)", model.tokenizer.vocab().model, model.tokenizer.vocab().size())
                               : "none";
  if (args.json) {
    nlohmann::ordered_json j;
    j["path"] = model.path;
    j["format"] = ModelFormatName(model.format);
    j["architecture"] = c.architecture;
    j["hyperparameters"] = {{"dim", c.dim},
                            {"hidden_dim", c.hidden_dim},
                            {"n_layers", c.n_layers},
                            {"n_heads", c.n_heads},
                            {"n_kv_heads", c.n_kv_heads},
                            {"head_dim", c.head_dim},
                            {"vocab_size", c.vocab_size},
                            {"context_length", c.context_length},
                            {"rms_eps", c.rms_eps},
                            {"rope_theta", c.rope_theta},
                            {"rope_style", c.rope_style == RopeStyle::kInterleaved ? "interleaved" : "half"},
                            {"rope_scaled", !c.rope_freq_factors.empty()},
                            {"tied_embeddings", c.tied_embeddings}};
    j["tokenizer"] = tokenizer;
    j["metadata"] = model.metadata;
    j["tensors"] = tensors;
    j["parameters"] = size.parameters;
    j["bytes"] = size.bytes;
    j["bits_per_weight"] = size.bits_per_weight();
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("model:        {}\n", model.path);
  fmt::print("format:       {}\n", ModelFormatName(model.format));
  for (const auto& [key, value] : model.metadata) fmt::print("{:<13} {}\n", key + ":", value);
  fmt::print("architecture: {}\n", c.architecture);
  fmt::print("dim {}  hidden {}  layers {}  heads {}  kv heads {}  head dim {}\n", c.dim, c.hidden_dim, c.n_layers,
             c.n_heads, c.n_kv_heads, c.head_dim);
  fmt::print("vocab {}  context {}  rms eps {:g}  rope theta {:g}  rope {}{}  tied embeddings {}\n", c.vocab_size,
             c.context_length, c.rms_eps, c.rope_theta, RopeStyleName(c.rope_style),
             c.rope_freq_factors.empty() ? "" : " + llama3 scaling", c.tied_embeddings ? "yes" : "no");
  fmt::print("tokenizer:    {}\n\n", tokenizer);
  fmt::print("{:<32} {:<14} {:>18} {:>14}\n", "tensor", "type", "shape", "bytes");
  for (const auto& t : tensors) {
    fmt::print("{:<32} {:<14} {:>18} {:>14}\n", t["name"].get<std::string>(), t["dtype"].get<std::string>(),
               ShapeString(t["shape"].get<Shape>()), t["bytes"].get<int64_t>());
  }
  fmt::print("\nparameters:   {} ({:.3f} M)\n", size.parameters, size.parameters / 1e6);
  fmt::print("weight bytes: {} ({:.2f} MiB), {:.2f} bits per weight\n", size.bytes, size.bytes / 1048576.0,
             size.bits_per_weight());
}

}  // namespace

void RegisterInfo(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd = app.add_subcommand("info", "Show a model's architecture, hyper-parameters and tensors");
  AddModelArgs(cmd, args->model);
  cmd->add_flag("--json", args->json, "print JSON");
  cmd->callback([args] { RunInfo(*args); });
}

}  // namespace mixq::cli
