// PLACEHOLDER: `mixq generate`, being written.
#include "tools/mixq/commands.h"
namespace mixq::cli {
void RegisterGenerate(CLI::App&) {}
}  // namespace mixq::cli
