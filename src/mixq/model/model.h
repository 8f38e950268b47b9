// A loaded model: hyper-parameters, weight views, tokenizer, and the storage the views point into.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mixq/base/aligned_buffer.h"
#include "mixq/io/mapped_file.h"
#include "mixq/model/config.h"
#include "mixq/model/tokenizer.h"
#include "mixq/model/weights.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

enum class ModelFormat { kLlama2c, kGguf, kHuggingFace };
const char* ModelFormatName(ModelFormat format);

struct Model {
  LlamaConfig config;
  LlamaWeights weights;
  Tokenizer tokenizer;
  ModelFormat format = ModelFormat::kGguf;
  std::string path;
  // Descriptive metadata shown by `info` and carried into GGUF (general.name, mixq.synthetic, ...).
  std::map<std::string, std::string> metadata;

  // Keeps the weight views valid: mmapped files, and tensors mixq had to build (e.g. converted tables).
  std::vector<std::shared_ptr<const MappedFile>> mappings;
  std::vector<std::unique_ptr<Tensor>> owned_tensors;
  // InterleaveForDecode's copies of the weight matrices, back to back in huge pages (one buffer a call).
  std::vector<AlignedBuffer> decode_copies;
};

struct LoadOptions {
  std::string tokenizer_path;      // overrides the tokenizer found beside or inside the model
  bool refuse_nonfinite = false;   // NaN/Inf weights: an error instead of a warning
  bool require_tokenizer = true;   // `info` can describe a model without one
};

// Loads a llama2.c checkpoint, a GGUF file, or a Hugging Face folder (config.json + safetensors),
// chosen by what `path` is; throws mixq::Error naming the file and what is wrong.
Model LoadModel(const std::string& path, const LoadOptions& options = {});

// The loaders LoadModel dispatches to; each validates everything it reads.
Model LoadLlama2cModel(const std::string& path, const LoadOptions& options);
Model LoadGgufModel(const std::string& path, const LoadOptions& options);
Model LoadHuggingFaceModel(const std::string& dir, const LoadOptions& options);

// Checks every tensor against the config (shape, type, bytes) and scans weights for NaN/Inf.
void ValidateModelWeights(Model& model, const LoadOptions& options);

// Repacks every weight matrix whose kernel on this CPU decodes faster from rows interleaved 8 at a time
// (QuantKernel::interleaved: Q4_0 on AVX2) into that layout, owned by the model (TensorView::interleaved),
// and releases the mapped file's pages of the original: the matrix kernels then read only the copy, so
// memory stays one copy of the weights. `data` stays valid for every other reader. For the commands that
// run the model (generate, bench, ppl, kld, eval); returns how many tensors were repacked.
int InterleaveForDecode(Model& model);

// The bytes one decode step streams from memory, matrix by matrix in the order ForEachTensor visits them:
// each linear layer's and the output head's (a tied head: the embedding table's) InterleaveForDecode copy
// where it has one, else its stored data. Their sizes add up to the weights a token reads.
std::vector<std::span<const std::byte>> DecodeReadSpans(const Model& model);

// Total parameters (elements of all distinct tensors) and bytes of weight storage.
struct ModelSize {
  int64_t parameters = 0;
  int64_t bytes = 0;
  double bits_per_weight() const { return parameters == 0 ? 0.0 : 8.0 * bytes / parameters; }
};
ModelSize ComputeModelSize(const Model& model);

// The type most linear-layer bytes are stored in: how llama.cpp names a model's type ("F16", "Q4_K").
DType PrimaryWeightType(const Model& model);

}  // namespace mixq
