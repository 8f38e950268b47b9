// Warnings and informational messages on stderr, so stdout stays clean for results and --json.
#pragma once

#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace mixq {

enum class LogLevel { kQuiet, kWarning, kInfo };

// The process-wide verbosity; commands set it from --quiet/--verbose.
LogLevel& CurrentLogLevel();

void EmitLog(LogLevel level, const std::string& message);

template <typename... Args>
void Warn(fmt::format_string<Args...> format, Args&&... args) {
  EmitLog(LogLevel::kWarning, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void Info(fmt::format_string<Args...> format, Args&&... args) {
  EmitLog(LogLevel::kInfo, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mixq
