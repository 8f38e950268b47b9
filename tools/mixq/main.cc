// The mixq command line: one binary, one subcommand per file; no algorithm lives here.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "mixq/base/error.h"
#include "tools/mixq/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"mixq: load, quantize, run and measure LLaMA-family models on the CPU"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  mixq::cli::RegisterCommands(app);
  try {
    app.parse(argc, argv);
    return 0;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mixq::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "mixq: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    fmt::print(stderr, "mixq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "mixq: error: {}\n", e.what());
    return 1;
  }
}
