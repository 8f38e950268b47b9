// GGUF storage of mixq INT tensors: the group size travels in mixq.group.<name>, and a file without it,
// or with a wrong one, is refused by name.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/io/gguf.h"

namespace mixq {
namespace {

std::string WriteIntTensor(const std::string& name, int64_t group) {
  const std::string path = ::testing::TempDir() + "/" + name;
  const Shape shape = {3, 172};
  std::vector<std::byte> data(*TensorBytes(DType::kInt4, shape, group), std::byte{0x11});
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.AddTensor("blk.0.ffn_down.weight", DType::kInt4, shape, data.data(), data.size(), group);
  const std::vector<float> norm(4, 1.0f);  // must outlive Write: the writer keeps the pointer
  w.AddTensor("blk.0.ffn_norm.weight", DType::kF32, {4}, norm.data(), 16);
  w.Write(path);
  return path;
}

void Overwrite(const std::string& path, const std::string& from, const std::string& to) {
  std::string bytes = ReadFileToString(path);
  const size_t at = bytes.find(from);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, from.size(), to);
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(GgufGroupTest, GroupSizeRoundTrips) {
  const GgufFile f = ReadGguf(WriteIntTensor("int4.gguf", 128));
  const GgufTensorInfo* t = f.FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::kInt4);
  EXPECT_EQ(t->group, 128);
  EXPECT_EQ(t->bytes, *TensorBytes(DType::kInt4, {3, 172}, 128));
  EXPECT_EQ(f.View(*t).group, 128);
  EXPECT_EQ(f.GetInt("mixq.group.blk.0.ffn_down.weight"), 128);
  EXPECT_EQ(f.FindTensor("blk.0.ffn_norm.weight")->group, 0);
}

TEST(GgufGroupTest, MissingOrWrongGroupIsRefusedByName) {
  const std::string missing = WriteIntTensor("int4-missing.gguf", 64);
  Overwrite(missing, "mixq.group.", "mixq.groop.");
  try {
    ReadGguf(missing);
    FAIL() << "a mixq INT tensor without its group key was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixq.group.blk.0.ffn_down.weight"), std::string::npos) << e.what();
  }
  // A group of 1 declares far more bytes (a scale and a zero per weight) than the file holds: refused,
  // never read past the data.
  const std::string wrong = WriteIntTensor("int4-wrong.gguf", 128);
  const std::string key = "mixq.group.blk.0.ffn_down.weight";
  std::string bytes = ReadFileToString(wrong);
  const size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  const size_t value_at = at + key.size() + 4;  // past the key and its uint32 type id
  ASSERT_EQ(static_cast<uint8_t>(bytes[value_at]), 128);
  bytes[value_at] = 1;
  std::ofstream(wrong, std::ios::binary) << bytes;
  EXPECT_THROW(ReadGguf(wrong), Error);
}

TEST(GgufGroupTest, WriterRefusesGroupsOnGgmlTypes) {
  GgufWriter w;
  std::vector<std::byte> data(*TensorBytes(DType::kQ8_0, {1, 64}), std::byte{0});
  EXPECT_THROW(w.AddTensor("t", DType::kQ8_0, {1, 64}, data.data(), data.size(), 32), Error);
  EXPECT_THROW(w.AddTensor("t", DType::kInt4, {1, 64}, data.data(), data.size(), 32), Error);  // wrong size
}

}  // namespace
}  // namespace mixq
