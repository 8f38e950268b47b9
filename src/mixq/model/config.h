// LLaMA-family hyper-parameters, whatever file format they were read from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mixq {

// Which pairs of a head's dimensions RoPE rotates together.
enum class RopeStyle {
  kInterleaved,  // (0,1), (2,3), ...: llama2.c, GGUF and llama.cpp's LLAMA rope (q/k rows permuted)
  kHalf,         // (i, i + d/2): Hugging Face's rotate_half, used on unpermuted HF checkpoints
};

struct LlamaConfig {
  std::string architecture = "llama";
  int64_t dim = 0;             // model width (hidden_size / embedding_length)
  int64_t hidden_dim = 0;      // feed-forward width (intermediate_size)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;      // < n_heads: grouped-query attention
  int64_t head_dim = 0;        // usually dim / n_heads, but configs may set it
  int64_t vocab_size = 0;
  int64_t context_length = 0;  // trained context
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  // Per-frequency divisors (head_dim / 2 of them) from LLaMA-3 rope scaling; empty means none.
  std::vector<float> rope_freq_factors;
  bool tied_embeddings = false;  // output head shares token_embd

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// LLaMA-3 "rope_scaling": {"rope_type": "llama3", factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings} expressed as per-frequency divisors, as llama.cpp's rope_freqs.
std::vector<float> Llama3RopeFreqFactors(int64_t head_dim, float rope_theta, float factor, float low_freq_factor,
                                         float high_freq_factor, int64_t original_context);

// Throws mixq::Error naming `source` if the numbers cannot describe a model (zero or negative sizes,
// heads that do not divide, absurd sizes).
void ValidateConfig(const LlamaConfig& config, const std::string& source);

}  // namespace mixq
