// Synthetic models with real architectures' shapes.
#include "mixq/model/synth.h"

#include <cmath>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/formats/convert.h"

namespace mixq {
namespace {

LlamaConfig Shape(int64_t dim, int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t vocab,
                  int64_t context, float theta, bool tied) {
  LlamaConfig c;
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.vocab_size = vocab;
  c.context_length = context;
  c.rope_theta = theta;
  c.rms_eps = 1e-5f;
  c.tied_embeddings = tied;
  return c;
}

std::vector<SynthPreset> BuildPresets() {
  std::vector<SynthPreset> presets = {
      {"llama2-7b", Shape(4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, false)},
      {"llama2-13b", Shape(5120, 13824, 40, 40, 40, 32000, 4096, 10000.0f, false)},
      {"llama3-8b", Shape(4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, false)},
      {"llama3.2-1b", Shape(2048, 8192, 16, 32, 8, 128256, 131072, 500000.0f, true)},
      {"mistral-7b", Shape(4096, 14336, 32, 32, 8, 32000, 32768, 1000000.0f, false)},
      {"tinyllama-1.1b", Shape(2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, false)},
      {"smollm-135m", Shape(576, 1536, 30, 9, 3, 49152, 2048, 10000.0f, true)},
  };
  // LLaMA-3.2 ships with "llama3" rope scaling (factor 32, low 1, high 4, original context 8192).
  LlamaConfig& l32 = presets[3].config;
  l32.rope_freq_factors = Llama3RopeFreqFactors(l32.head_dim, l32.rope_theta, 32.0f, 1.0f, 4.0f, 8192);
  return presets;
}

// A small, fast generator (splitmix64) so each row's values depend only on the seed and the row.
uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void FillUniform(Tensor& t, uint64_t seed) {
  // Uniform on [-a, a] has standard deviation a / sqrt(3); a = 0.02 * sqrt(3) gives 0.02.
  const float a = 0.02f * std::sqrt(3.0f);
  const int64_t rows = t.view().rows();
  const int64_t cols = t.view().cols();
  const size_t row_bytes = t.storage.size() / static_cast<size_t>(rows);
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      uint64_t state = seed * 0x100000001b3ull + static_cast<uint64_t>(r);
      for (auto& v : row) v = a * (2.0f * static_cast<float>(SplitMix(state) >> 40) / 16777216.0f - 1.0f);
      RowFromFloat(t.dtype, row.data(), t.storage.data() + static_cast<size_t>(r) * row_bytes, cols);
    }
  }
}

Vocab SyntheticVocab(int64_t size) {
  Vocab v;
  v.model = "llama";
  auto add = [&](std::string piece, TokenType type) {
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(-static_cast<float>(v.pieces.size()));
    v.types.push_back(type);
  };
  add("<unk>", TokenType::kUnknown);
  add("<s>", TokenType::kControl);
  add("</s>", TokenType::kControl);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), TokenType::kByte);
  while (static_cast<int64_t>(v.pieces.size()) < size) add(fmt::format("\u2581synthetic{}", v.pieces.size()), TokenType::kNormal);
  return v;
}

}  // namespace

const std::vector<SynthPreset>& SynthPresets() {
  static const std::vector<SynthPreset> presets = BuildPresets();
  return presets;
}

const SynthPreset& FindSynthPreset(const std::string& name) {
  std::string known;
  for (const SynthPreset& p : SynthPresets()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  Fail("--preset '{}' is not known; presets: {}", name, known);
}

Model MakeSyntheticModel(const SynthPreset& preset, int64_t n_layers, DType weight_type, uint64_t seed) {
  if (weight_type != DType::kF32 && weight_type != DType::kF16 && weight_type != DType::kBF16) {
    Fail("--type {} is not supported for synthetic models (f32, f16, bf16)", DTypeName(weight_type));
  }
  if (n_layers < 0 || n_layers > preset.config.n_layers) {
    Fail("--layers {} is out of range for {}: 1..{} (0 = all)", n_layers, preset.name, preset.config.n_layers);
  }
  Model model;
  model.format = ModelFormat::kGguf;
  model.config = preset.config;
  if (n_layers > 0) model.config.n_layers = n_layers;
  model.path = "synthetic:" + preset.name;
  model.metadata["general.name"] = fmt::format("synthetic {} ({} of {} layers)", preset.name, model.config.n_layers,
                                               preset.config.n_layers);
  model.metadata["mixq.synthetic"] =
      fmt::format("random weights with {} shapes (seed {}): for speed and memory only, never for quality", preset.name,
                  seed);
  uint64_t tensor_seed = seed;
  ForEachTensor(model.config, model.weights, [&](TensorSlot& slot) {
    const DType dtype = slot.role == TensorRole::kNorm ? DType::kF32 : weight_type;
    auto tensor = std::make_unique<Tensor>(Tensor::Zeros(slot.name, dtype, slot.shape));
    if (slot.role == TensorRole::kNorm) {
      float* v = tensor->as<float>();
      for (int64_t i = 0; i < tensor->view().elements(); ++i) v[i] = 1.0f;
    } else {
      FillUniform(*tensor, ++tensor_seed);
    }
    *slot.view = tensor->view();
    model.owned_tensors.push_back(std::move(tensor));
  });
  model.tokenizer = Tokenizer::FromVocab(SyntheticVocab(model.config.vocab_size));
  return model;
}

}  // namespace mixq
