// Where tests find the shared models and data (../shared beside the project root) and the built CLI.
#pragma once

#include <string>

namespace mixq::testing {

inline std::string SharedPath(const std::string& relative) {
  return std::string(MIXQ_SOURCE_DIR) + "/../shared/" + relative;
}
inline std::string Stories260KPath() { return SharedPath("models/stories260K/stories260K.bin"); }
inline std::string CliPath() { return MIXQ_CLI_PATH; }

}  // namespace mixq::testing
