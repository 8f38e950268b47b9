// libFuzzer target: the calibration statistics reader (mixq's GGUF, llama.cpp's imatrix GGUF and legacy
// .dat) must turn any byte string into statistics or a mixq::Error, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mixq/base/error.h"
#include "mixq/quant/calibration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);  // exactly `size` bytes, so AddressSanitizer sees overreads
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    const mixq::CalibrationStats stats = mixq::ParseCalibrationStats(bytes, "fuzz.imatrix");
    // Touch what the reader vouched for.
    volatile double sink = 0;
    for (const auto& [name, s] : stats.linears) {
      for (float v : s.Importance()) sink = sink + v;
      sink = sink + s.MaxInput() + s.MaxOutput();
    }
    mixq::RankSpikes(stats);
  } catch (const mixq::Error&) {
  }
  return 0;
}
