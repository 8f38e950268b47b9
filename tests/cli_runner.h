// Running the built `mixq` binary from a test: its exit code and what it printed.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "test_paths.h"

namespace mixq::testing {

struct CliRun {
  int exit_code;
  std::string output;  // stdout, and stderr too unless with_stderr is false
};

inline CliRun RunMixq(const std::string& args, bool with_stderr = true) {
  const std::string command = CliPath() + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace mixq::testing
