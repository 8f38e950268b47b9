// PLACEHOLDER: `mixq bench`, being written.
#include "tools/mixq/commands.h"
namespace mixq::cli {
void RegisterBench(CLI::App&) {}
}  // namespace mixq::cli
