// The safetensors reader: well-formed files parse to the right views; every malformed field is a mixq::Error.
#include "mixq/io/safetensors.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "io/safetensors_fixture.h"
#include "mixq/base/error.h"

namespace mixq {
namespace {

using testing::BuildSafetensors;
using testing::EncodeFloats;
using testing::FixtureTensor;
using testing::RawSafetensors;

std::vector<std::byte> Bytes(size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

// Expects ParseSafetensors to throw a mixq::Error whose message contains every one of `parts`.
void ExpectError(const std::vector<std::byte>& bytes, std::initializer_list<const char*> parts) {
  try {
    ParseSafetensors(bytes, "fixture.safetensors");
    ADD_FAILURE() << "no error; expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("fixture.safetensors"), std::string::npos) << message;
    for (const char* part : parts) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

TEST(SafetensorsTest, ParsesTensorsMetadataAndViews) {
  const std::vector<float> a = {1.0f, -2.0f, 3.5f, 0.25f, 8.0f, -0.5f};
  const std::vector<float> b = {0.5f, 1.5f, -3.0f};
  const auto bytes = BuildSafetensors({
      {"a", "F32", {2, 3}, EncodeFloats("F32", a)},
      {"b.half", "F16", {3}, EncodeFloats("F16", b)},
      {"c.bf", "BF16", {1, 3}, EncodeFloats("BF16", b)},
      {"empty", "F32", {0, 4}, {}},
  });
  const SafetensorsFile file = ParseSafetensors(bytes, "x");
  ASSERT_EQ(file.tensors.size(), 4u);
  EXPECT_EQ(file.data_offset % 8, 0u);
  const auto* ta = file.FindTensor("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->dtype, DType::kF32);
  EXPECT_EQ(ta->shape, (Shape{2, 3}));
  const TensorView va = file.View(*ta);
  EXPECT_EQ(va.bytes, 24u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(va.as<float>()[i], a[i]);
  const auto* tb = file.FindTensor("b.half");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->dtype, DType::kF16);
  EXPECT_EQ(F16ToF32(file.View(*tb).as<uint16_t>()[2]), -3.0f);
  EXPECT_EQ(file.FindTensor("c.bf")->dtype, DType::kBF16);
  EXPECT_EQ(file.FindTensor("empty")->bytes(), 0u);
  EXPECT_EQ(file.FindTensor("__metadata__"), nullptr);
  EXPECT_EQ(file.FindTensor("missing"), nullptr);
}

TEST(SafetensorsTest, ReadsTheRealDocs5MCheckpoint) {
  const SafetensorsFile file =
      ReadSafetensors(std::string(MIXQ_SOURCE_DIR) + "/../shared/models/docs-5M/model.safetensors");
  EXPECT_EQ(file.tensors.size(), 2u + 1u + 4u * 9u);  // embed, lm_head, norm, 9 per layer
  int64_t parameters = 0;
  for (const auto& t : file.tensors) {
    EXPECT_EQ(t.dtype, DType::kF32) << t.name;
    parameters += ElementCount(t.shape);
  }
  EXPECT_EQ(parameters, 5507328);  // models/README.md
  ASSERT_NE(file.FindTensor("model.layers.3.mlp.down_proj.weight"), nullptr);
  EXPECT_EQ(file.FindTensor("model.layers.3.mlp.down_proj.weight")->shape, (Shape{256, 768}));
  // The last tensor ends exactly at the end of the file.
  EXPECT_EQ(file.data_offset + file.tensors.back().end, file.bytes.size());
}

TEST(SafetensorsTest, RejectsBadHeaderLengths) {
  ExpectError(Bytes(5), {"shorter than the 8-byte"});
  std::vector<std::byte> huge = Bytes(64);
  const uint64_t n = 1ull << 62;
  std::memcpy(huge.data(), &n, 8);
  ExpectError(huge, {"absurd"});
  std::vector<std::byte> past = Bytes(64);
  const uint64_t m = 100;
  std::memcpy(past.data(), &m, 8);
  ExpectError(past, {"runs past the end"});
}

TEST(SafetensorsTest, RejectsBadJson) {
  ExpectError(RawSafetensors("{\"a\": {\"dtype\": ", {}), {"not valid JSON"});
  ExpectError(RawSafetensors("[1, 2]", {}), {"must be a JSON object"});
  ExpectError(RawSafetensors("{\"a\": 3}", {}), {"'a'", "must be a JSON object"});
  ExpectError(RawSafetensors(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                 "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", Bytes(8)),
              {"'a'", "twice"});
}

TEST(SafetensorsTest, RejectsMissingOrMistypedFields) {
  ExpectError(RawSafetensors(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", Bytes(4)), {"'w'", "\"dtype\""});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", Bytes(4)), {"'w'", "\"shape\""});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [1]}})", Bytes(4)), {"'w'", "\"data_offsets\""});
  ExpectError(RawSafetensors(R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})", Bytes(4)),
              {"'w'", "dtype"});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", Bytes(4)),
              {"'w'", "shape entry -1"});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", Bytes(4)),
              {"'w'", "not an integer"});
  ExpectError(
      RawSafetensors(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})", Bytes(4)),
      {"'w'", "64 bits"});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", Bytes(4)),
              {"'w'", "[begin, end]"});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", Bytes(4)),
              {"'w'", "begin"});
}

TEST(SafetensorsTest, RejectsUnsupportedDtypesByName) {
  ExpectError(RawSafetensors(R"({"w.scale": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", Bytes(4)),
              {"'w.scale'", "F8_E4M3 is not supported"});
  ExpectError(RawSafetensors(R"({"ids": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", Bytes(8)),
              {"'ids'", "I64 is not supported"});
}

TEST(SafetensorsTest, RejectsBadOffsets) {
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", Bytes(8)),
              {"'w'", "begin 8 is after end 4"});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", Bytes(12)),
              {"'w'", "past the end of the data"});
  ExpectError(RawSafetensors(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", Bytes(16)),
              {"'w'", "holds 16 bytes, expected 12"});
  ExpectError(RawSafetensors(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F16", "shape": [4], "data_offsets": [4, 12]}})", Bytes(12)),
              {"'a'", "'b'", "overlap"});
}

TEST(SafetensorsTest, RejectsTruncatedFile) {
  auto bytes = BuildSafetensors({{"w", "F32", {4, 4}, EncodeFloats("F32", std::vector<float>(16, 1.0f))}});
  bytes.resize(bytes.size() - 10);
  ExpectError(bytes, {"'w'", "truncated"});
}

TEST(SafetensorsTest, ShardedCheckpointFollowsTheIndex) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / ("mixq_st_shards_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  testing::WriteBytes((dir / "model-00001-of-00002.safetensors").string(),
                      BuildSafetensors({{"a", "F32", {2}, EncodeFloats("F32", {1.0f, 2.0f})}}));
  testing::WriteBytes((dir / "model-00002-of-00002.safetensors").string(),
                      BuildSafetensors({{"b", "F16", {2}, EncodeFloats("F16", {3.0f, 4.0f})}}));
  const std::string index = (dir / "model.safetensors.index.json").string();
  testing::WriteText(index, R"({"metadata": {"total_size": 12}, "weight_map": {
      "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
  const SafetensorsCheckpoint ckpt = OpenSafetensorsCheckpoint(dir.string());
  EXPECT_EQ(ckpt.shards.size(), 2u);
  EXPECT_EQ(ckpt.Mappings().size(), 2u);
  EXPECT_EQ(ckpt.View("a").as<float>()[1], 2.0f);
  EXPECT_EQ(F16ToF32(ckpt.View("b").as<uint16_t>()[0]), 3.0f);
  EXPECT_TRUE(ckpt.View("c").empty());

  auto expect_error = [&](const std::string& text, const char* part) {
    testing::WriteText(index, text);
    try {
      OpenSafetensorsCheckpoint(dir.string());
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("model.safetensors.index.json"), std::string::npos) << e.what();
    }
  };
  expect_error("{\"weight_map\": ", "not valid JSON");
  expect_error(R"({"metadata": {}})", "weight_map");
  expect_error(R"({"weight_map": {"a": "model-00003-of-00002.safetensors"}})", "does not exist");
  expect_error(R"({"weight_map": {"a": "../model-00001-of-00002.safetensors"}})", "not a file name");
  expect_error(R"({"weight_map": {"b": "model-00001-of-00002.safetensors"}})", "does not hold it");
  expect_error(R"({"weight_map": {"a": 3}})", "shard file name");
  fs::remove_all(dir);
}

TEST(SafetensorsTest, FolderWithoutCheckpointIsAnError) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / ("mixq_st_empty_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_THROW(OpenSafetensorsCheckpoint(dir.string()), Error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mixq
