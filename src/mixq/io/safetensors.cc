// Hugging Face .safetensors files: header parsing and validation, and sharded checkpoints.
#include "mixq/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "mixq/base/error.h"
#include "mixq/io/json_file.h"

namespace mixq {
namespace {

using Json = nlohmann::json;

// JSON kind names for messages ("expected an array, got a string").
const char* JsonKind(const Json& j) { return j.type_name(); }

// Shape entries: non-negative integers whose product fits in int64.
Shape ParseShape(const Json& shape_json, const std::string& source, const std::string& tensor) {
  if (!shape_json.is_array()) {
    Fail("{}: tensor '{}': \"shape\" must be an array of integers, got {}", source, tensor, JsonKind(shape_json));
  }
  if (shape_json.size() > 8) Fail("{}: tensor '{}' has {} dimensions (at most 8)", source, tensor, shape_json.size());
  Shape shape;
  int64_t elements = 1;
  for (const Json& d : shape_json) {
    if (!d.is_number_integer()) {
      Fail("{}: tensor '{}': shape entry {} is not an integer", source, tensor, d.dump());
    }
    if (d.is_number_unsigned() ? d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) : d.get<int64_t>() < 0) {
      Fail("{}: tensor '{}': shape entry {} is out of range (expected 0..2^63)", source, tensor, d.dump());
    }
    const int64_t dim = d.get<int64_t>();
    if (__builtin_mul_overflow(elements, dim, &elements)) {
      Fail("{}: tensor '{}': shape {} has more elements than fit in 64 bits", source, tensor, shape_json.dump());
    }
    shape.push_back(dim);
  }
  return shape;
}

uint64_t ParseOffset(const Json& j, const std::string& source, const std::string& tensor, const char* which) {
  if (!j.is_number_unsigned()) {
    Fail("{}: tensor '{}': data_offsets {} is {}, expected a non-negative integer", source, tensor, which, j.dump());
  }
  return j.get<uint64_t>();
}

SafetensorsTensorInfo ParseTensorEntry(const std::string& name, const Json& entry, const std::string& source,
                                       uint64_t data_bytes) {
  if (!entry.is_object()) Fail("{}: tensor '{}' must be a JSON object, got {}", source, name, JsonKind(entry));
  auto field = [&](const char* key) -> const Json& {
    const auto it = entry.find(key);
    if (it == entry.end()) Fail("{}: tensor '{}' has no \"{}\"", source, name, key);
    return *it;
  };
  SafetensorsTensorInfo info;
  info.name = name;

  const Json& dtype_json = field("dtype");
  if (!dtype_json.is_string()) {
    Fail("{}: tensor '{}': \"dtype\" must be a string, got {}", source, name, JsonKind(dtype_json));
  }
  const std::string dtype_name = dtype_json.get<std::string>();
  const auto dtype = DTypeFromSafetensorsName(dtype_name);
  if (!dtype) {
    Fail("{}: tensor '{}' has dtype {}: {} is not supported (mixq loads F32, F16 and BF16 safetensors)", source,
         name, dtype_name, dtype_name);
  }
  info.dtype = *dtype;
  info.shape = ParseShape(field("shape"), source, name);

  const Json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2) {
    Fail("{}: tensor '{}': \"data_offsets\" must be [begin, end], got {}", source, name, offsets.dump());
  }
  info.begin = ParseOffset(offsets[0], source, name, "begin");
  info.end = ParseOffset(offsets[1], source, name, "end");
  if (info.begin > info.end) {
    Fail("{}: tensor '{}': data_offsets begin {} is after end {}", source, name, info.begin, info.end);
  }
  if (info.end > data_bytes) {
    Fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes after the header; "
         "is the file truncated?)", source, name, info.begin, info.end, data_bytes);
  }
  const auto expected = StorageBytes(info.dtype, ElementCount(info.shape));
  if (!expected || *expected != info.end - info.begin) {
    Fail("{}: tensor '{}' holds {} bytes, expected {} for {} {}", source, name, info.end - info.begin,
         expected ? fmt::format("{}", *expected) : std::string("(overflow)"), dtype_name,
         ShapeString(info.shape));
  }
  return info;
}

}  // namespace

std::optional<DType> DTypeFromSafetensorsName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return std::nullopt;
}

const SafetensorsTensorInfo* SafetensorsFile::FindTensor(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

TensorView SafetensorsFile::View(const SafetensorsTensorInfo& info) const {
  return TensorView{info.name, info.dtype, info.shape, bytes.data() + data_offset + info.begin, info.bytes()};
}

SafetensorsFile ParseSafetensors(std::span<const std::byte> bytes, const std::string& name) {
  SafetensorsFile file;
  file.path = name;
  file.bytes = bytes;
  if (bytes.size() < 8) {
    Fail("{}: not a safetensors file: {} bytes is shorter than the 8-byte header length", name, bytes.size());
  }
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), sizeof header_bytes);
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    Fail("{}: safetensors header length {} is absurd (limit {} bytes); is this a safetensors file?", name,
         header_bytes, kMaxSafetensorsHeaderBytes);
  }
  if (header_bytes > bytes.size() - 8) {
    Fail("{}: safetensors header length {} runs past the end of the file ({} bytes; truncated?)", name,
         header_bytes, bytes.size());
  }
  file.data_offset = 8 + header_bytes;
  const uint64_t data_bytes = bytes.size() - file.data_offset;
  const char* text = reinterpret_cast<const char*>(bytes.data() + 8);

  // Duplicate tensor names would silently keep the last entry; the parser callback sees each top-level key.
  std::set<std::string> keys;
  std::string duplicate;
  const Json::parser_callback_t on_key = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth == 1 && event == Json::parse_event_t::key && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second) duplicate = key;
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, text + header_bytes, on_key);
  } catch (const Json::exception& e) {
    Fail("{}: safetensors header ({} bytes) is not valid JSON: {}", name, header_bytes, e.what());
  }
  if (!header.is_object()) Fail("{}: safetensors header must be a JSON object, got {}", name, JsonKind(header));
  if (!duplicate.empty()) Fail("{}: tensor '{}' appears twice in the safetensors header", name, duplicate);

  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") continue;
    file.tensors.push_back(ParseTensorEntry(key, entry, name, data_bytes));
  }
  std::sort(file.tensors.begin(), file.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < file.tensors.size(); ++i) {
    const auto& prev = file.tensors[i - 1];
    const auto& cur = file.tensors[i];
    // Empty tensors occupy no bytes, so they overlap nothing.
    if (cur.begin < prev.end && cur.begin != cur.end) {
      Fail("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", name, prev.name, prev.begin, prev.end, cur.name,
           cur.begin, cur.end);
    }
  }
  return file;
}

SafetensorsFile ReadSafetensors(const std::string& path) {
  auto mapping = std::make_shared<const MappedFile>(path);
  SafetensorsFile file = ParseSafetensors(mapping->bytes(), path);
  file.mapping = std::move(mapping);
  return file;
}

const SafetensorsTensorInfo* SafetensorsCheckpoint::FindTensor(std::string_view name,
                                                               const SafetensorsFile** shard) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) return nullptr;
  const SafetensorsFile& file = shards[it->second.shard];
  if (shard != nullptr) *shard = &file;
  return &file.tensors[it->second.tensor];
}

TensorView SafetensorsCheckpoint::View(std::string_view name) const {
  const SafetensorsFile* shard = nullptr;
  const SafetensorsTensorInfo* info = FindTensor(name, &shard);
  return info == nullptr ? TensorView{} : shard->View(*info);
}

std::vector<std::shared_ptr<const MappedFile>> SafetensorsCheckpoint::Mappings() const {
  std::vector<std::shared_ptr<const MappedFile>> out;
  for (const auto& s : shards) {
    if (s.mapping) out.push_back(s.mapping);
  }
  return out;
}

namespace {

void AddShard(SafetensorsCheckpoint& ckpt, SafetensorsFile file) {
  const size_t shard = ckpt.shards.size();
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    const auto [it, inserted] = ckpt.tensors.emplace(file.tensors[i].name, SafetensorsCheckpoint::Location{shard, i});
    if (!inserted) {
      Fail("{}: tensor '{}' is in both '{}' and '{}'", ckpt.source, file.tensors[i].name,
           ckpt.shards[it->second.shard].path, file.path);
    }
  }
  ckpt.shards.push_back(std::move(file));
}

SafetensorsCheckpoint OpenShardedCheckpoint(const std::filesystem::path& dir, const std::filesystem::path& index) {
  SafetensorsCheckpoint ckpt;
  ckpt.source = index.string();
  Json json = ReadJsonObjectFile(ckpt.source);
  if (!json.contains("weight_map") || !json["weight_map"].is_object()) {
    Fail("{}: expected an object with a \"weight_map\" object (tensor name -> shard file)", ckpt.source);
  }
  // Shards in the order they are first named, so that errors and mappings are deterministic.
  std::vector<std::string> shard_names;
  std::map<std::string, std::vector<std::string>> tensors_of_shard;
  for (const auto& [tensor, shard_json] : json["weight_map"].items()) {
    if (!shard_json.is_string()) {
      Fail("{}: weight_map[\"{}\"] must be a shard file name, got {}", ckpt.source, tensor, shard_json.dump());
    }
    const std::string shard = shard_json.get<std::string>();
    // A shard must be a plain file name in the folder: an index must not reach elsewhere on the disk.
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
        shard == "." || shard == "..") {
      Fail("{}: weight_map[\"{}\"] = \"{}\" is not a file name in the checkpoint folder", ckpt.source, tensor,
           shard);
    }
    auto& list = tensors_of_shard[shard];
    if (list.empty()) shard_names.push_back(shard);
    list.push_back(tensor);
  }
  if (shard_names.empty()) Fail("{}: \"weight_map\" is empty", ckpt.source);
  for (const std::string& shard : shard_names) {
    const std::filesystem::path shard_path = dir / shard;
    std::error_code ec;
    if (!std::filesystem::exists(shard_path, ec)) {
      Fail("{}: shard '{}' (holding '{}') does not exist", ckpt.source, shard_path.string(),
           tensors_of_shard[shard].front());
    }
    SafetensorsFile file = ReadSafetensors(shard_path.string());
    for (const std::string& tensor : tensors_of_shard[shard]) {
      if (file.FindTensor(tensor) == nullptr) {
        Fail("{}: weight_map says tensor '{}' is in '{}', but that shard does not hold it", ckpt.source, tensor,
             shard_path.string());
      }
    }
    AddShard(ckpt, std::move(file));
  }
  return ckpt;
}

}  // namespace

SafetensorsCheckpoint OpenSafetensorsCheckpoint(const std::string& dir_name) {
  namespace fs = std::filesystem;
  const fs::path dir(dir_name);
  std::error_code ec;
  if (fs::exists(dir / "model.safetensors", ec)) {
    SafetensorsCheckpoint ckpt;
    ckpt.source = (dir / "model.safetensors").string();
    AddShard(ckpt, ReadSafetensors(ckpt.source));
    return ckpt;
  }
  if (fs::exists(dir / "model.safetensors.index.json", ec)) {
    return OpenShardedCheckpoint(dir, dir / "model.safetensors.index.json");
  }
  std::vector<std::string> candidates;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") candidates.push_back(entry.path().string());
  }
  if (candidates.size() != 1) {
    Fail("'{}': no model.safetensors or model.safetensors.index.json (and {} other .safetensors files, so none "
         "can be chosen)", dir_name, candidates.size());
  }
  SafetensorsCheckpoint ckpt;
  ckpt.source = candidates.front();
  AddShard(ckpt, ReadSafetensors(ckpt.source));
  return ckpt;
}

}  // namespace mixq
