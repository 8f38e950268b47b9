// GGUF v2/v3 files: a validating reader over an mmap (any alignment) and an atomic writer.
//
// Layout (little-endian): "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count; kv_count
// key/value pairs (string key = uint64 length + bytes; uint32 value type; value); tensor_count tensor
// infos (string name; uint32 n_dims; n_dims x uint64 ne, innermost first; uint32 ggml type; uint64
// offset into the data section); padding to `general.alignment` (default 32); the data section.
// docs/gguf.md spells out the bytes. Every count, length and offset is checked against the file size
// before it is used, so a corrupt or hostile file gets an error naming the file and the field.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixq/io/mapped_file.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufValueTypeName(GgufValueType type);

// One metadata value. Scalars use the field of their kind; arrays keep their element type and fill
// the vector of their kind (integers and bools in `ints`, floats in `floats`, strings in `strings`;
// nested arrays are validated and skipped, leaving the vectors empty).
struct GgufValue {
  GgufValueType type = GgufValueType::kUint32;
  GgufValueType array_type = GgufValueType::kUint8;  // element type when type == kArray
  int64_t int_value = 0;       // every integer type and bool (uint64 above INT64_MAX is rejected)
  double float_value = 0.0;    // float32 / float64
  std::string string_value;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  bool is_integer() const;  // an integer or bool scalar
  bool is_float() const;
};

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;           // row-major, outermost first (GGUF's ne reversed)
  uint64_t offset = 0;   // from the start of the data section
  size_t bytes = 0;
  int64_t group = 0;     // mixq INT types: from the key GgufGroupKey(name); see tensor/int_layout.h
};

// The metadata key holding a mixq INT tensor's group size (uint32; 0 = whole rows). ggml types have none.
std::string GgufGroupKey(std::string_view tensor_name);

// W8A8 tensors (docs/w8a8.md): the activation mode (string "int8-tensor" or "int8-token") and, for
// int8-tensor, the static activation scale (float32, max|x| / 127 from calibration). Absent: kFormat.
std::string GgufActivationKey(std::string_view tensor_name);
std::string GgufActivationScaleKey(std::string_view tensor_name);
// Whether `key` is one of those per-tensor keys (so model metadata copied between files skips them).
bool IsGgufActivationKey(std::string_view key);

struct GgufFile {
  std::string path;
  std::shared_ptr<const MappedFile> mapping;  // null when parsed from a caller's buffer
  std::span<const std::byte> bytes;           // the whole file
  uint32_t version = 3;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // file offset of the data section
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<GgufTensorInfo> tensors;

  const GgufValue* Find(std::string_view key) const;
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // A view of the tensor's bytes inside `bytes`.
  TensorView View(const GgufTensorInfo& info) const;

  // Typed metadata: nullopt when the key is absent; mixq::Error naming the file and key when present
  // with another type.
  std::optional<int64_t> GetInt(std::string_view key) const;       // any integer type
  std::optional<double> GetFloat(std::string_view key) const;      // float32/float64 or an integer
  std::optional<std::string> GetString(std::string_view key) const;
  std::optional<bool> GetBool(std::string_view key) const;
};

// Maps and parses `path`. Throws mixq::Error naming the file and the field for: wrong magic, an
// unsupported version, truncation anywhere, huge counts or lengths, unknown value or tensor types,
// duplicate keys or tensor names, tensors past the end of the file or overlapping, shapes whose size
// overflows or is not whole blocks, a non-power-of-two alignment.
GgufFile ReadGguf(const std::string& path);

// The same parser over bytes the caller keeps alive (used by the fuzz target and tests); `name` is
// used in error messages.
GgufFile ParseGguf(std::span<const std::byte> bytes, const std::string& name);

// Builds a GGUF v3 file in memory order and writes it atomically (temporary file, then rename).
class GgufWriter {
 public:
  void SetString(std::string key, std::string value);
  void SetUint32(std::string key, uint32_t value);
  void SetInt32(std::string key, int32_t value);
  void SetUint64(std::string key, uint64_t value);
  void SetFloat32(std::string key, float value);
  void SetBool(std::string key, bool value);
  void SetStringArray(std::string key, std::vector<std::string> values);
  void SetFloat32Array(std::string key, std::vector<float> values);
  void SetInt32Array(std::string key, std::vector<int32_t> values);
  // Adds a tensor whose bytes stay owned by the caller until Write returns. Shape is row-major; `group`
  // is the group size of a mixq INT tensor (written as the key GgufGroupKey(name)), else 0.
  void AddTensor(std::string name, DType dtype, Shape shape, const void* data, size_t bytes, int64_t group = 0);
  // Adds a tensor whose `bytes` bytes `produce` writes into a buffer when Write reaches it, so a
  // converter or quantizer holds one tensor in memory at a time, not the whole model.
  using TensorProducer = std::function<void(std::byte* dst)>;
  void AddTensor(std::string name, DType dtype, Shape shape, size_t bytes, TensorProducer produce,
                 int64_t group = 0);
  // Writes `path` (GGUF v3, data aligned to `alignment`); throws mixq::Error if it cannot.
  void Write(const std::string& path, uint64_t alignment = 32) const;

 private:
  struct Entry {
    std::string key;
    GgufValueType type;
    GgufValueType array_type;
    std::vector<std::byte> encoded;  // the value's bytes after the type field
  };
  struct PendingTensor {
    std::string name;
    DType dtype;
    Shape shape;
    const void* data;
    size_t bytes;
    TensorProducer produce;  // set instead of data for tensors made at write time
    int64_t group;
  };
  void AddEntry(std::string key, GgufValueType type, GgufValueType array_type, std::vector<std::byte> encoded);
  std::vector<Entry> entries_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace mixq
