// Hugging Face LLaMA folders: config.json + model.safetensors (or shards) + tokenizer.model.
#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "mixq/base/error.h"
#include "mixq/io/json_file.h"
#include "mixq/base/log.h"
#include "mixq/formats/convert.h"
#include "mixq/io/safetensors.h"
#include "mixq/model/model.h"

namespace mixq {
namespace {

using Json = nlohmann::json;

// Typed reads of config.json keys; every error names the file and the key.
class ConfigReader {
 public:
  ConfigReader(const Json& json, std::string path) : json_(json), path_(std::move(path)) {}

  const Json* Find(const char* key) const {
    const auto it = json_.find(key);
    return it == json_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t Int(const char* key) const {
    const Json* v = Find(key);
    if (v == nullptr) Fail("{}: missing key \"{}\" (an integer)", path_, key);
    return AsInt(*v, key);
  }
  int64_t Int(const char* key, int64_t fallback) const {
    const Json* v = Find(key);
    return v == nullptr ? fallback : AsInt(*v, key);
  }
  double Float(const char* key) const {
    const Json* v = Find(key);
    if (v == nullptr) Fail("{}: missing key \"{}\" (a number)", path_, key);
    return AsFloat(*v, key);
  }
  double Float(const char* key, double fallback) const {
    const Json* v = Find(key);
    return v == nullptr ? fallback : AsFloat(*v, key);
  }
  bool Bool(const char* key, bool fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) Fail("{}: key \"{}\" is {}, expected true or false", path_, key, v->dump());
    return v->get<bool>();
  }
  std::string String(const char* key, const std::string& fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) Fail("{}: key \"{}\" is {}, expected a string", path_, key, v->dump());
    return v->get<std::string>();
  }

  int64_t AsInt(const Json& v, const std::string& key) const {
    // Some exporters write 4096.0; accept a float only when it is a whole number.
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        Fail("{}: key \"{}\" is {}, too large", path_, key, v.dump());
      }
      return v.get<int64_t>();
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9e15) return static_cast<int64_t>(d);
    }
    Fail("{}: key \"{}\" is {}, expected an integer", path_, key, v.dump());
  }
  double AsFloat(const Json& v, const std::string& key) const {
    if (!v.is_number()) Fail("{}: key \"{}\" is {}, expected a number", path_, key, v.dump());
    return v.get<double>();
  }
  const std::string& path() const { return path_; }

 private:
  const Json& json_;
  std::string path_;
};

Json ReadJsonFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    Fail("'{}' does not exist: a Hugging Face model folder needs config.json beside its safetensors", path);
  }
  Json json = ReadJsonObjectFile(path);
  return json;
}

// Architectures whose checkpoints are plain LLaMA: same tensors, no biases, full attention, SwiGLU.
void CheckArchitecture(const ConfigReader& cfg) {
  std::string arch;
  if (const Json* archs = cfg.Find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      Fail("{}: key \"architectures\" is {}, expected a list of class names", cfg.path(), archs->dump());
    }
    arch = (*archs)[0].get<std::string>();
  }
  const std::string model_type = cfg.String("model_type", "");
  if (arch.empty() && model_type.empty()) {
    Fail("{}: neither \"architectures\" nor \"model_type\" is set; cannot tell whether this is a LLaMA model",
         cfg.path());
  }
  const bool llama = arch == "LlamaForCausalLM" || (arch.empty() && model_type == "llama");
  const bool mistral = arch == "MistralForCausalLM" || (arch.empty() && model_type == "mistral");
  if (!llama && !mistral) {
    const std::string why = arch == "Qwen2ForCausalLM" || model_type == "qwen2"
                                ? " (Qwen2 adds q/k/v projection biases, which mixq's LLaMA forward pass lacks)"
                                : "";
    Fail("{}: unsupported architecture '{}' (model_type '{}'){}; mixq loads LlamaForCausalLM, and "
         "MistralForCausalLM without sliding-window attention", cfg.path(), arch.empty() ? "?" : arch, model_type,
         why);
  }
  // Features a LLaMA-shaped config may switch on that the forward pass does not implement.
  if (cfg.Bool("attention_bias", false)) {
    Fail("{}: \"attention_bias\": true is not supported (mixq's attention has no biases)", cfg.path());
  }
  if (cfg.Bool("mlp_bias", false)) Fail("{}: \"mlp_bias\": true is not supported", cfg.path());
  const std::string act = cfg.String("hidden_act", "silu");
  if (act != "silu") Fail("{}: \"hidden_act\" is \"{}\", only \"silu\" (SwiGLU) is supported", cfg.path(), act);
  if (mistral) {
    const int64_t context = cfg.Int("max_position_embeddings");
    const int64_t window = cfg.Int("sliding_window", context);
    if (window < context) {
      Fail("{}: unsupported architecture: sliding_window {} < max_position_embeddings {} needs sliding-window "
           "attention, which mixq does not implement", cfg.path(), window, context);
    }
  }
}

void ReadRopeScaling(const ConfigReader& cfg, LlamaConfig& c) {
  const Json* scaling = cfg.Find("rope_scaling");
  if (scaling == nullptr) return;
  if (!scaling->is_object()) Fail("{}: key \"rope_scaling\" is {}, expected an object", cfg.path(), scaling->dump());
  const ConfigReader s(*scaling, cfg.path() + " rope_scaling");
  std::string type = s.String("rope_type", "");
  if (type.empty()) type = s.String("type", "");
  if (type.empty()) Fail("{}: \"rope_scaling\" has neither \"rope_type\" nor \"type\"", cfg.path());
  if (type == "default") return;
  if (type != "llama3") {
    Fail("{}: rope_scaling type \"{}\" is not supported (supported: \"llama3\")", cfg.path(), type);
  }
  const double factor = s.Float("factor");
  const double low = s.Float("low_freq_factor");
  const double high = s.Float("high_freq_factor");
  const int64_t original = s.Int("original_max_position_embeddings");
  if (!(factor > 0) || !(low > 0) || !(high > low) || original <= 0) {
    Fail("{}: rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
         "original_max_position_embeddings > 0; got {}, {}, {}, {}", cfg.path(), factor, low, high, original);
  }
  c.rope_freq_factors = Llama3RopeFreqFactors(c.head_dim, c.rope_theta, static_cast<float>(factor),
                                              static_cast<float>(low), static_cast<float>(high), original);
}

LlamaConfig ReadConfig(const std::string& path) {
  const Json json = ReadJsonFile(path);
  const ConfigReader cfg(json, path);
  CheckArchitecture(cfg);
  LlamaConfig c;
  c.architecture = "llama";
  c.dim = cfg.Int("hidden_size");
  c.hidden_dim = cfg.Int("intermediate_size");
  c.n_layers = cfg.Int("num_hidden_layers");
  c.n_heads = cfg.Int("num_attention_heads");
  c.n_kv_heads = cfg.Int("num_key_value_heads", c.n_heads);
  if (c.n_heads <= 0) Fail("{}: num_attention_heads is {}, expected > 0", path, c.n_heads);
  c.head_dim = cfg.Int("head_dim", c.dim / c.n_heads);
  c.vocab_size = cfg.Int("vocab_size");
  c.context_length = cfg.Int("max_position_embeddings");
  c.rms_eps = static_cast<float>(cfg.Float("rms_norm_eps"));
  c.rope_theta = static_cast<float>(cfg.Float("rope_theta", 10000.0));
  c.rope_style = RopeStyle::kHalf;
  c.tied_embeddings = cfg.Bool("tie_word_embeddings", false);
  ValidateConfig(c, path);
  ReadRopeScaling(cfg, c);
  return c;
}

// The Hugging Face name of each GGUF-named slot that ForEachTensor visits.
std::string HfTensorName(const std::string& gguf) {
  static const std::pair<const char*, const char*> kGlobal[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  for (const auto& [g, hf] : kGlobal) {
    if (gguf == g) return hf;
  }
  static const std::pair<const char*, const char*> kLayer[] = {
      {"attn_norm", "input_layernorm"},   {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
      {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},     {"ffn_down", "mlp.down_proj"},
  };
  // "blk.N.role.weight"
  const size_t dot1 = gguf.find('.');
  const size_t dot2 = gguf.find('.', dot1 + 1);
  const std::string layer = gguf.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string role = gguf.substr(dot2 + 1, gguf.rfind('.') - dot2 - 1);
  for (const auto& [g, hf] : kLayer) {
    if (role == g) return fmt::format("model.layers.{}.{}.weight", layer, hf);
  }
  Fail("internal: no Hugging Face name for '{}'", gguf);
}

// A float copy of a tensor (norms stored in F16/BF16; any tensor the mmap leaves misaligned).
std::unique_ptr<Tensor> ToOwnedF32(const TensorView& view, const std::string& name) {
  auto t = std::make_unique<Tensor>(Tensor::Zeros(name, DType::kF32, view.shape));
  RowToFloat(view.dtype, view.data, t->as<float>(), view.elements());
  return t;
}

std::unique_ptr<Tensor> OwnedCopy(const TensorView& view, const std::string& name) {
  auto t = std::make_unique<Tensor>(Tensor::Zeros(name, view.dtype, view.shape));
  std::memcpy(t->storage.data(), view.data, view.bytes);
  return t;
}

}  // namespace

Model LoadHuggingFaceModel(const std::string& dir, const LoadOptions& options) {
  namespace fs = std::filesystem;
  Model model;
  model.format = ModelFormat::kHuggingFace;
  model.path = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  model.config = ReadConfig(config_path);
  const LlamaConfig& c = model.config;

  const SafetensorsCheckpoint ckpt = OpenSafetensorsCheckpoint(dir);
  model.mappings = ckpt.Mappings();

  // Tensors the forward pass would silently ignore change the model's outputs: refuse them.
  for (const auto& [name, location] : ckpt.tensors) {
    if (name.ends_with(".bias")) {
      Fail("{}: tensor '{}' is a bias, which mixq's LLaMA forward pass does not have", ckpt.source, name);
    }
  }

  ForEachTensor(model.config, model.weights, [&](TensorSlot& slot) {
    const std::string hf_name = HfTensorName(slot.name);
    const SafetensorsFile* shard = nullptr;
    const SafetensorsTensorInfo* info = ckpt.FindTensor(hf_name, &shard);
    if (info == nullptr) {
      Fail("{}: tensor '{}' is missing (needed as {} {} by config.json)", ckpt.source, hf_name, slot.name,
           ShapeString(slot.shape));
    }
    if (info->shape != slot.shape) {
      Fail("{}: tensor '{}' has shape {}, but config.json implies {}", shard->path, hf_name, ShapeString(info->shape),
           ShapeString(slot.shape));
    }
    TensorView view = shard->View(*info);
    view.name = slot.name;
    const size_t element_bytes = view.dtype == DType::kF32 ? 4 : 2;
    if (slot.role == TensorRole::kNorm && view.dtype != DType::kF32) {
      // The forward pass reads norm weights as F32.
      model.owned_tensors.push_back(ToOwnedF32(view, slot.name));
      view = model.owned_tensors.back()->view();
    } else if (reinterpret_cast<uintptr_t>(view.data) % element_bytes != 0) {
      // A header whose length is not a multiple of 8 leaves the data misaligned; kernels expect aligned rows.
      Warn("{}: tensor '{}' is not aligned in the file; copying it", shard->path, hf_name);
      model.owned_tensors.push_back(OwnedCopy(view, slot.name));
      view = model.owned_tensors.back()->view();
    }
    *slot.view = view;
  });
  if (c.tied_embeddings) {
    model.weights.output = TensorView{};
    if (ckpt.FindTensor("lm_head.weight", nullptr) != nullptr) {
      Info("{}: tie_word_embeddings is true; lm_head.weight is ignored", config_path);
    }
  }

  model.metadata["general.name"] = fs::path(dir).filename().empty() ? fs::path(dir).parent_path().filename().string()
                                                                     : fs::path(dir).filename().string();
  ValidateModelWeights(model, options);

  std::string tokenizer_path = options.tokenizer_path;
  if (tokenizer_path.empty()) {
    const fs::path beside = fs::path(dir) / "tokenizer.model";
    std::error_code ec;
    if (fs::exists(beside, ec)) tokenizer_path = beside.string();
  }
  if (tokenizer_path.empty()) {
    if (options.require_tokenizer) {
      Fail("no tokenizer for '{}': put tokenizer.model (sentencepiece) in the folder, or pass --tokenizer FILE", dir);
    }
  } else if (options.require_tokenizer) {
    model.tokenizer = Tokenizer::FromSentencePieceFile(tokenizer_path);
  } else {
    // Callers that can work without a tokenizer (describing a model, scoring token ids) get a warning.
    try {
      model.tokenizer = Tokenizer::FromSentencePieceFile(tokenizer_path);
    } catch (const Error& e) {
      Warn("{}; continuing without a tokenizer", e.what());
    }
  }
  return model;
}

}  // namespace mixq
