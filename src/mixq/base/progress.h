// A progress bar for long jobs, drawn on stderr only when stderr is a terminal.
#pragma once

#include <cstdint>
#include <string>

#include "mixq/base/timer.h"

namespace mixq {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  ~ProgressBar();
  // Moves the bar to `done` items; `suffix` is shown after the bar (e.g. a running estimate).
  void Update(int64_t done, const std::string& suffix = "");
  void Finish();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool finished_ = false;
  Timer timer_;
};

}  // namespace mixq
