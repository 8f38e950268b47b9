// Loading a llama-architecture GGUF file: hyper-parameters from llama.* keys, weights as views into the mmap.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>

#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/weight_format.h"
#include "mixq/io/gguf.h"
#include "mixq/model/model.h"
#include "mixq/model/vocab_gguf.h"
#include "mixq/tensor/sparse_rows.h"

namespace mixq {
namespace {

int64_t RequireInt(const GgufFile& file, const std::string& key) {
  const std::optional<int64_t> v = file.GetInt(key);
  if (!v) Fail("'{}': key '{}' is missing (every llama GGUF file has it)", file.path, key);
  return *v;
}

LlamaConfig ReadConfig(const GgufFile& file) {
  const std::optional<std::string> arch = file.GetString("general.architecture");
  if (!arch) Fail("'{}': key 'general.architecture' is missing", file.path);
  if (*arch != "llama") {
    Fail("'{}': general.architecture is '{}'; mixq runs only 'llama' models (LLaMA-2/3, Mistral, TinyLlama, ... "
         "as llama.cpp writes them)", file.path, *arch);
  }
  LlamaConfig c;
  c.architecture = "llama";
  c.dim = RequireInt(file, "llama.embedding_length");
  c.hidden_dim = RequireInt(file, "llama.feed_forward_length");
  c.n_layers = RequireInt(file, "llama.block_count");
  c.n_heads = RequireInt(file, "llama.attention.head_count");
  c.n_kv_heads = file.GetInt("llama.attention.head_count_kv").value_or(c.n_heads);
  c.context_length = RequireInt(file, "llama.context_length");
  c.rms_eps = static_cast<float>(file.GetFloat("llama.attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = static_cast<float>(file.GetFloat("llama.rope.freq_base").value_or(10000.0));
  // GGUF's q/k rows are permuted so that RoPE rotates adjacent pairs (llama.cpp's LLAMA rope).
  c.rope_style = RopeStyle::kInterleaved;

  const int64_t default_head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  c.head_dim = file.GetInt("llama.attention.key_length").value_or(default_head_dim);
  if (const auto value_length = file.GetInt("llama.attention.value_length")) {
    if (*value_length != c.head_dim) {
      Fail("'{}': llama.attention.value_length {} differs from key_length {}; mixq needs them equal", file.path,
           *value_length, c.head_dim);
    }
  }
  if (const auto n_rot = file.GetInt("llama.rope.dimension_count")) {
    if (*n_rot != c.head_dim) {
      Fail("'{}': llama.rope.dimension_count is {}, but heads have {} dimensions; mixq rotates whole heads",
           file.path, *n_rot, c.head_dim);
    }
  }
  if (const auto scaling = file.GetString("llama.rope.scaling.type")) {
    const double factor = file.GetFloat("llama.rope.scaling.factor").value_or(1.0);
    if (*scaling != "none" && factor != 1.0) {
      Fail("'{}': rope scaling '{}' (factor {}) is not supported; only LLaMA-3 rope_freqs scaling is", file.path,
           *scaling, factor);
    }
  }

  if (const auto vocab_size = file.GetInt("llama.vocab_size")) {
    c.vocab_size = *vocab_size;
  } else if (const GgufTensorInfo* embd = file.FindTensor("token_embd.weight"); embd != nullptr) {
    c.vocab_size = embd->shape.front();
  } else if (const GgufValue* tokens = file.Find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(tokens->strings.size());
  }
  c.tied_embeddings = file.FindTensor("output.weight") == nullptr;
  ValidateConfig(c, file.path);
  return c;
}

// The LLaMA-3.1 per-frequency divisors: a [head_dim / 2] vector beside the weights.
std::vector<float> ReadRopeFreqs(const GgufFile& file, const GgufTensorInfo& info, int64_t head_dim) {
  if (info.shape != Shape{head_dim / 2}) {
    Fail("'{}': tensor 'rope_freqs.weight' has shape {}, expected [{}] (head_dim / 2)", file.path,
         ShapeString(info.shape), head_dim / 2);
  }
  if (!HasFloatCodec(info.dtype) || !Traits(info.dtype).is_float) {
    Fail("'{}': tensor 'rope_freqs.weight' has type {}, expected F32", file.path, DTypeName(info.dtype));
  }
  std::vector<float> factors(static_cast<size_t>(head_dim / 2));
  RowToFloat(info.dtype, file.View(info).data, factors.data(), head_dim / 2);
  for (float f : factors) {
    if (!(f > 0.0f) || !std::isfinite(f)) Fail("'{}': tensor 'rope_freqs.weight' holds {}, expected positive", file.path, f);
  }
  return factors;
}

Tokenizer LoadTokenizerFile(const std::string& path, int64_t vocab_size) {
  if (path.ends_with(".gguf")) {
    const GgufFile file = ReadGguf(path);
    return Tokenizer::FromVocab(ReadVocabFromGguf(file));
  }
  if (path.ends_with(".model")) return Tokenizer::FromSentencePieceFile(path);
  return Tokenizer::FromLlama2cFile(path, static_cast<int32_t>(vocab_size));
}

// Kernels read rows as float/uint16 arrays; a tensor misaligned in a caller's buffer gets an aligned copy.
TensorView AlignedCopy(const TensorView& view, Model& model) {
  auto copy = std::make_unique<Tensor>(Tensor::Zeros(view.name, view.dtype, view.shape, view.group));
  std::memcpy(copy->storage.data(), view.data, view.bytes);
  TensorView aligned = copy->view();
  model.owned_tensors.push_back(std::move(copy));
  return aligned;
}

// The salient (sparse FP16) part stored beside `weight`, if any: all three companion tensors or none, with
// the types and shapes tensor/sparse_rows.h names, and a valid CSR.
SparseRowsView ReadSalientPart(const GgufFile& file, const TensorView& weight, Model& model,
                               std::set<std::string>& used) {
  const std::string names[3] = {SalientRowsName(weight.name), SalientColsName(weight.name),
                                SalientValuesName(weight.name)};
  const GgufTensorInfo* infos[3];
  int present = 0;
  for (int i = 0; i < 3; ++i) present += (infos[i] = file.FindTensor(names[i])) != nullptr;
  if (present == 0) return {};
  for (int i = 0; i < 3; ++i) {
    if (infos[i] == nullptr) Fail("'{}': tensor '{}' has a salient part without '{}'", file.path, weight.name, names[i]);
    used.insert(names[i]);
  }
  const int64_t rows = weight.rows();
  const DType expected_type[3] = {DType::kI32, DType::kI16, DType::kF16};
  for (int i = 0; i < 3; ++i) {
    if (infos[i]->dtype != expected_type[i] || infos[i]->shape.size() != 1) {
      Fail("'{}': '{}' is {} {} (expected a vector of {})", file.path, names[i], DTypeName(infos[i]->dtype),
           ShapeString(infos[i]->shape), DTypeName(expected_type[i]));
    }
  }
  if (infos[0]->shape[0] != rows + 1) {
    Fail("'{}': '{}' has {} row pointers for {} rows (expected {})", file.path, names[0], infos[0]->shape[0], rows,
         rows + 1);
  }
  const int64_t nnz = infos[1]->shape[0];
  if (infos[2]->shape[0] != nnz) {
    Fail("'{}': '{}' has {} values for {} columns in '{}'", file.path, names[2], infos[2]->shape[0], nnz, names[1]);
  }
  TensorView parts[3];
  for (int i = 0; i < 3; ++i) {
    parts[i] = file.View(*infos[i]);
    if (reinterpret_cast<uintptr_t>(parts[i].data) % 4 != 0) parts[i] = AlignedCopy(parts[i], model);
  }
  const SparseRowsView sparse{parts[0].as<uint32_t>(), parts[1].as<uint16_t>(), parts[2].as<uint16_t>(), nnz};
  ValidateSparseRows(sparse, rows, weight.cols(), file.path, weight.name);
  return sparse;
}

// W8A8 (docs/w8a8.md): the tensor's activation mode and static scale from GgufActivationKey /
// GgufActivationScaleKey. MatMul relies on what is checked here (kInt8Sym rows of group 0, a positive
// finite static scale), so a file that breaks it is refused, naming the tensor.
void ReadActivationQuant(const GgufFile& file, TensorView& view) {
  const std::string mode_key = GgufActivationKey(view.name);
  const std::string scale_key = GgufActivationScaleKey(view.name);
  const std::optional<std::string> mode_name = file.GetString(mode_key);
  const GgufValue* scale_value = file.Find(scale_key);
  if (!mode_name) {
    if (scale_value != nullptr) {
      Fail("'{}': tensor '{}' has an activation scale ('{}') but no activation mode ('{}')", file.path, view.name,
           scale_key, mode_key);
    }
    return;
  }
  const std::optional<ActivationQuant> mode = ParseActivationQuantName(*mode_name);
  if (!mode) {
    Fail("'{}': tensor '{}' has activation mode '{}' ({}); expected int8-tensor or int8-token", file.path, view.name,
         *mode_name, mode_key);
  }
  if (view.dtype != DType::kInt8Sym || view.group != 0) {
    Fail("'{}': tensor '{}' has activation mode {} but is stored as {} with group {}; W8A8 needs INT8_SYM rows "
         "with group 0 (int8-pc-sym or int8-pt-sym)", file.path, view.name, *mode_name, DTypeName(view.dtype),
         view.group);
  }
  if (view.name == "token_embd.weight") {
    Fail("'{}': tensor 'token_embd.weight' has activation mode {}, but the embedding table is a lookup, not a "
         "matmul (store it without one)", file.path, *mode_name);
  }
  if (*mode == ActivationQuant::kInt8Tensor) {
    const std::optional<double> scale = file.GetFloat(scale_key);
    if (!scale) {
      Fail("'{}': tensor '{}' has activation mode int8-tensor but no static scale '{}'", file.path, view.name,
           scale_key);
    }
    const auto as_float = static_cast<float>(*scale);
    if (!std::isfinite(as_float) || !(as_float > 0.0f)) {
      Fail("'{}': tensor '{}' has static activation scale {} ({}); expected a positive finite number", file.path,
           view.name, *scale, scale_key);
    }
    view.activation_scale = as_float;
  } else if (scale_value != nullptr) {
    Fail("'{}': tensor '{}' has a static activation scale ('{}') but mode {}, which computes its own per token",
         file.path, view.name, scale_key, *mode_name);
  }
  view.activation = *mode;
}

}  // namespace

Model LoadGgufModel(const std::string& path, const LoadOptions& options) {
  const GgufFile file = ReadGguf(path);
  Model model;
  model.format = ModelFormat::kGguf;
  model.path = path;
  model.config = ReadConfig(file);
  const LlamaConfig& c = model.config;
  if (const GgufTensorInfo* rope = file.FindTensor("rope_freqs.weight")) {
    model.config.rope_freq_factors = ReadRopeFreqs(file, *rope, c.head_dim);
  }

  std::set<std::string> used = {"rope_freqs.weight"};
  ForEachTensor(model.config, model.weights, [&](TensorSlot& slot) {
    const GgufTensorInfo* info = file.FindTensor(slot.name);
    if (info == nullptr) return;  // ValidateModelWeights names it as missing
    used.insert(slot.name);
    TensorView view = file.View(*info);
    if (reinterpret_cast<uintptr_t>(view.data) % 4 != 0) view = AlignedCopy(view, model);
    view.salient = ReadSalientPart(file, view, model, used);
    ReadActivationQuant(file, view);
    if (!view.salient.empty() && view.activation != ActivationQuant::kFormat) {
      Fail("'{}': tensor '{}' has both a salient part and W8A8 activations; the int8 x int8 kernel has no "
           "sparse FP16 part", path, view.name);
    }
    *slot.view = view;
  });
  // An activation key naming a tensor the model does not have is a file written for another model.
  for (const auto& [key, value] : file.metadata) {
    if (!IsGgufActivationKey(key)) continue;
    const std::string tensor = key.substr(key.find('.', std::string_view("mixq.").size()) + 1);
    if (used.count(tensor) == 0) Fail("'{}': key '{}' names tensor '{}', which the model does not have", path, key, tensor);
  }
  if (c.tied_embeddings) model.weights.output = model.weights.token_embd;
  int unused = 0;
  for (const GgufTensorInfo& t : file.tensors) {
    if (used.count(t.name) == 0 && ++unused <= 3) Warn("'{}': tensor '{}' is not used by a llama model", path, t.name);
  }
  if (file.mapping) model.mappings.push_back(file.mapping);

  model.metadata["general.name"] =
      file.GetString("general.name").value_or(std::filesystem::path(path).stem().string());
  for (const auto& [key, value] : file.metadata) {
    // Activation modes are read into the tensors above, not kept as model metadata.
    if (key.starts_with("mixq.") && value.type == GgufValueType::kString && !IsGgufActivationKey(key)) {
      model.metadata[key] = value.string_value;
    }
  }

  ValidateModelWeights(model, options);

  try {
    if (!options.tokenizer_path.empty()) {
      model.tokenizer = LoadTokenizerFile(options.tokenizer_path, c.vocab_size);
    } else if (GgufHasVocab(file)) {
      model.tokenizer = Tokenizer::FromVocab(ReadVocabFromGguf(file));
    } else if (options.require_tokenizer) {
      Fail("'{}' carries no tokenizer (no tokenizer.ggml.* keys): pass --tokenizer FILE", path);
    }
  } catch (const Error& e) {
    if (options.require_tokenizer) throw;
    Warn("{} (continuing without a tokenizer)", e.what());
    model.tokenizer = Tokenizer();
  }
  if (model.tokenizer.loaded() && model.tokenizer.vocab().size() > c.vocab_size) {
    Fail("'{}': the tokenizer has {} tokens, more than the model's {} embedding rows", path,
         model.tokenizer.vocab().size(), c.vocab_size);
  }
  return model;
}

}  // namespace mixq
