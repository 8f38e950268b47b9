// The bandwidth probes run on any size and return a plausible positive rate.
#include "mixq/kernels/bandwidth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

namespace mixq {
namespace {

// A 16 MiB buffer measures cache bandwidth, so only the range is checked: a real machine moves between
// 0.1 GB/s and 10 TB/s; 0, NaN or inf would mean the timing or the byte count is broken.
TEST(BandwidthTest, ReadAndCopyReturnPlausibleRates) {
  const size_t bytes = size_t{16} << 20;
  const double read = MeasureReadBandwidthGBs(bytes, 2);
  const double copy = MeasureCopyBandwidthGBs(bytes, 2);
  EXPECT_TRUE(std::isfinite(read) && read > 0.1 && read < 1e4) << read;
  EXPECT_TRUE(std::isfinite(copy) && copy > 0.1 && copy < 1e4) << copy;
}

// A size below one chunk is rounded up to one (64 floats) rather than dividing by zero; a thousand
// bytes is all thread start-up, so only a positive finite rate is required.
TEST(BandwidthTest, TinyBufferStillMeasures) {
  const double read = MeasureReadBandwidthGBs(100, 1);
  const double copy = MeasureCopyBandwidthGBs(100, 1);
  EXPECT_TRUE(std::isfinite(read) && read > 0) << read;
  EXPECT_TRUE(std::isfinite(copy) && copy > 0) << copy;
}

// A caller's buffer whose size is no multiple of the 256-byte chunk: the pass reads only whole chunks, so
// nothing past the end (ASan, scripts/test, sees the heap buffer's bounds), and a buffer smaller than one
// chunk reads nothing yet still times.
TEST(BandwidthTest, ReadPassStaysInsideTheCallersBuffer) {
  for (const size_t bytes : {size_t{100}, size_t{1000}, size_t{70000} + 4}) {
    const auto buffer = std::make_unique<float[]>(bytes / sizeof(float));
    for (size_t i = 0; i < bytes / sizeof(float); ++i) buffer[i] = 1.0f;
    const double seconds = TimeReadPass(buffer.get(), bytes);
    EXPECT_TRUE(std::isfinite(seconds) && seconds >= 0) << bytes << " bytes: " << seconds;
  }
}

}  // namespace
}  // namespace mixq
