// PLACEHOLDER: `mixq info`, being written.
#include "tools/mixq/commands.h"
namespace mixq::cli {
void RegisterInfo(CLI::App&) {}
}  // namespace mixq::cli
