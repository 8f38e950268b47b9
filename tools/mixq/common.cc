// Options every model-reading subcommand shares.
#include "tools/mixq/common.h"


#include "mixq/base/error.h"
#include "mixq/base/threads.h"

namespace mixq::cli {

void AddModelArgs(CLI::App* cmd, ModelArgs& args) {
  cmd->add_option("model", args.path, "llama2.c checkpoint, GGUF file, or Hugging Face folder")->required();
  cmd->add_option("--tokenizer", args.tokenizer, "tokenizer file (llama2.c tokenizer.bin or tokenizer.model)");
  cmd->add_flag("--refuse-nonfinite", args.refuse_nonfinite, "refuse weights holding NaN/Inf (default: warn)");
  cmd->add_option("-t,--threads", args.threads, "worker threads (default: one per core)")
      ->check(CLI::Range(0, 1024));
}

Model LoadModelFromArgs(const ModelArgs& args, bool require_tokenizer) {
  SetThreadCount(args.threads);
  LoadOptions options;
  options.tokenizer_path = args.tokenizer;
  options.refuse_nonfinite = args.refuse_nonfinite;
  options.require_tokenizer = require_tokenizer;
  return LoadModel(args.path, options);
}

Model LoadModelToRun(const ModelArgs& args, bool require_tokenizer) {
  Model model = LoadModelFromArgs(args, require_tokenizer);
  InterleaveForDecode(model);
  return model;
}


}  // namespace mixq::cli
