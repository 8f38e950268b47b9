// Builds small .safetensors files in memory for tests: well-formed ones, and raw headers for bad input.
#pragma once

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mixq/formats/float16.h"
#include "mixq/tensor/tensor.h"

namespace mixq::testing {

struct FixtureTensor {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "F16", "BF16", ...
  Shape shape;
  std::vector<std::byte> data;
};

inline std::vector<std::byte> EncodeFloats(const std::string& dtype, const std::vector<float>& values) {
  std::vector<std::byte> out;
  for (float v : values) {
    if (dtype == "F32") {
      const auto* p = reinterpret_cast<const std::byte*>(&v);
      out.insert(out.end(), p, p + 4);
    } else {
      const uint16_t h = dtype == "F16" ? F32ToF16(v) : F32ToBF16(v);
      const auto* p = reinterpret_cast<const std::byte*>(&h);
      out.insert(out.end(), p, p + 2);
    }
  }
  return out;
}

// uint64 header length, the header text, then `data`.
inline std::vector<std::byte> RawSafetensors(const std::string& header, const std::vector<std::byte>& data) {
  std::vector<std::byte> out(8);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  const auto* h = reinterpret_cast<const std::byte*>(header.data());
  out.insert(out.end(), h, h + header.size());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// A well-formed file: tensors laid out in order, the header padded with spaces to a multiple of 8 bytes
// (as the Rust writer does) so that the data section stays aligned.
inline std::vector<std::byte> BuildSafetensors(const std::vector<FixtureTensor>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<std::byte> data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data.insert(data.end(), t.data.begin(), t.data.end());
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return RawSafetensors(text, data);
}

inline void WriteBytes(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

}  // namespace mixq::testing
