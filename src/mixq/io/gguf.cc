// GGUF v2/v3: a validating parser (every count, length and offset checked before use) and an atomic writer.
#include "mixq/io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_set>

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/io/atomic_file.h"

namespace mixq {
namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;       // deeper nesting is refused so a hostile file cannot exhaust the stack
constexpr size_t kMaxTensorNameBytes = 63;  // GGML_MAX_NAME - 1: llama.cpp refuses longer names

// The fewest bytes one key/value pair or one tensor info can occupy; a count that cannot fit in the rest
// of the file is refused before anything is allocated for it.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;           // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one ne, type, offset

bool IsKnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kFloat64); }

// Bytes of one scalar of a fixed-size type; 0 for string and array.
size_t ScalarBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

// The smallest encoding of one array element of type t (an empty string is its 8-byte length).
uint64_t MinElementBytes(GgufValueType t) {
  if (t == GgufValueType::kString) return 8;
  if (t == GgufValueType::kArray) return 4 + 8;
  return ScalarBytes(t);
}

// A bounds-checked cursor over the file's bytes. Every read names the field it is reading so that a
// truncated or corrupt file gets an error saying where.
class Parser {
 public:
  Parser(std::span<const std::byte> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  const std::string& name() const { return name_; }

  void Need(uint64_t n, const std::string& field) const {
    if (n > remaining()) {
      Fail("'{}' is truncated: {} at byte offset {} needs {} bytes, but only {} remain (file size {})", name_,
           field, pos_, n, remaining(), bytes_.size());
    }
  }
  template <typename T>
  T Read(const std::string& field) {
    Need(sizeof(T), field);
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string ReadString(const std::string& field) {
    const uint64_t length = Read<uint64_t>(field + " length");
    if (length > remaining()) {
      Fail("'{}': {} at byte offset {} has length {}, past the end of the file ({} bytes remain)", name_, field,
           pos_ - 8, length, remaining());
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(length));
    pos_ += static_cast<size_t>(length);
    return s;
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& name_;
  size_t pos_ = 0;
};

int64_t ReadIntegerScalar(Parser& p, GgufValueType t, const std::string& field) {
  switch (t) {
    case GgufValueType::kUint8:
      return p.Read<uint8_t>(field);
    case GgufValueType::kInt8:
      return p.Read<int8_t>(field);
    case GgufValueType::kUint16:
      return p.Read<uint16_t>(field);
    case GgufValueType::kInt16:
      return p.Read<int16_t>(field);
    case GgufValueType::kUint32:
      return p.Read<uint32_t>(field);
    case GgufValueType::kInt32:
      return p.Read<int32_t>(field);
    case GgufValueType::kInt64:
      return p.Read<int64_t>(field);
    case GgufValueType::kUint64: {
      const uint64_t v = p.Read<uint64_t>(field);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Fail("'{}': {} is the uint64 {}, larger than mixq accepts (at most {})", p.name(), field, v,
             std::numeric_limits<int64_t>::max());
      }
      return static_cast<int64_t>(v);
    }
    case GgufValueType::kBool: {
      const uint8_t v = p.Read<uint8_t>(field);
      if (v > 1) Fail("'{}': {} is a bool stored as {}, expected 0 or 1", p.name(), field, v);
      return v;
    }
    default:
      break;
  }
  Fail("'{}': {} has type {}, which is not an integer", p.name(), field, GgufValueTypeName(t));
}

bool IsIntegerType(GgufValueType t) {
  return t != GgufValueType::kFloat32 && t != GgufValueType::kFloat64 && t != GgufValueType::kString &&
         t != GgufValueType::kArray;
}

GgufValueType ReadValueType(Parser& p, const std::string& field) {
  const uint32_t raw = p.Read<uint32_t>(field);
  if (!IsKnownValueType(raw)) {
    Fail("'{}': {} is {}, which is not a GGUF value type (0..12)", p.name(), field, raw);
  }
  return static_cast<GgufValueType>(raw);
}

// Reads an array body (element type, count, elements) into `out`; nested arrays are checked and dropped.
void ReadArray(Parser& p, GgufValue& out, const std::string& field, int depth) {
  if (depth > kMaxArrayNesting) {
    Fail("'{}': {} nests arrays {} deep; at most {} levels are accepted", p.name(), field, depth, kMaxArrayNesting);
  }
  const GgufValueType elem = ReadValueType(p, field + " element type");
  const uint64_t count = p.Read<uint64_t>(field + " element count");
  const uint64_t min_bytes = MinElementBytes(elem);
  if (count > p.remaining() / min_bytes) {
    Fail("'{}': {} claims {} elements of type {}, more than the {} bytes left in the file can hold", p.name(),
         field, count, GgufValueTypeName(elem), p.remaining());
  }
  out.array_type = elem;
  const size_t n = static_cast<size_t>(count);
  if (elem == GgufValueType::kString) {
    out.strings.reserve(n);
    for (size_t i = 0; i < n; ++i) out.strings.push_back(p.ReadString(fmt::format("{}[{}]", field, i)));
  } else if (elem == GgufValueType::kArray) {
    for (size_t i = 0; i < n; ++i) {
      GgufValue nested;
      ReadArray(p, nested, fmt::format("{}[{}]", field, i), depth + 1);
    }
  } else if (elem == GgufValueType::kFloat32) {
    out.floats.reserve(n);
    for (size_t i = 0; i < n; ++i) out.floats.push_back(p.Read<float>(field));
  } else if (elem == GgufValueType::kFloat64) {
    out.floats.reserve(n);
    for (size_t i = 0; i < n; ++i) out.floats.push_back(p.Read<double>(field));
  } else {
    out.ints.reserve(n);
    for (size_t i = 0; i < n; ++i) out.ints.push_back(ReadIntegerScalar(p, elem, field));
  }
}

GgufValue ReadValue(Parser& p, const std::string& key) {
  const std::string field = fmt::format("key '{}'", key);
  GgufValue v;
  v.type = ReadValueType(p, field + " value type");
  switch (v.type) {
    case GgufValueType::kFloat32:
      v.float_value = p.Read<float>(field + " value");
      break;
    case GgufValueType::kFloat64:
      v.float_value = p.Read<double>(field + " value");
      break;
    case GgufValueType::kString:
      v.string_value = p.ReadString(field + " value");
      break;
    case GgufValueType::kArray:
      ReadArray(p, v, field, 1);
      break;
    default:
      v.int_value = ReadIntegerScalar(p, v.type, field + " value");
      break;
  }
  return v;
}

}  // namespace

const char* GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "uint8";
    case GgufValueType::kInt8:
      return "int8";
    case GgufValueType::kUint16:
      return "uint16";
    case GgufValueType::kInt16:
      return "int16";
    case GgufValueType::kUint32:
      return "uint32";
    case GgufValueType::kInt32:
      return "int32";
    case GgufValueType::kFloat32:
      return "float32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "uint64";
    case GgufValueType::kInt64:
      return "int64";
    case GgufValueType::kFloat64:
      return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const { return IsIntegerType(type); }
bool GgufValue::is_float() const { return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64; }

const GgufValue* GgufFile::Find(std::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  for (const GgufTensorInfo& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

TensorView GgufFile::View(const GgufTensorInfo& info) const {
  // The parser checked that every tensor lies inside the file; a foreign info is a programming error.
  MIXQ_CHECK(data_offset + info.offset + info.bytes <= bytes.size());
  return TensorView{info.name, info.dtype, info.shape, bytes.data() + data_offset + info.offset, info.bytes,
                    info.group};
}

std::optional<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer() || v->type == GgufValueType::kBool) {
    Fail("'{}': key '{}' has type {}, expected an integer", path, key, GgufValueTypeName(v->type));
  }
  return v->int_value;
}

std::optional<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_float()) return v->float_value;
  if (v->is_integer() && v->type != GgufValueType::kBool) return static_cast<double>(v->int_value);
  Fail("'{}': key '{}' has type {}, expected a number", path, key, GgufValueTypeName(v->type));
}

std::optional<std::string> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kString) {
    Fail("'{}': key '{}' has type {}, expected a string", path, key, GgufValueTypeName(v->type));
  }
  return v->string_value;
}

std::optional<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufValueType::kBool) {
    Fail("'{}': key '{}' has type {}, expected a bool", path, key, GgufValueTypeName(v->type));
  }
  return v->int_value != 0;
}

GgufFile ParseGguf(std::span<const std::byte> bytes, const std::string& name) {
  GgufFile file;
  file.path = name;
  file.bytes = bytes;
  Parser p(bytes, file.path);

  p.Need(4, "the magic \"GGUF\"");
  if (std::memcmp(bytes.data(), kMagic, 4) != 0) {
    std::string shown;
    for (size_t i = 0; i < 4; ++i) {
      const auto c = static_cast<unsigned char>(bytes[i]);
      shown += (c >= 32 && c < 127) ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
    }
    Fail("'{}' is not a GGUF file: magic is \"{}\", expected \"GGUF\"", name, shown);
  }
  p.Read<uint32_t>("magic");
  file.version = p.Read<uint32_t>("version");
  if (file.version != 2 && file.version != 3) {
    Fail("'{}': GGUF version {} is not supported (mixq reads versions 2 and 3)", name, file.version);
  }
  const uint64_t tensor_count = p.Read<uint64_t>("tensor_count");
  const uint64_t kv_count = p.Read<uint64_t>("kv_count");
  if (kv_count > p.remaining() / kMinKvBytes) {
    Fail("'{}': kv_count {} cannot fit in the {} bytes after the header (each pair needs at least {} bytes)",
         name, kv_count, p.remaining(), kMinKvBytes);
  }
  if (tensor_count > p.remaining() / kMinTensorInfoBytes) {
    Fail("'{}': tensor_count {} cannot fit in the {} bytes after the header (each tensor info needs at least "
         "{} bytes)", name, tensor_count, p.remaining(), kMinTensorInfoBytes);
  }

  std::unordered_set<std::string> keys;
  file.metadata.reserve(static_cast<size_t>(kv_count));
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key = p.ReadString(fmt::format("key {} name", i));
    if (!keys.insert(key).second) Fail("'{}': key '{}' appears twice (pair {})", name, key, i);
    GgufValue value = ReadValue(p, key);
    file.metadata.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = file.Find("general.alignment")) {
    if (!a->is_integer() || a->type == GgufValueType::kBool) {
      Fail("'{}': key 'general.alignment' has type {}, expected uint32", name, GgufValueTypeName(a->type));
    }
    const int64_t alignment = a->int_value;
    if (alignment <= 0 || (alignment & (alignment - 1)) != 0 || alignment > (int64_t{1} << 30)) {
      Fail("'{}': key 'general.alignment' is {}, expected a power of two between 1 and 2^30", name, alignment);
    }
    file.alignment = static_cast<uint64_t>(alignment);
  }

  std::unordered_set<std::string> names;
  file.tensors.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    info.name = p.ReadString(fmt::format("tensor {} name", i));
    const std::string field = fmt::format("tensor '{}' (tensor {})", info.name, i);
    if (!names.insert(info.name).second) Fail("'{}': {} has the same name as an earlier tensor", name, field);
    const uint32_t n_dims = p.Read<uint32_t>(field + " n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) {
      Fail("'{}': {} has n_dims {}, expected 1..{}", name, field, n_dims, kMaxDims);
    }
    std::vector<int64_t> ne(n_dims);
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = p.Read<uint64_t>(fmt::format("{} ne[{}]", field, d));
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Fail("'{}': {} has ne[{}] = {}, expected 1..2^63-1", name, field, d, dim);
      }
      ne[d] = static_cast<int64_t>(dim);
      if (elements > std::numeric_limits<int64_t>::max() / ne[d]) {
        Fail("'{}': {} has dimensions whose product overflows 64 bits (ne[{}] = {})", name, field, d, dim);
      }
      elements *= ne[d];
    }
    const uint32_t type_id = p.Read<uint32_t>(field + " type");
    const std::optional<DType> dtype = DTypeFromGgmlId(type_id);
    if (!dtype) Fail("'{}': {} has ggml type id {}, which no ggml type has", name, field, type_id);
    info.dtype = *dtype;
    const DTypeTraits& traits = Traits(info.dtype);
    if (ne[0] % traits.block_size != 0) {
      Fail("'{}': {} has rows of {} elements, not a whole number of {} blocks ({} elements each)", name, field,
           ne[0], traits.name, traits.block_size);
    }
    if (IsIntFormat(info.dtype)) {
      const std::string key = GgufGroupKey(info.name);
      const std::optional<int64_t> group = file.GetInt(key);
      if (!group || *group < 0 || *group > std::numeric_limits<uint32_t>::max()) {
        Fail("'{}': {} is mixq type {} but its group size key '{}' is {}", name, field, traits.name, key,
             group ? fmt::format("{}, expected 0..2^32-1", *group) : std::string("missing or not an integer"));
      }
      info.group = *group;
    }
    Shape row_major(ne.rbegin(), ne.rend());
    const std::optional<size_t> tensor_bytes = TensorBytes(info.dtype, row_major, info.group);
    if (!tensor_bytes || *tensor_bytes > bytes.size()) {
      Fail("'{}': {} ({} elements of {}) is larger than the whole file ({} bytes)", name, field, elements,
           traits.name, bytes.size());
    }
    info.bytes = *tensor_bytes;
    info.offset = p.Read<uint64_t>(field + " offset");
    if (info.offset % file.alignment != 0) {
      Fail("'{}': {} has offset {}, not a multiple of the alignment {}", name, field, info.offset, file.alignment);
    }
    info.shape = std::move(row_major);
    file.tensors.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment after the tensor infos.
  const uint64_t header_end = p.pos();
  const uint64_t data_offset = (header_end + file.alignment - 1) / file.alignment * file.alignment;
  file.data_offset = data_offset;
  if (!file.tensors.empty() && data_offset > bytes.size()) {
    Fail("'{}' is truncated: the data section starts at byte {} (header end {} padded to alignment {}), but the "
         "file has {} bytes", name, data_offset, header_end, file.alignment, bytes.size());
  }
  const uint64_t data_bytes = file.tensors.empty() ? 0 : bytes.size() - data_offset;
  for (const GgufTensorInfo& t : file.tensors) {
    if (t.offset > data_bytes || t.bytes > data_bytes - t.offset) {
      Fail("'{}': tensor '{}' occupies data bytes {}..{}, past the end of the data section ({} bytes; file "
           "truncated?)", name, t.name, t.offset, t.offset + t.bytes, data_bytes);
    }
  }
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : file.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& cur = *by_offset[i];
    if (prev.offset + prev.bytes > cur.offset) {
      Fail("'{}': tensors '{}' (data bytes {}..{}) and '{}' (from byte {}) overlap", name, prev.name, prev.offset,
           prev.offset + prev.bytes, cur.name, cur.offset);
    }
  }
  return file;
}

GgufFile ReadGguf(const std::string& path) {
  auto mapping = std::make_shared<const MappedFile>(path);
  GgufFile file = ParseGguf(mapping->bytes(), path);
  file.mapping = std::move(mapping);
  return file;
}

// ---------------------------------------------------------------------------------------------------
// Writer

namespace {

void AppendBytes(std::vector<std::byte>& out, const void* data, size_t n) {
  const size_t old = out.size();
  out.resize(old + n);
  if (n > 0) std::memcpy(out.data() + old, data, n);
}

template <typename T>
void Append(std::vector<std::byte>& out, const T& value) {
  AppendBytes(out, &value, sizeof(T));
}

void AppendString(std::vector<std::byte>& out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  AppendBytes(out, s.data(), s.size());
}

template <typename T>
std::vector<std::byte> Encode(const T& value) {
  std::vector<std::byte> out;
  Append(out, value);
  return out;
}

template <typename T>
std::vector<std::byte> EncodeArray(GgufValueType elem, const std::vector<T>& values) {
  std::vector<std::byte> out;
  Append<uint32_t>(out, static_cast<uint32_t>(elem));
  Append<uint64_t>(out, values.size());
  for (const T& v : values) Append(out, v);
  return out;
}

}  // namespace

void GgufWriter::AddEntry(std::string key, GgufValueType type, GgufValueType array_type,
                          std::vector<std::byte> encoded) {
  // Setting a key twice keeps its first position and the last value, so callers may override defaults.
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.type = type;
      e.array_type = array_type;
      e.encoded = std::move(encoded);
      return;
    }
  }
  entries_.push_back(Entry{std::move(key), type, array_type, std::move(encoded)});
}

void GgufWriter::SetString(std::string key, std::string value) {
  std::vector<std::byte> out;
  AppendString(out, value);
  AddEntry(std::move(key), GgufValueType::kString, GgufValueType::kUint8, std::move(out));
}
void GgufWriter::SetUint32(std::string key, uint32_t value) {
  AddEntry(std::move(key), GgufValueType::kUint32, GgufValueType::kUint8, Encode(value));
}
void GgufWriter::SetInt32(std::string key, int32_t value) {
  AddEntry(std::move(key), GgufValueType::kInt32, GgufValueType::kUint8, Encode(value));
}
void GgufWriter::SetUint64(std::string key, uint64_t value) {
  AddEntry(std::move(key), GgufValueType::kUint64, GgufValueType::kUint8, Encode(value));
}
void GgufWriter::SetFloat32(std::string key, float value) {
  AddEntry(std::move(key), GgufValueType::kFloat32, GgufValueType::kUint8, Encode(value));
}
void GgufWriter::SetBool(std::string key, bool value) {
  AddEntry(std::move(key), GgufValueType::kBool, GgufValueType::kUint8, Encode<uint8_t>(value ? 1 : 0));
}
void GgufWriter::SetStringArray(std::string key, std::vector<std::string> values) {
  std::vector<std::byte> out;
  Append<uint32_t>(out, static_cast<uint32_t>(GgufValueType::kString));
  Append<uint64_t>(out, values.size());
  for (const std::string& v : values) AppendString(out, v);
  AddEntry(std::move(key), GgufValueType::kArray, GgufValueType::kString, std::move(out));
}
void GgufWriter::SetFloat32Array(std::string key, std::vector<float> values) {
  AddEntry(std::move(key), GgufValueType::kArray, GgufValueType::kFloat32,
           EncodeArray(GgufValueType::kFloat32, values));
}
void GgufWriter::SetInt32Array(std::string key, std::vector<int32_t> values) {
  AddEntry(std::move(key), GgufValueType::kArray, GgufValueType::kInt32, EncodeArray(GgufValueType::kInt32, values));
}

std::string GgufGroupKey(std::string_view tensor_name) { return fmt::format("mixq.group.{}", tensor_name); }

std::string GgufActivationKey(std::string_view tensor_name) { return fmt::format("mixq.activation.{}", tensor_name); }

std::string GgufActivationScaleKey(std::string_view tensor_name) {
  return fmt::format("mixq.activation_scale.{}", tensor_name);
}

bool IsGgufActivationKey(std::string_view key) {
  return key.starts_with("mixq.activation.") || key.starts_with("mixq.activation_scale.");
}

void GgufWriter::AddTensor(std::string name, DType dtype, Shape shape, const void* data, size_t bytes,
                           int64_t group) {
  if (name.empty() || name.size() > kMaxTensorNameBytes) {
    Fail("GGUF tensor name '{}' has {} bytes; llama.cpp accepts 1..{}", name, name.size(), kMaxTensorNameBytes);
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) Fail("GGUF tensor '{}' added twice", name);
  }
  if (shape.empty() || shape.size() > kMaxDims) {
    Fail("GGUF tensor '{}' has shape {}: GGUF holds 1..{} dimensions", name, ShapeString(shape), kMaxDims);
  }
  for (int64_t d : shape) {
    if (d <= 0) Fail("GGUF tensor '{}' has shape {}: every dimension must be positive", name, ShapeString(shape));
  }
  const DTypeTraits& traits = Traits(dtype);
  if (shape.back() % traits.block_size != 0) {
    Fail("GGUF tensor '{}' {} has rows of {} elements, not whole {} blocks of {}", name, ShapeString(shape),
         shape.back(), traits.name, traits.block_size);
  }
  if (group < 0 || group > std::numeric_limits<uint32_t>::max() || (group != 0 && !IsIntFormat(dtype))) {
    Fail("GGUF tensor '{}' {} is given group size {}: only mixq INT types have one (0..2^32-1)", name,
         traits.name, group);
  }
  const std::optional<size_t> expected = TensorBytes(dtype, shape, group);
  if (!expected || *expected != bytes) {
    Fail("GGUF tensor '{}' {} {} is given {} bytes, expected {}", name, traits.name, ShapeString(shape), bytes,
         expected.value_or(0));
  }
  tensors_.push_back(PendingTensor{std::move(name), dtype, std::move(shape), data, bytes, nullptr, group});
}

void GgufWriter::AddTensor(std::string name, DType dtype, Shape shape, size_t bytes, TensorProducer produce,
                           int64_t group) {
  MIXQ_CHECK(produce != nullptr);
  AddTensor(std::move(name), dtype, std::move(shape), nullptr, bytes, group);
  tensors_.back().produce = std::move(produce);
}

void GgufWriter::Write(const std::string& path, uint64_t alignment) const {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (uint64_t{1} << 30)) {
    Fail("cannot write '{}': alignment {} is not a power of two up to 2^30", path, alignment);
  }
  std::vector<Entry> entries = entries_;
  // A reader only knows a non-default alignment from the key, so it must match what we use.
  const auto align_it = std::find_if(entries.begin(), entries.end(),
                                     [](const Entry& e) { return e.key == "general.alignment"; });
  if (align_it != entries.end()) entries.erase(align_it);
  if (alignment != kDefaultAlignment) {
    entries.push_back(Entry{"general.alignment", GgufValueType::kUint32, GgufValueType::kUint8,
                            Encode(static_cast<uint32_t>(alignment))});
  }
  // Group sizes of mixq INT tensors, which a reader needs before it can size their data.
  for (const PendingTensor& t : tensors_) {
    if (!IsIntFormat(t.dtype)) continue;
    const std::string key = GgufGroupKey(t.name);
    const auto stale = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.key == key; });
    if (stale != entries.end()) entries.erase(stale);
    entries.push_back(Entry{key, GgufValueType::kUint32, GgufValueType::kUint8, Encode(static_cast<uint32_t>(t.group))});
  }

  std::vector<std::byte> header;
  AppendBytes(header, kMagic, 4);
  Append<uint32_t>(header, 3);
  Append<uint64_t>(header, tensors_.size());
  Append<uint64_t>(header, entries.size());
  for (const Entry& e : entries) {
    AppendString(header, e.key);
    Append<uint32_t>(header, static_cast<uint32_t>(e.type));
    AppendBytes(header, e.encoded.data(), e.encoded.size());
  }
  auto padded = [&](uint64_t n) { return (n + alignment - 1) / alignment * alignment; };
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    AppendString(header, t.name);
    Append<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) Append<uint64_t>(header, static_cast<uint64_t>(*it));
    Append<uint32_t>(header, static_cast<uint32_t>(t.dtype));
    Append<uint64_t>(header, offset);
    offsets.push_back(offset);
    offset = padded(offset + t.bytes);
  }

  AtomicFile out(path);
  out.Write(header.data(), header.size());
  out.WriteZeros(padded(header.size()) - header.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    if (t.produce) {
      AlignedBuffer buffer(t.bytes);
      t.produce(buffer.data());
      out.Write(buffer.data(), t.bytes);
    } else {
      out.Write(t.data, t.bytes);
    }
    // Every tensor is padded, the last included, as gguf-py and ggml write it.
    out.WriteZeros(padded(t.bytes) - t.bytes);
  }
  out.Commit();
}

}  // namespace mixq
