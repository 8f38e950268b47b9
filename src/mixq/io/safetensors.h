// Hugging Face .safetensors files (single or sharded): a validating reader over an mmap.
//
// Layout (little-endian): uint64 N, the byte length of the header; N bytes of UTF-8 JSON, an object
// mapping each tensor name to {"dtype": "F32"|"F16"|"BF16"|..., "shape": [d0, d1, ...] (row-major,
// outermost first), "data_offsets": [begin, end]} with offsets relative to the first byte after the
// header, plus an optional "__metadata__" object of strings (ignored); then the data. A sharded
// checkpoint is a folder with model.safetensors.index.json, whose "weight_map" maps each tensor name
// to the shard file holding it (model-00001-of-00003.safetensors, ...). docs/formats.md spells it out.
//
// Every length, offset and shape is checked before it is used, so a corrupt or hostile file gets an
// error naming the file, the tensor and the field. Tensors may not overlap; gaps between tensors are
// tolerated (nothing reads them), although the Rust reference reader refuses them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixq/io/mapped_file.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

// Headers beyond this are refused before they are parsed (the Rust reader's limit is 100 MB too).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;         // row-major, outermost first
  uint64_t begin = 0;  // data_offsets, relative to the start of the data section
  uint64_t end = 0;
  size_t bytes() const { return static_cast<size_t>(end - begin); }
};

struct SafetensorsFile {
  std::string path;
  std::shared_ptr<const MappedFile> mapping;  // null when parsed from a caller's buffer
  std::span<const std::byte> bytes;           // the whole file
  uint64_t data_offset = 0;                   // 8 + N: file offset of the data section
  std::vector<SafetensorsTensorInfo> tensors; // in the order of their data offsets

  const SafetensorsTensorInfo* FindTensor(std::string_view name) const;
  // A view of the tensor's bytes inside `bytes`, named as in the file.
  TensorView View(const SafetensorsTensorInfo& info) const;
};

// The safetensors dtype names mixq can load ("F32", "F16", "BF16"); nullopt for any other.
std::optional<DType> DTypeFromSafetensorsName(std::string_view name);

// Maps and parses `path`. Throws mixq::Error naming the file (and tensor and field) for: a file shorter
// than 8 bytes, a header length past the end of the file or above kMaxSafetensorsHeaderBytes, a header
// that is not a JSON object, a tensor entry without a string dtype / integer shape / two data offsets,
// a dtype mixq does not load (e.g. "F8_E4M3 is not supported"), negative dims or a size that overflows,
// begin > end, an end past the data, a byte count other than elements x dtype size, overlapping tensors.
SafetensorsFile ReadSafetensors(const std::string& path);

// The same parser over bytes the caller keeps alive (used by the fuzz target and tests); `name` is
// used in error messages.
SafetensorsFile ParseSafetensors(std::span<const std::byte> bytes, const std::string& name);

// A whole checkpoint: one file, or the shards listed by an index; tensor names are unique across it.
struct SafetensorsCheckpoint {
  std::string source;  // the file or the index path, for messages
  std::vector<SafetensorsFile> shards;
  struct Location {
    size_t shard;
    size_t tensor;
  };
  std::map<std::string, Location, std::less<>> tensors;

  // The tensor's entry and the shard holding it; nullptr (and *shard untouched) when absent.
  const SafetensorsTensorInfo* FindTensor(std::string_view name, const SafetensorsFile** shard) const;
  // The view of a tensor found by FindTensor, pointing into its shard's mmap.
  TensorView View(std::string_view name) const;
  // The mmaps of all shards, for a Model to keep its views valid.
  std::vector<std::shared_ptr<const MappedFile>> Mappings() const;
};

// Opens the checkpoint in folder `dir`: model.safetensors, else model.safetensors.index.json with its
// shards, else the only *.safetensors file in the folder. Throws mixq::Error naming the folder when
// there is none, and naming the index and tensor when the index is malformed, names a shard outside
// the folder or a missing shard, or maps a tensor to a shard that does not hold it.
SafetensorsCheckpoint OpenSafetensorsCheckpoint(const std::string& dir);

}  // namespace mixq
