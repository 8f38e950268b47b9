// PLACEHOLDER: `mixq convert`, being written.
#include "tools/mixq/commands.h"
namespace mixq::cli {
void RegisterConvert(CLI::App&) {}
}  // namespace mixq::cli
