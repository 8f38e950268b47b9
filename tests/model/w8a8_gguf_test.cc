// W8A8 storage: the writer stores each tensor's activation mode and static scale as GGUF metadata, the
// loader puts them in the TensorView, and refuses (naming the tensor) every inconsistent file: an unknown
// mode, a missing / NaN / infinite / zero / negative static scale, a scale without a mode, a mode on a
// tensor that is not int8-sym group 0 or on the embedding table, a key for a tensor the model lacks.
// Random byte mutations of the activation keys either load consistently or fail with mixq::Error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/formats/weight_format.h"
#include "mixq/io/gguf.h"
#include "mixq/model/save_gguf.h"
#include "w8a8_fixture.h"

namespace mixq {
namespace {

using testing::QuantizeStoriesW8A8;
using testing::Stories;
using testing::StoriesCalibrationStats;
using testing::TempPath;
using testing::TypeOptions;

const std::string& W8A8File() {
  static const std::string path = QuantizeStoriesW8A8(TypeOptions("w8a8"), "stories-w8a8-storage.gguf");
  return path;
}

std::string Bytes(const std::string& path) { return ReadFileToString(path); }

std::string WriteVariant(const std::string& bytes, const std::string& name) {
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Position just past the GGUF key string `key` (its bytes; the value type follows), or npos.
size_t AfterKey(const std::string& bytes, const std::string& key) {
  const size_t at = bytes.find(key);
  return at == std::string::npos ? at : at + key.size();
}

// Replaces the first occurrence of `from` (same length as `to`) at or after `start`.
void Patch(std::string& bytes, const std::string& from, const std::string& to, size_t start = 0) {
  ASSERT_EQ(from.size(), to.size());
  const size_t at = bytes.find(from, start);
  ASSERT_NE(at, std::string::npos) << from;
  bytes.replace(at, from.size(), to);
}

// Loading `path` fails with a mixq::Error whose message holds every one of `parts`.
void ExpectLoadError(const std::string& path, const std::vector<std::string>& parts) {
  try {
    LoadModel(path);
    ADD_FAILURE() << path << " loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message;
  }
}

const char kDown[] = "blk.1.ffn_down.weight";

TEST(W8A8Gguf, WritesAndLoadsActivationModes) {
  const Model q = LoadModel(W8A8File());
  const CalibrationStats& stats = StoriesCalibrationStats();
  int64_t w8a8 = 0;
  ForEachTensor(q.config, q.weights, [&](const TensorSlot& slot) {
    const TensorView& v = *slot.view;
    if (slot.role != TensorRole::kLinear || slot.name == "token_embd.weight") {
      EXPECT_EQ(v.activation, ActivationQuant::kFormat) << slot.name;
      return;
    }
    ++w8a8;
    EXPECT_EQ(v.dtype, DType::kInt8Sym) << slot.name;
    EXPECT_EQ(v.group, 0) << slot.name;
    EXPECT_EQ(v.activation, ActivationQuant::kInt8Tensor) << slot.name;
    // Stored as float32, so exactly the calibrated max|input| / 127.
    EXPECT_EQ(v.activation_scale, stats.Find(slot.name)->MaxInput() / 127.0f) << slot.name;
  });
  EXPECT_EQ(w8a8, 5 * 7);
  // The embedding table stays int8 per channel, and (tied) the head with it.
  EXPECT_EQ(q.weights.token_embd.dtype, DType::kInt8Sym);
  EXPECT_EQ(q.weights.output.activation, ActivationQuant::kFormat);
  // The keys are tensor metadata, not model metadata that a later write would copy.
  for (const auto& [key, value] : q.metadata) EXPECT_FALSE(IsGgufActivationKey(key)) << key;
}

TEST(W8A8Gguf, CopyKeepsModesAndConversionDropsThem) {
  const Model q = LoadModel(W8A8File());
  const std::string copy = TempPath("stories-w8a8-copy.gguf");
  WriteGgufModel(q, copy, std::nullopt, [](const TensorSlot& slot) {
    return TensorEncoding{slot.view->dtype, slot.view->group, nullptr};
  });
  const Model c = LoadModel(copy);
  EXPECT_EQ(c.weights.layers[3].w_down.activation, ActivationQuant::kInt8Tensor);
  EXPECT_EQ(c.weights.layers[3].w_down.activation_scale, q.weights.layers[3].w_down.activation_scale);
  const std::string f16 = TempPath("stories-w8a8-to-f16.gguf");
  SaveGgufModel(q, f16, DType::kF16);
  const Model h = LoadModel(f16);  // would fail if a stale activation key followed the F16 tensors
  EXPECT_EQ(h.weights.layers[3].w_down.activation, ActivationQuant::kFormat);
  EXPECT_FALSE(ReadGguf(f16).Find(GgufActivationKey(kDown)));
}

TEST(W8A8Gguf, RefusesUnknownMode) {
  std::string b = Bytes(W8A8File());
  Patch(b, "int8-tensor", "int8-tensar", AfterKey(b, GgufActivationKey(kDown)));
  ExpectLoadError(WriteVariant(b, "w8a8-bad-mode.gguf"), {kDown, "int8-tensar", "expected int8-tensor or int8-token"});
}

TEST(W8A8Gguf, RefusesMissingStaticScale) {
  std::string b = Bytes(W8A8File());
  Patch(b, GgufActivationScaleKey(kDown), "mixq.activation_scalX." + std::string(kDown));
  ExpectLoadError(WriteVariant(b, "w8a8-no-scale.gguf"), {kDown, "no static scale"});
}

TEST(W8A8Gguf, RefusesBadStaticScales) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 0.0f, -0.5f}) {
    std::string b = Bytes(W8A8File());
    const size_t at = AfterKey(b, GgufActivationScaleKey(kDown));
    ASSERT_NE(at, std::string::npos);
    uint32_t type;
    std::memcpy(&type, b.data() + at, 4);
    ASSERT_EQ(type, static_cast<uint32_t>(GgufValueType::kFloat32));
    std::memcpy(b.data() + at + 4, &bad, 4);
    ExpectLoadError(WriteVariant(b, "w8a8-bad-scale.gguf"), {kDown, "expected a positive finite number"});
  }
}

TEST(W8A8Gguf, RefusesScaleWithoutMode) {
  std::string b = Bytes(W8A8File());
  Patch(b, GgufActivationKey(kDown), "mixq.activatioX." + std::string(kDown));
  ExpectLoadError(WriteVariant(b, "w8a8-scale-only.gguf"), {kDown, "no activation mode"});
}

TEST(W8A8Gguf, RefusesModeOnTensorThatIsNotInt8SymRows) {
  // blk.1.ffn_norm.weight (F32) takes over ffn_down's two keys: same name length.
  std::string b = Bytes(W8A8File());
  Patch(b, GgufActivationKey(kDown), GgufActivationKey("blk.1.ffn_norm.weight"));
  Patch(b, GgufActivationScaleKey(kDown), GgufActivationScaleKey("blk.1.ffn_norm.weight"));
  ExpectLoadError(WriteVariant(b, "w8a8-on-norm.gguf"), {"blk.1.ffn_norm.weight", "F32", "INT8_SYM"});
}

TEST(W8A8Gguf, RefusesKeysForMissingTensors) {
  std::string b = Bytes(W8A8File());
  Patch(b, GgufActivationKey(kDown), GgufActivationKey("blk.9.ffn_down.weight"));
  Patch(b, GgufActivationScaleKey(kDown), GgufActivationScaleKey("blk.9.ffn_down.weight"));
  ExpectLoadError(WriteVariant(b, "w8a8-no-tensor.gguf"), {"blk.9.ffn_down.weight", "does not have"});
}

TEST(W8A8Gguf, RefusesModeOnEmbeddingTable) {
  const std::string path = TempPath("w8a8-embd.gguf");
  const WeightFormat int8 = *ParseWeightFormat("int8-pc-sym");
  WriteGgufModel(Stories(), path, std::nullopt, [&](const TensorSlot& slot) {
    if (slot.name != "token_embd.weight") return TensorEncoding{slot.view->dtype, slot.view->group, nullptr};
    const TensorView src = *slot.view;
    TensorEncoding e{DType::kInt8Sym, 0, [src, int8](std::byte* dst) {
                       QuantizeMatrix(int8, src.as<float>(), src.rows(), src.cols(), dst);
                     }};
    e.activation = ActivationQuant::kInt8Token;
    return e;
  });
  ExpectLoadError(path, {"token_embd.weight", "lookup"});
}

// Random bytes in the activation keys and values: each mutant either fails with mixq::Error or loads with
// every W8A8 tensor consistent (what MatMul relies on).
TEST(W8A8Gguf, MutatedKeysLoadConsistentlyOrFailCleanly) {
  const std::string original = Bytes(W8A8File());
  std::vector<size_t> spots;
  for (size_t at = original.find("mixq.activation"); at != std::string::npos;
       at = original.find("mixq.activation", at + 1)) {
    for (size_t k = 0; k < 64 && at + k < original.size(); ++k) spots.push_back(at + k);
  }
  ASSERT_FALSE(spots.empty());
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  int loaded = 0, refused = 0;
  for (int i = 0; i < 150; ++i) {
    std::string b = original;
    for (int k = 0; k < 2; ++k) b[spots[rng() % spots.size()]] = static_cast<char>(rng() % 256);
    try {
      const Model m = LoadModel(WriteVariant(b, "w8a8-mutant.gguf"));
      ++loaded;
      ForEachTensor(m.config, m.weights, [&](const TensorSlot& slot) {
        const TensorView& v = *slot.view;
        if (v.activation == ActivationQuant::kFormat) return;
        EXPECT_EQ(v.dtype, DType::kInt8Sym) << slot.name;
        EXPECT_EQ(v.group, 0) << slot.name;
        if (v.activation == ActivationQuant::kInt8Tensor) {
          EXPECT_TRUE(std::isfinite(v.activation_scale) && v.activation_scale > 0.0f) << slot.name;
        }
      });
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  RecordProperty("loaded", loaded);
}

}  // namespace
}  // namespace mixq
