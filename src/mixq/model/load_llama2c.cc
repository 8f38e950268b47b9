// llama2.c checkpoints: the legacy "v0" layout (a 7-int header, then fp32 tensors) and the "ak42" v1
// layout (a 256-byte header, norms first), with the tokenizer.bin found beside them.
#include <algorithm>
#include <cstring>
#include <filesystem>

#include "mixq/base/error.h"
#include "mixq/model/model.h"

namespace mixq {
namespace {

constexpr uint32_t kV1Magic = 0x616b3432;  // "ak42"
constexpr size_t kV0HeaderBytes = 7 * sizeof(int32_t);
constexpr size_t kV1HeaderBytes = 256;

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Hands out consecutive fp32 tensors of the file, checking each fits before the end.
class TensorCursor {
 public:
  TensorCursor(const MappedFile& file, size_t offset) : file_(file), offset_(offset) {}

  TensorView Next(const std::string& name, Shape shape) {
    const size_t bytes = static_cast<size_t>(ElementCount(shape)) * sizeof(float);
    if (offset_ + bytes > file_.size()) {
      Fail("'{}' is truncated: tensor '{}' {} needs bytes {}..{}, but the file has {} bytes", file_.path(), name,
           ShapeString(shape), offset_, offset_ + bytes, file_.size());
    }
    TensorView view{name, DType::kF32, std::move(shape), file_.data() + offset_, bytes};
    offset_ += bytes;
    return view;
  }
  void Skip(size_t bytes) { offset_ += bytes; }
  size_t offset() const { return offset_; }

 private:
  const MappedFile& file_;
  size_t offset_;
};

// Slices a stacked [L, rows, cols] llama2.c array into per-layer views.
std::vector<TensorView> SplitLayers(const TensorView& stacked, int64_t n_layers, const std::string& role) {
  std::vector<TensorView> layers;
  Shape layer_shape(stacked.shape.begin() + 1, stacked.shape.end());
  const size_t layer_bytes = stacked.bytes / static_cast<size_t>(n_layers);
  for (int64_t i = 0; i < n_layers; ++i) {
    layers.push_back(TensorView{"blk." + std::to_string(i) + "." + role, DType::kF32, layer_shape,
                                stacked.data + static_cast<size_t>(i) * layer_bytes, layer_bytes});
  }
  return layers;
}

std::string FindTokenizerBeside(const std::string& checkpoint) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(checkpoint).parent_path().empty() ? fs::path(".") : fs::path(checkpoint).parent_path();
  if (fs::exists(dir / "tokenizer.bin")) return (dir / "tokenizer.bin").string();
  std::vector<std::string> candidates;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("tok") && name.ends_with(".bin")) candidates.push_back(entry.path().string());
  }
  std::sort(candidates.begin(), candidates.end());
  return candidates.empty() ? "" : candidates.front();
}

}  // namespace

Model LoadLlama2cModel(const std::string& path, const LoadOptions& options) {
  Model model;
  model.format = ModelFormat::kLlama2c;
  model.path = path;
  auto file = std::make_shared<const MappedFile>(path);
  const MappedFile& f = *file;

  uint32_t magic = 0;
  if (f.size() >= sizeof magic) std::memcpy(&magic, f.data(), sizeof magic);
  const bool v1 = magic == kV1Magic;
  const size_t header_bytes = v1 ? kV1HeaderBytes : kV0HeaderBytes;
  if (f.size() < header_bytes) {
    Fail("'{}' is not a llama2.c checkpoint: {} bytes is shorter than its {}-byte header", path, f.size(),
         header_bytes);
  }
  Llama2cHeader h{};
  bool shared_classifier = false;
  if (v1) {
    int32_t version = 0;
    std::memcpy(&version, f.data() + 4, sizeof version);
    if (version != 1) Fail("'{}': llama2.c version {} is not supported (only v0 and v1 fp32)", path, version);
    std::memcpy(&h, f.data() + 8, sizeof h);
    shared_classifier = f.data()[8 + sizeof h] != std::byte{0};
  } else {
    std::memcpy(&h, f.data(), sizeof h);
    shared_classifier = h.vocab_size > 0;
    h.vocab_size = std::abs(h.vocab_size);
  }

  LlamaConfig& c = model.config;
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.n_heads > 0 ? h.dim / h.n_heads : 0;
  c.vocab_size = h.vocab_size;
  c.context_length = h.seq_len;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::kInterleaved;
  c.tied_embeddings = shared_classifier;
  try {
    ValidateConfig(c, path);
  } catch (const Error& e) {
    Fail("{} (is this really a llama2.c checkpoint? a GGUF file starts with \"GGUF\", a Hugging Face model "
         "is a folder)", e.what());
  }
  if (c.head_dim * c.n_heads != c.dim) Fail("'{}': dim {} is not a multiple of n_heads {}", path, c.dim, c.n_heads);

  // Every size the header implies, checked against the file before any view is made.
  const int64_t L = c.n_layers;
  const int64_t per_layer = 2 * c.dim + c.dim * c.q_dim() + 2 * c.kv_dim() * c.dim + c.q_dim() * c.dim +
                            3 * c.hidden_dim * c.dim;
  const int64_t rope_tables = c.context_length * c.head_dim;  // two tables of head_dim/2 each
  const int64_t floats = c.vocab_size * c.dim + L * per_layer + c.dim + (v1 ? 0 : rope_tables) +
                         (shared_classifier ? 0 : c.vocab_size * c.dim);
  const uint64_t expected_bytes = header_bytes + static_cast<uint64_t>(floats) * sizeof(float);
  if (f.size() < expected_bytes) {
    Fail("'{}' is truncated or its header is wrong: dims {}x{}x{} layers, vocab {} need {} bytes, the file "
         "has {}", path, c.dim, c.hidden_dim, L, c.vocab_size, expected_bytes, f.size());
  }

  LlamaWeights& w = model.weights;
  w.layers.resize(static_cast<size_t>(L));
  TensorCursor cursor(f, header_bytes);
  auto assign = [&](const std::vector<TensorView>& views, TensorView LayerWeights::*member) {
    for (int64_t i = 0; i < L; ++i) w.layers[static_cast<size_t>(i)].*member = views[static_cast<size_t>(i)];
  };
  auto stacked = [&](const char* role, Shape shape, TensorView LayerWeights::*member) {
    Shape full = {L};
    full.insert(full.end(), shape.begin(), shape.end());
    assign(SplitLayers(cursor.Next(role, full), L, role), member);
  };
  if (v1) {
    stacked("attn_norm.weight", {c.dim}, &LayerWeights::attn_norm);
    stacked("ffn_norm.weight", {c.dim}, &LayerWeights::ffn_norm);
    w.output_norm = cursor.Next("output_norm.weight", {c.dim});
    w.token_embd = cursor.Next("token_embd.weight", {c.vocab_size, c.dim});
  } else {
    w.token_embd = cursor.Next("token_embd.weight", {c.vocab_size, c.dim});
    stacked("attn_norm.weight", {c.dim}, &LayerWeights::attn_norm);
  }
  stacked("attn_q.weight", {c.q_dim(), c.dim}, &LayerWeights::wq);
  stacked("attn_k.weight", {c.kv_dim(), c.dim}, &LayerWeights::wk);
  stacked("attn_v.weight", {c.kv_dim(), c.dim}, &LayerWeights::wv);
  stacked("attn_output.weight", {c.dim, c.q_dim()}, &LayerWeights::wo);
  if (!v1) stacked("ffn_norm.weight", {c.dim}, &LayerWeights::ffn_norm);
  stacked("ffn_gate.weight", {c.hidden_dim, c.dim}, &LayerWeights::w_gate);
  stacked("ffn_down.weight", {c.dim, c.hidden_dim}, &LayerWeights::w_down);
  stacked("ffn_up.weight", {c.hidden_dim, c.dim}, &LayerWeights::w_up);
  if (!v1) {
    w.output_norm = cursor.Next("output_norm.weight", {c.dim});
    cursor.Skip(static_cast<size_t>(rope_tables) * sizeof(float));  // legacy RoPE tables, recomputed instead
  }
  if (!shared_classifier) w.output = cursor.Next("output.weight", {c.vocab_size, c.dim});

  model.mappings.push_back(std::move(file));
  model.metadata["general.name"] = std::filesystem::path(path).stem().string();
  ValidateModelWeights(model, options);

  std::string tokenizer_path = options.tokenizer_path.empty() ? FindTokenizerBeside(path) : options.tokenizer_path;
  if (tokenizer_path.empty()) {
    if (options.require_tokenizer) {
      Fail("no tokenizer for '{}': put tokenizer.bin (or tok*.bin) beside it, or pass --tokenizer FILE", path);
    }
  } else {
    model.tokenizer = Tokenizer::FromLlama2cFile(tokenizer_path, static_cast<int32_t>(c.vocab_size));
  }
  return model;
}

}  // namespace mixq
