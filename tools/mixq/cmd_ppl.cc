// PLACEHOLDER: `mixq ppl`, being written.
#include "tools/mixq/commands.h"
namespace mixq::cli {
void RegisterPerplexity(CLI::App&) {}
}  // namespace mixq::cli
