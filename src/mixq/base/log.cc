// Warnings and informational messages on stderr.
#include "mixq/base/log.h"

namespace mixq {

LogLevel& CurrentLogLevel() {
  static LogLevel level = LogLevel::kWarning;
  return level;
}

void EmitLog(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) > static_cast<int>(CurrentLogLevel())) return;
  const char* prefix = level == LogLevel::kWarning ? "mixq: warning: " : "mixq: ";
  std::fprintf(stderr, "%s%s\n", prefix, message.c_str());
}

}  // namespace mixq
