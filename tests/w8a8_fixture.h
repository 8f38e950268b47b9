// W8A8 test fixtures: stories260K's calibration statistics (on the calibration half of its excerpt, as
// `mixq calibrate` collects them) in memory and as a file, and stories260K quantized to a W8A8 format.
#pragma once

#include <string>

#include "mixq/quant/calibration.h"
#include "mixq/quant/quantize_model.h"
#include "stories_fixture.h"

namespace mixq::testing {

inline const CalibrationStats& StoriesCalibrationStats() {
  static const CalibrationStats* stats = [] {
    CalibrationOptions options;
    options.data_path = StoriesCalibrationFile();
    options.samples = 32;
    options.ctx = 128;
    const auto windows = SampleCalibrationWindows(Stories(), options);
    return new CalibrationStats(CollectCalibrationStats(Stories(), windows, options.data_path));
  }();
  return *stats;
}

inline std::string StoriesCalibrationStatsFile() {
  static const std::string path = [] {
    const std::string p = TempPath("stories-w8a8-stats.gguf");
    SaveCalibrationStats(StoriesCalibrationStats(), p);
    return p;
  }();
  return path;
}

// Quantizes stories260K with `options` (calibration statistics attached) into a temp file; returns the path.
inline std::string QuantizeStoriesW8A8(QuantizeOptions options, const std::string& name,
                                       QuantizeReport* report = nullptr) {
  options.calib = &StoriesCalibrationStats();
  const std::string path = TempPath(name);
  const QuantizeReport r = QuantizeModel(Stories(), path, options);
  if (report != nullptr) *report = r;
  return path;
}

inline QuantizeOptions TypeOptions(const std::string& format) {
  QuantizeOptions options;
  options.type = ParseWeightFormat(format);
  options.method = QuantMethod::kRtn;
  return options;
}

}  // namespace mixq::testing
