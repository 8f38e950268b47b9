// libFuzzer target: the safetensors header parser must reject any byte string with mixq::Error, never crash.
#include <cstddef>
#include <cstdint>
#include <span>

#include "mixq/base/error.h"
#include "mixq/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto bytes = std::span(reinterpret_cast<const std::byte*>(data), size);
    const mixq::SafetensorsFile file = mixq::ParseSafetensors(bytes, "fuzz.safetensors");
    // Whatever parsed must describe bytes inside the input: touch the first and last byte of every view.
    volatile std::byte sink{};
    for (const auto& info : file.tensors) {
      const mixq::TensorView view = file.View(info);
      if (view.bytes > 0) sink = static_cast<std::byte>(static_cast<uint8_t>(view.data[0]) ^ static_cast<uint8_t>(view.data[view.bytes - 1]));
    }
    (void)sink;
  } catch (const mixq::Error&) {
  }
  return 0;
}
