// Options every model-reading subcommand shares, and small output helpers.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "mixq/model/model.h"

namespace mixq::cli {

struct ModelArgs {
  std::string path;
  std::string tokenizer;
  bool refuse_nonfinite = false;
  int threads = 0;  // 0 = one per core
};

// Adds MODEL (positional), --tokenizer, --refuse-nonfinite and -t/--threads to `cmd`.
void AddModelArgs(CLI::App* cmd, ModelArgs& args);

// Applies --threads and loads the model (the tokenizer optional when `require_tokenizer` is false).
Model LoadModelFromArgs(const ModelArgs& args, bool require_tokenizer = true);

// The same for the commands that run the model: its matrices then also go into the decode kernels'
// layout where this CPU has one (InterleaveForDecode).
Model LoadModelToRun(const ModelArgs& args, bool require_tokenizer = true);

}  // namespace mixq::cli
