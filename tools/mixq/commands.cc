// Registration of every subcommand.
#include "tools/mixq/commands.h"

namespace mixq::cli {

void RegisterCommands(CLI::App& app) {
  RegisterInfo(app);
  RegisterGenerate(app);
  RegisterPerplexity(app);
  RegisterConvert(app);
  RegisterBench(app);
  RegisterSynth(app);
  RegisterKld(app);
  RegisterEval(app);
  RegisterCalibrate(app);
  RegisterQuantize(app);
}

}  // namespace mixq::cli
