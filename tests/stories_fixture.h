// stories260K and its TinyStories excerpt, loaded once per test binary, and the excerpt split into a
// calibration half and a held-out half, so calibration methods are judged on text they did not see.
#pragma once

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "mixq/base/file.h"
#include "mixq/model/model.h"
#include "test_paths.h"

namespace mixq::testing {

inline const Model& Stories() {
  static const Model* model = new Model(LoadModel(Stories260KPath()));
  return *model;
}

inline const std::string& StoriesText() {
  static const std::string text = ReadFileToString(SharedPath("data/tinystories/TinyStories-valid.head30k.txt"));
  return text;
}

inline std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

inline constexpr size_t kStoriesCalibrationBytes = 15000;

// The first half of the excerpt, written to a file (as `--data` takes it).
inline std::string StoriesCalibrationFile() {
  static const std::string path = [] {
    const std::string p = TempPath("stories-calibration-half.txt");
    std::ofstream(p) << StoriesText().substr(0, kStoriesCalibrationBytes);
    return p;
  }();
  return path;
}

inline std::string StoriesHeldOutText() { return StoriesText().substr(kStoriesCalibrationBytes); }

}  // namespace mixq::testing
