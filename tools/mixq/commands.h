// Registration of every subcommand; each lives in its own cmd_*.cc file.
#pragma once

#include <CLI/CLI.hpp>

namespace mixq::cli {

void RegisterCommands(CLI::App& app);

// One per subcommand file.
void RegisterInfo(CLI::App& app);
void RegisterGenerate(CLI::App& app);
void RegisterPerplexity(CLI::App& app);
void RegisterConvert(CLI::App& app);
void RegisterBench(CLI::App& app);
void RegisterSynth(CLI::App& app);
void RegisterQuantize(CLI::App& app);
void RegisterKld(CLI::App& app);
void RegisterEval(CLI::App& app);
void RegisterCalibrate(CLI::App& app);

}  // namespace mixq::cli
