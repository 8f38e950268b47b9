// Synthetic models: the real shapes of a named architecture with random weights, for speed and memory
// benchmarks at realistic sizes. Their metadata says they are synthetic; they never support a quality claim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mixq/model/model.h"

namespace mixq {

struct SynthPreset {
  std::string name;  // "llama2-7b"
  LlamaConfig config;
};

const std::vector<SynthPreset>& SynthPresets();
// Throws mixq::Error listing the known presets when `name` is not one.
const SynthPreset& FindSynthPreset(const std::string& name);

// A model with `preset`'s shapes, `n_layers` of its layers (0 = all), linear weights and embeddings in
// `weight_type` (F32/F16/BF16) drawn uniformly with standard deviation 0.02, norms 1, and a synthetic
// "llama" vocabulary (control tokens, 256 byte tokens, filler pieces) so the file is complete.
Model MakeSyntheticModel(const SynthPreset& preset, int64_t n_layers, DType weight_type, uint64_t seed);

}  // namespace mixq
