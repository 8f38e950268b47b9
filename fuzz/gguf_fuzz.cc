// libFuzzer target: the GGUF parser must turn any byte string into a GgufFile or a mixq::Error, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "mixq/base/error.h"
#include "mixq/io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A copy of exactly `size` bytes, so AddressSanitizer sees any read past the end of the "file".
  std::vector<std::byte> bytes(size);
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    const mixq::GgufFile file = mixq::ParseGguf(bytes, "fuzz.gguf");
    // Touch what the parser vouched for: every tensor's first and last byte, and every typed getter.
    volatile uint8_t sink = 0;
    for (const mixq::GgufTensorInfo& info : file.tensors) {
      const mixq::TensorView view = file.View(info);
      sink = sink + static_cast<uint8_t>(view.data[0]) + static_cast<uint8_t>(view.data[view.bytes - 1]);
    }
    for (const auto& [key, value] : file.metadata) {
      try {
        file.GetInt(key);
      } catch (const mixq::Error&) {
      }
      try {
        file.GetFloat(key);
      } catch (const mixq::Error&) {
      }
      try {
        file.GetString(key);
      } catch (const mixq::Error&) {
      }
      try {
        file.GetBool(key);
      } catch (const mixq::Error&) {
      }
    }
  } catch (const mixq::Error&) {
  }
  return 0;
}
