// The key/value cache of a LLaMA model: per layer, one float row of kv_dim per position.
//
// Layout: keys and values are each [n_layers, capacity, kv_dim] float32, position-major so that
// appending a batch of tokens is one contiguous write. Compressed and paged caches (kv/) replace this
// struct's storage, not the attention code's view of it: attention reads rows through key()/value().
#pragma once

#include <cstdint>

#include "mixq/base/aligned_buffer.h"
#include "mixq/model/config.h"

namespace mixq {

struct KvCache {
  int64_t n_layers = 0;
  int64_t capacity = 0;  // positions
  int64_t kv_dim = 0;
  AlignedBuffer keys;    // [n_layers, capacity, kv_dim]
  AlignedBuffer values;  // [n_layers, capacity, kv_dim]

  float* key(int64_t layer, int64_t pos) { return keys.as<float>() + (layer * capacity + pos) * kv_dim; }
  float* value(int64_t layer, int64_t pos) { return values.as<float>() + (layer * capacity + pos) * kv_dim; }
  const float* key(int64_t layer, int64_t pos) const {
    return keys.as<float>() + (layer * capacity + pos) * kv_dim;
  }
  const float* value(int64_t layer, int64_t pos) const {
    return values.as<float>() + (layer * capacity + pos) * kv_dim;
  }
  int64_t bytes() const { return static_cast<int64_t>(keys.size() + values.size()); }
};

KvCache MakeKvCache(const LlamaConfig& config, int64_t capacity);

}  // namespace mixq
