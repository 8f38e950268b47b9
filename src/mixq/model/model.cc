// Loading a model from whichever format `path` is, and the checks every loader shares.
#include "mixq/model/model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/nonfinite.h"

namespace mixq {

const char* ModelFormatName(ModelFormat format) {
  switch (format) {
    case ModelFormat::kLlama2c:
      return "llama2.c";
    case ModelFormat::kGguf:
      return "GGUF";
    case ModelFormat::kHuggingFace:
      return "Hugging Face safetensors";
  }
  return "?";
}

Model LoadModel(const std::string& path, const LoadOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) Fail("model '{}' does not exist", path);
  if (fs::is_directory(path, ec)) return LoadHuggingFaceModel(path, options);
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) Fail("cannot open model '{}'", path);
    in.read(magic, sizeof magic);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return LoadGgufModel(path, options);
  if (path.ends_with(".gguf")) Fail("'{}': not a GGUF file (magic is not \"GGUF\")", path);
  if (path.ends_with(".safetensors")) {
    Fail("'{}': give the Hugging Face folder (with config.json), not the .safetensors file", path);
  }
  return LoadLlama2cModel(path, options);
}

void ValidateModelWeights(Model& model, const LoadOptions& options) {
  ValidateConfig(model.config, model.path);
  ForEachTensor(model.config, model.weights, [&](TensorSlot& slot) {
    ValidateTensor(slot, model.path);
    const int64_t bad = CountNonFinite(*slot.view);
    if (bad == 0) return;
    if (options.refuse_nonfinite) {
      Fail("{}: tensor '{}' holds {} NaN/Inf values or scales (refused because of --refuse-nonfinite)", model.path,
           slot.name, bad);
    }
    Warn("{}: tensor '{}' holds {} NaN/Inf values or scales; outputs will be meaningless", model.path, slot.name, bad);
  });
}

ModelSize ComputeModelSize(const Model& model) {
  ModelSize size;
  std::set<const std::byte*> seen;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    if (!seen.insert(slot.view->data).second) return;
    size.parameters += slot.view->elements();
    // Bits per weight count a salient part's row pointers, columns and values with its dense part.
    size.bytes += static_cast<int64_t>(slot.view->bytes + slot.view->salient.bytes(slot.view->rows()));
  });
  return size;
}

DType PrimaryWeightType(const Model& model) {
  std::map<DType, int64_t> bytes_by_type;
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    if (slot.role == TensorRole::kLinear) bytes_by_type[slot.view->dtype] += static_cast<int64_t>(slot.view->bytes);
  });
  DType primary = DType::kF32;
  int64_t most = -1;
  for (const auto& [dtype, bytes] : bytes_by_type) {
    if (bytes > most) primary = dtype, most = bytes;
  }
  return primary;
}

}  // namespace mixq
