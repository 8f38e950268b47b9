// Errors for bad input (files, options, configs): carry what was wrong and where, caught in main.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace mixq {

// Thrown for input the user can fix: a corrupt file, an unknown option value, a shape that does not fit.
// The message names the file, tensor or option, with the expected and the actual value.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void Fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mixq
