// PLACEHOLDER: `mixq synth`, being written.
#include "tools/mixq/commands.h"
namespace mixq::cli {
void RegisterSynth(CLI::App&) {}
}  // namespace mixq::cli
