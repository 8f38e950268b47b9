// `mixq convert IN OUT.gguf [--type f32|f16|bf16]`: any model mixq loads, written as llama.cpp-compatible GGUF.
#include <memory>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/io/gguf.h"
#include "mixq/model/save_gguf.h"
#include "tools/mixq/commands.h"
#include "tools/mixq/common.h"

namespace mixq::cli {
namespace {

struct ConvertArgs {
  ModelArgs model;
  std::string output;
  std::string type;  // empty: the input's weight type
};

void RunConvert(const ConvertArgs& args) {
  if (!args.output.ends_with(".gguf")) Fail("output '{}' must end in .gguf (convert writes GGUF)", args.output);
  std::optional<DType> type;
  if (!args.type.empty()) {
    type = DTypeFromName(args.type);
    if (!type || (*type != DType::kF32 && *type != DType::kF16 && *type != DType::kBF16)) {
      Fail("--type '{}' is not one convert writes: choose f32, f16 or bf16", args.type);
    }
  }
  const Model model = LoadModelFromArgs(args.model, /*require_tokenizer=*/true);
  if (!type) {
    type = PrimaryWeightType(model);
    if (*type != DType::kF32 && *type != DType::kF16 && *type != DType::kBF16) {
      Fail("'{}' holds {} weights; pass --type f32, f16 or bf16", model.path, DTypeName(*type));
    }
  }
  SaveGgufModel(model, args.output, *type);

  // The summary is read back from the written file, which also proves it parses.
  const GgufFile written = ReadGguf(args.output);
  int64_t parameters = 0;
  uint64_t tensor_bytes = 0;
  for (const GgufTensorInfo& t : written.tensors) {
    parameters += ElementCount(t.shape);
    tensor_bytes += t.bytes;
  }
  fmt::print("wrote {}: {} tensors, {} parameters, {} bytes ({:.2f} MiB file), {:.2f} bits per weight ({})\n",
             args.output, written.tensors.size(), parameters, tensor_bytes, written.bytes.size() / 1048576.0,
             parameters == 0 ? 0.0 : 8.0 * static_cast<double>(tensor_bytes) / static_cast<double>(parameters),
             DTypeName(*type));
}

}  // namespace

void RegisterConvert(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand("convert", "Write a model (llama2.c, GGUF, Hugging Face) as a GGUF file");
  cmd->add_option("model", args->model.path, "llama2.c checkpoint, GGUF file, or Hugging Face folder")->required();
  cmd->add_option("output", args->output, "the GGUF file to write")->required();
  cmd->add_option("--type", args->type, "weight type: f32, f16 or bf16 (default: the input's; norms stay f32)");
  cmd->add_option("--tokenizer", args->model.tokenizer,
                  "tokenizer file (llama2.c tokenizer.bin, tokenizer.model or a GGUF vocabulary)");
  cmd->add_flag("--refuse-nonfinite", args->model.refuse_nonfinite, "refuse weights holding NaN/Inf");
  cmd->callback([args] { RunConvert(*args); });
}

}  // namespace mixq::cli
