// GGUF reader and writer: round trips, every malformed field refused with an error naming file and field,
// and the real llama.cpp-written files in ../shared/data.
#include "mixq/io/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "mixq/base/error.h"

namespace mixq {
namespace {

const std::string kShared = std::string(MIXQ_SOURCE_DIR) + "/../shared";

// Assembles raw GGUF bytes field by field, so tests can write what no correct writer would.
class Bytes {
 public:
  Bytes& Raw(const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    data.insert(data.end(), b, b + n);
    return *this;
  }
  template <typename T>
  Bytes& Put(T v) { return Raw(&v, sizeof v); }
  Bytes& U32(uint32_t v) { return Put(v); }
  Bytes& U64(uint64_t v) { return Put(v); }
  Bytes& Str(std::string_view s) {
    U64(s.size());
    return Raw(s.data(), s.size());
  }
  Bytes& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    Raw("GGUF", 4);
    U32(version);
    U64(n_tensors);
    return U64(n_kv);
  }
  // A key with a uint32 value.
  Bytes& KvU32(std::string_view key, uint32_t v) {
    Str(key);
    U32(static_cast<uint32_t>(GgufValueType::kUint32));
    return U32(v);
  }
  Bytes& Tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    Str(name);
    U32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) U64(d);
    U32(type);
    return U64(offset);
  }
  Bytes& PadTo(size_t alignment) {
    while (data.size() % alignment != 0) data.push_back(std::byte{0});
    return *this;
  }
  Bytes& Zeros(size_t n) {
    data.insert(data.end(), n, std::byte{0});
    return *this;
  }
  std::vector<std::byte> data;
};

constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ4_0 = 2;

// Parses bytes that must be refused: the message must name the file and contain each of `fragments`.
void ExpectRefused(const std::vector<std::byte>& bytes, std::vector<std::string> fragments) {
  // A copy in a buffer of exactly the file's size, so any read past the end is a real overrun.
  std::vector<std::byte> exact(bytes);
  try {
    ParseGguf(exact, "bad.gguf");
    ADD_FAILURE() << "parsed without error; expected one mentioning " << fragments.front();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("bad.gguf"), std::string::npos) << message;
    for (const std::string& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << "'" << f << "' not in: " << message;
  }
}

std::vector<std::byte> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

// A small valid file from the writer: every writer value type and a few tensor types. The last tensor's
// bytes are a multiple of 32 so the file ends exactly at its data (every strict prefix is then invalid).
struct SmallFile {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, -7.0f};  // [2, 3] F32
  std::vector<uint16_t> h = {0x3c00, 0xc000, 0x7bff, 0x0001};        // [4] F16
  std::vector<uint8_t> q = std::vector<uint8_t>(36, 0x5a);           // [2, 32] Q4_0: 2 blocks of 18 bytes
  std::vector<float> last = std::vector<float>(16, 0.25f);           // [16] F32: 64 bytes

  void Write(const std::string& path, uint64_t alignment = 32) const {
    GgufWriter w;
    w.SetString("general.architecture", "llama");
    w.SetString("general.name", "tiny \xe2\x96\x81 test");
    w.SetUint32("llama.block_count", 7);
    w.SetInt32("test.negative", -123456);
    w.SetUint64("test.big", uint64_t{1} << 40);
    w.SetFloat32("test.eps", 1e-5f);
    w.SetBool("test.yes", true);
    w.SetBool("test.no", false);
    w.SetStringArray("test.strings", {"a", "", "\xe2\x96\x81hello", std::string("nul\0byte", 8)});
    w.SetFloat32Array("test.floats", {0.5f, -1.0f, 3.0e38f});
    w.SetInt32Array("test.ints", {-1, 0, 2147483647});
    w.SetStringArray("test.empty", {});
    w.AddTensor("a", DType::kF32, {2, 3}, a.data(), a.size() * 4);
    w.AddTensor("h", DType::kF16, {4}, h.data(), h.size() * 2);
    w.AddTensor("q", DType::kQ4_0, {2, 32}, q.data(), q.size());
    w.AddTensor("last", DType::kF32, {16}, last.data(), last.size() * 4);
    w.Write(path, alignment);
  }
};

TEST(GgufTest, WriterReaderRoundTripsEveryValueAndTensor) {
  for (uint64_t alignment : {32, 64, 8}) {
    SCOPED_TRACE(alignment);
    const std::string path = ::testing::TempDir() + "/roundtrip.gguf";
    SmallFile src;
    src.Write(path, alignment);
    const GgufFile f = ReadGguf(path);
    EXPECT_EQ(f.version, 3u);
    EXPECT_EQ(f.alignment, alignment);
    EXPECT_EQ(f.data_offset % alignment, 0u);
    EXPECT_EQ(f.GetString("general.architecture"), "llama");
    EXPECT_EQ(f.GetString("general.name"), "tiny \xe2\x96\x81 test");
    EXPECT_EQ(f.GetInt("llama.block_count"), 7);
    EXPECT_EQ(f.Find("llama.block_count")->type, GgufValueType::kUint32);
    EXPECT_EQ(f.GetInt("test.negative"), -123456);
    EXPECT_EQ(f.Find("test.negative")->type, GgufValueType::kInt32);
    EXPECT_EQ(f.GetInt("test.big"), int64_t{1} << 40);
    EXPECT_EQ(f.Find("test.big")->type, GgufValueType::kUint64);
    EXPECT_EQ(f.GetFloat("test.eps"), static_cast<double>(1e-5f));
    EXPECT_EQ(f.GetFloat("llama.block_count"), 7.0);  // integers read as numbers too
    EXPECT_EQ(f.GetBool("test.yes"), true);
    EXPECT_EQ(f.GetBool("test.no"), false);
    EXPECT_EQ(f.GetInt("absent"), std::nullopt);
    const GgufValue* strings = f.Find("test.strings");
    ASSERT_NE(strings, nullptr);
    EXPECT_EQ(strings->type, GgufValueType::kArray);
    EXPECT_EQ(strings->array_type, GgufValueType::kString);
    EXPECT_EQ(strings->strings, (std::vector<std::string>{"a", "", "\xe2\x96\x81hello", std::string("nul\0byte", 8)}));
    EXPECT_EQ(f.Find("test.floats")->floats, (std::vector<double>{0.5, -1.0, static_cast<double>(3.0e38f)}));
    EXPECT_EQ(f.Find("test.ints")->ints, (std::vector<int64_t>{-1, 0, 2147483647}));
    EXPECT_EQ(f.Find("test.ints")->array_type, GgufValueType::kInt32);
    EXPECT_TRUE(f.Find("test.empty")->strings.empty());
    // Typed getters refuse the wrong type, naming the file and key.
    try {
      f.GetInt("general.name");
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("general.name"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    }
    EXPECT_THROW(f.GetString("llama.block_count"), Error);
    EXPECT_THROW(f.GetBool("llama.block_count"), Error);

    ASSERT_EQ(f.tensors.size(), 4u);
    const TensorView a = f.View(*f.FindTensor("a"));
    EXPECT_EQ(a.shape, (Shape{2, 3}));
    EXPECT_EQ(a.dtype, DType::kF32);
    ASSERT_EQ(a.bytes, 24u);
    EXPECT_EQ(std::memcmp(a.data, src.a.data(), 24), 0);
    const TensorView h = f.View(*f.FindTensor("h"));
    EXPECT_EQ(h.dtype, DType::kF16);
    EXPECT_EQ(std::memcmp(h.data, src.h.data(), 8), 0);
    const TensorView q = f.View(*f.FindTensor("q"));
    EXPECT_EQ(q.dtype, DType::kQ4_0);
    EXPECT_EQ(q.shape, (Shape{2, 32}));
    EXPECT_EQ(q.bytes, 36u);
    EXPECT_EQ(std::memcmp(q.data, src.q.data(), 36), 0);
    for (const GgufTensorInfo& t : f.tensors) EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    EXPECT_EQ(f.FindTensor("missing"), nullptr);
  }
}

TEST(GgufTest, WriterReplacesAFileAtomicallyAndLeavesNoTemporaries) {
  const std::string dir = ::testing::TempDir() + "/atomic_dir";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/m.gguf";
  SmallFile().Write(path);
  const GgufFile before = ReadGguf(path);  // keeps the old file mapped while it is replaced
  GgufWriter w;
  w.SetString("general.name", "second");
  w.Write(path);
  EXPECT_EQ(ReadGguf(path).GetString("general.name"), "second");
  EXPECT_EQ(before.GetString("general.name"), "tiny \xe2\x96\x81 test");
  EXPECT_EQ(std::memcmp(before.View(*before.FindTensor("a")).data, SmallFile().a.data(), 24), 0);
  // A failed write (a tensor whose bytes do not match) throws before anything is written.
  GgufWriter bad;
  std::vector<float> v(3);
  EXPECT_THROW(bad.AddTensor("x", DType::kF32, {4}, v.data(), 12), Error);
  EXPECT_THROW(bad.AddTensor("y", DType::kQ4_0, {2, 33}, v.data(), 12), Error);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "m.gguf");
  }
  EXPECT_EQ(entries, 1);
  // Writing into a folder that does not exist fails with an error naming the file.
  GgufWriter w2;
  try {
    w2.Write(dir + "/no/such/dir/x.gguf");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.gguf"), std::string::npos) << e.what();
  }
}

TEST(GgufTest, ReadsEveryValueTypeIncludingNestedArrays) {
  Bytes b;
  b.Header(3, 0, 14);
  auto key = [&](std::string_view k, GgufValueType t) { b.Str(k).U32(static_cast<uint32_t>(t)); };
  key("u8", GgufValueType::kUint8);
  b.Put<uint8_t>(200);
  key("i8", GgufValueType::kInt8);
  b.Put<int8_t>(-100);
  key("u16", GgufValueType::kUint16);
  b.Put<uint16_t>(60000);
  key("i16", GgufValueType::kInt16);
  b.Put<int16_t>(-30000);
  key("u32", GgufValueType::kUint32);
  b.Put<uint32_t>(4000000000u);
  key("i32", GgufValueType::kInt32);
  b.Put<int32_t>(-2000000000);
  key("f32", GgufValueType::kFloat32);
  b.Put<float>(0.125f);
  key("bool", GgufValueType::kBool);
  b.Put<uint8_t>(1);
  key("str", GgufValueType::kString);
  b.Str("hello");
  key("u64", GgufValueType::kUint64);
  b.Put<uint64_t>(uint64_t{1} << 62);
  key("i64", GgufValueType::kInt64);
  b.Put<int64_t>(-(int64_t{1} << 62));
  key("f64", GgufValueType::kFloat64);
  b.Put<double>(-2.5e-300);
  key("u16s", GgufValueType::kArray);
  b.U32(static_cast<uint32_t>(GgufValueType::kUint16)).U64(2).Put<uint16_t>(1).Put<uint16_t>(65535);
  key("nested", GgufValueType::kArray);  // [[1, 2], []] of uint8
  b.U32(static_cast<uint32_t>(GgufValueType::kArray)).U64(2);
  b.U32(static_cast<uint32_t>(GgufValueType::kUint8)).U64(2).Put<uint8_t>(1).Put<uint8_t>(2);
  b.U32(static_cast<uint32_t>(GgufValueType::kUint8)).U64(0);
  const GgufFile f = ParseGguf(b.data, "types.gguf");
  EXPECT_EQ(f.GetInt("u8"), 200);
  EXPECT_EQ(f.GetInt("i8"), -100);
  EXPECT_EQ(f.GetInt("u16"), 60000);
  EXPECT_EQ(f.GetInt("i16"), -30000);
  EXPECT_EQ(f.GetInt("u32"), 4000000000LL);
  EXPECT_EQ(f.GetInt("i32"), -2000000000);
  EXPECT_EQ(f.GetFloat("f32"), 0.125);
  EXPECT_EQ(f.GetBool("bool"), true);
  EXPECT_EQ(f.GetString("str"), "hello");
  EXPECT_EQ(f.GetInt("u64"), int64_t{1} << 62);
  EXPECT_EQ(f.GetInt("i64"), -(int64_t{1} << 62));
  EXPECT_EQ(f.GetFloat("f64"), -2.5e-300);
  EXPECT_EQ(f.Find("u16s")->ints, (std::vector<int64_t>{1, 65535}));
  EXPECT_EQ(f.Find("nested")->array_type, GgufValueType::kArray);
  EXPECT_TRUE(f.Find("nested")->ints.empty());
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_EQ(f.metadata.size(), 14u);
  EXPECT_EQ(f.metadata[0].first, "u8");  // file order kept
}

TEST(GgufTest, AcceptsVersion2) {
  Bytes b;
  b.Header(2, 0, 1).KvU32("k", 5);
  EXPECT_EQ(ParseGguf(b.data, "v2.gguf").GetInt("k"), 5);
}

TEST(GgufTest, RefusesWrongMagicAndVersions) {
  Bytes b;
  b.Raw("GGML", 4).U32(3).U64(0).U64(0);
  ExpectRefused(b.data, {"magic", "GGML"});
  for (uint32_t version : {0u, 1u, 4u, 99u}) {
    Bytes v;
    v.Header(version, 0, 0);
    ExpectRefused(v.data, {"version", std::to_string(version)});
  }
  ExpectRefused({}, {"truncated", "magic"});
}

TEST(GgufTest, RefusesEveryTruncation) {
  const std::string path = ::testing::TempDir() + "/small.gguf";
  SmallFile().Write(path);
  const std::vector<std::byte> whole = ReadAll(path);
  ASSERT_GT(whole.size(), 200u);
  ASSERT_NO_THROW(ParseGguf(whole, "bad.gguf"));
  for (size_t n = 0; n < whole.size(); ++n) {
    SCOPED_TRACE(n);
    std::vector<std::byte> prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      ParseGguf(prefix, "bad.gguf");
      ADD_FAILURE() << "a " << n << "-byte prefix of a " << whole.size() << "-byte file parsed";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("bad.gguf"), std::string::npos) << message;
      // Either the reader ran out of bytes, or a length read intact points past the shortened end.
      const bool says_where = message.find("truncated") != std::string::npos ||
                              message.find("past the end") != std::string::npos ||
                              message.find("cannot fit") != std::string::npos ||
                              message.find("more than the") != std::string::npos;
      EXPECT_TRUE(says_where) << message;
    }
  }
}

TEST(GgufTest, RefusesHugeCounts) {
  Bytes kv;
  kv.Header(3, 0, uint64_t{1} << 60).KvU32("k", 1);
  ExpectRefused(kv.data, {"kv_count", "1152921504606846976"});
  Bytes tc;
  tc.Header(3, std::numeric_limits<uint64_t>::max(), 0);
  ExpectRefused(tc.data, {"tensor_count"});
  Bytes arr;
  arr.Header(3, 0, 1).Str("tokens").U32(static_cast<uint32_t>(GgufValueType::kArray));
  arr.U32(static_cast<uint32_t>(GgufValueType::kString)).U64(uint64_t{1} << 40);
  ExpectRefused(arr.data, {"key 'tokens'", "1099511627776 elements"});
}

TEST(GgufTest, RefusesStringLengthPastTheEnd) {
  Bytes key;
  key.Header(3, 0, 1).U64(1000).Raw("abc", 3).Zeros(20);
  ExpectRefused(key.data, {"key 0 name", "length 1000"});
  Bytes value;
  value.Header(3, 0, 1).Str("general.name").U32(static_cast<uint32_t>(GgufValueType::kString)).U64(uint64_t{1} << 63);
  ExpectRefused(value.data, {"key 'general.name' value", "past the end"});
  Bytes name;
  name.Header(3, 1, 0).U64(77).Raw("t", 1).Zeros(40);
  ExpectRefused(name.data, {"tensor 0 name"});
}

TEST(GgufTest, RefusesUnknownValueTypes) {
  Bytes b;
  b.Header(3, 0, 1).Str("weird").U32(13).U32(0);
  ExpectRefused(b.data, {"key 'weird' value type", "13"});
  Bytes arr;
  arr.Header(3, 0, 1).Str("weird_array").U32(9).U32(77).U64(0);
  ExpectRefused(arr.data, {"key 'weird_array' element type", "77"});
  Bytes boolean;
  boolean.Header(3, 0, 1).Str("flag").U32(7).Put<uint8_t>(2);
  ExpectRefused(boolean.data, {"key 'flag'", "bool"});
  Bytes big;
  big.Header(3, 0, 1).Str("huge").U32(10).U64(~uint64_t{0});
  ExpectRefused(big.data, {"key 'huge'", "uint64"});
  Bytes dup;
  dup.Header(3, 0, 2).KvU32("same", 1).KvU32("same", 2);
  ExpectRefused(dup.data, {"key 'same'", "twice"});
  // Arrays nested beyond any real use are refused instead of recursing without bound.
  Bytes deep;
  deep.Header(3, 0, 1).Str("deep").U32(9);
  for (int i = 0; i < 100; ++i) deep.U32(9).U64(1);
  deep.U32(0).U64(0);
  ExpectRefused(deep.data, {"key 'deep'", "deep"});
}

// A valid file with one F32 tensor "t" whose info is written by `info`, then 64 bytes of data.
std::vector<std::byte> OneTensor(const std::function<void(Bytes&)>& info, size_t data_bytes = 64) {
  Bytes b;
  b.Header(3, 1, 0);
  info(b);
  b.PadTo(32).Zeros(data_bytes);
  return b.data;
}

TEST(GgufTest, RefusesBadTensorInfos) {
  // Sanity: the same construction with sane values parses.
  EXPECT_NO_THROW(ParseGguf(OneTensor([](Bytes& b) { b.Tensor("t", {4, 4}, kF32, 0); }), "ok.gguf"));
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {4, 4}, kF32, 32); }), {"tensor 't'", "past the end"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {4, 4}, kF32, uint64_t{1} << 62); }), {"tensor 't'"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {4, 4}, kF32, 8); }), {"tensor 't'", "offset 8", "alignment"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {4, 4}, 4, 0); }), {"tensor 't'", "type id 4"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {4, 4}, 1000, 0); }), {"tensor 't'", "type id 1000"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {1, 1, 1, 1, 1}, kF32, 0); }), {"tensor 't'", "n_dims 5"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {}, kF32, 0); }), {"tensor 't'", "n_dims 0"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {4, 0}, kF32, 0); }), {"tensor 't'", "ne[1] = 0"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {uint64_t{1} << 32, uint64_t{1} << 32}, kF32, 0); }),
                {"tensor 't'", "overflows"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {uint64_t{1} << 63, 1}, kF32, 0); }), {"tensor 't'", "ne[0]"});
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {uint64_t{1} << 40, 1 << 20}, kF32, 0); }),
                {"tensor 't'", "larger than the whole file"});
  // 33 elements per row is not whole Q4_0 blocks of 32.
  ExpectRefused(OneTensor([](Bytes& b) { b.Tensor("t", {33, 1}, kQ4_0, 0); }), {"tensor 't'", "Q4_0", "33"});
}

TEST(GgufTest, RefusesOverlappingAndDuplicateTensors) {
  Bytes b;
  b.Header(3, 2, 0).Tensor("first", {8}, kF32, 0).Tensor("second", {8}, kF32, 0).PadTo(32).Zeros(64);
  ExpectRefused(b.data, {"'first'", "'second'", "overlap"});
  Bytes partial;  // 16 floats = 64 bytes from 0; the second starts inside them at 32
  partial.Header(3, 2, 0).Tensor("first", {16}, kF32, 0).Tensor("second", {8}, kF32, 32).PadTo(32).Zeros(96);
  ExpectRefused(partial.data, {"overlap"});
  Bytes dup;
  dup.Header(3, 2, 0).Tensor("same", {8}, kF32, 0).Tensor("same", {8}, kF32, 32).PadTo(32).Zeros(64);
  ExpectRefused(dup.data, {"tensor 'same'", "same name"});
}

TEST(GgufTest, RefusesBadAlignment) {
  for (uint32_t alignment : {0u, 3u, 48u, 0x80000000u}) {
    SCOPED_TRACE(alignment);
    Bytes b;
    b.Header(3, 0, 1).KvU32("general.alignment", alignment);
    ExpectRefused(b.data, {"general.alignment", std::to_string(alignment)});
  }
  Bytes typed;
  typed.Header(3, 0, 1).Str("general.alignment").U32(8).Str("32");
  ExpectRefused(typed.data, {"general.alignment", "string"});
  // A valid non-default alignment moves the data section.
  Bytes ok;
  ok.Header(3, 1, 1).KvU32("general.alignment", 256).Tensor("t", {4}, kF32, 0).PadTo(256).Zeros(16);
  const GgufFile f = ParseGguf(ok.data, "ok.gguf");
  EXPECT_EQ(f.alignment, 256u);
  EXPECT_EQ(f.data_offset, 256u);
}

TEST(GgufTest, ReadsLlamaCppReferenceFiles) {
  const std::string dir = kShared + "/data/ggml-reference";
  std::ifstream manifest_in(dir + "/manifest.json");
  ASSERT_TRUE(manifest_in) << "missing " << dir << "/manifest.json";
  const nlohmann::json manifest = nlohmann::json::parse(manifest_in);
  ASSERT_GE(manifest.size(), 12u);
  for (const auto& [type, entry] : manifest.items()) {
    SCOPED_TRACE(type);
    const GgufFile f = ReadGguf(dir + "/" + entry["file"].get<std::string>());
    EXPECT_EQ(f.GetString("general.architecture"), "llama");
    EXPECT_EQ(f.GetInt("llama.block_count"), 2);
    EXPECT_EQ(f.GetInt("llama.embedding_length"), 256);
    EXPECT_EQ(f.GetInt("llama.attention.head_count_kv"), 2);
    EXPECT_GT(f.Find("tokenizer.ggml.tokens")->strings.size(), 0u);
    ASSERT_EQ(f.tensors.size(), entry["tensors"].size());
    for (const auto& [name, t] : entry["tensors"].items()) {
      const GgufTensorInfo* info = f.FindTensor(name);
      ASSERT_NE(info, nullptr) << name;
      EXPECT_EQ(DTypeName(info->dtype), t["type"].get<std::string>()) << name;
      Shape ne(info->shape.rbegin(), info->shape.rend());
      EXPECT_EQ(ne, t["ne"].get<std::vector<int64_t>>()) << name;
      EXPECT_EQ(f.View(*info).bytes, info->bytes);
    }
  }
  const GgufFile f32 = ReadGguf(dir + "/synth-f32.gguf");
  const GgufTensorInfo* q = f32.FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kF32);
  EXPECT_EQ(q->shape, (Shape{256, 256}));
}

TEST(GgufTest, ReadsLlamaCppVocabularyFiles) {
  for (const char* name : {"llama-spm", "phi-3", "gpt-2", "deepseek-llm"}) {
    SCOPED_TRACE(name);
    const GgufFile f = ReadGguf(kShared + "/data/tokenizer/ggml-vocab-" + name + ".gguf");
    const std::optional<std::string> model = f.GetString("tokenizer.ggml.model");
    ASSERT_TRUE(model.has_value());
    EXPECT_TRUE(*model == "llama" || *model == "gpt2") << *model;
    const GgufValue* tokens = f.Find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_GT(tokens->strings.size(), 30000u);
    if (const GgufValue* types = f.Find("tokenizer.ggml.token_type")) {
      EXPECT_EQ(types->ints.size(), tokens->strings.size());
    }
    if (*model == "gpt2") {
      EXPECT_GT(f.Find("tokenizer.ggml.merges")->strings.size(), 1000u);
    }
  }
}

}  // namespace
}  // namespace mixq
