// The Hugging Face loader: the real docs-5M folder, small generated folders (dtypes, tying, shards, rope
// scaling), and a mixq::Error naming the file, key or tensor for each kind of bad input.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/safetensors_fixture.h"
#include "mixq/base/error.h"
#include "mixq/formats/convert.h"
#include "mixq/model/forward.h"
#include "mixq/model/model.h"

namespace mixq {
namespace {

namespace fs = std::filesystem;
using testing::BuildSafetensors;
using testing::EncodeFloats;
using testing::FixtureTensor;
using Json = nlohmann::ordered_json;

std::string SharedModels() { return std::string(MIXQ_SOURCE_DIR) + "/../shared/models/"; }

LoadOptions NoTokenizer() {
  LoadOptions o;
  o.require_tokenizer = false;
  return o;
}

// A tiny LLaMA in Hugging Face layout: hidden 8, 2 layers, 2 heads of 4, 1 KV head, FFN 16, vocab 16.
struct TinyHf {
  Json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 8},
      {"intermediate_size", 16}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
      {"num_key_value_heads", 1}, {"vocab_size", 16}, {"max_position_embeddings", 32},
      {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
  };
  std::string linear_dtype = "F32";
  std::string norm_dtype = "F32";
  std::vector<FixtureTensor> tensors;

  // Fills `tensors` with seeded random weights for the current config (names and shapes as HF writes them).
  void MakeTensors() {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    auto add = [&](std::string name, Shape shape, const std::string& dtype, float mean) {
      std::vector<float> v(static_cast<size_t>(ElementCount(shape)));
      for (float& x : v) x = mean + normal(rng);
      tensors.push_back({std::move(name), dtype, std::move(shape), EncodeFloats(dtype, v)});
    };
    const int64_t d = config["hidden_size"], f = config["intermediate_size"], vocab = config["vocab_size"];
    const int64_t heads = config["num_attention_heads"];
    const int64_t kv = config.value("num_key_value_heads", heads);
    const int64_t hd = d / heads;
    add("model.embed_tokens.weight", {vocab, d}, linear_dtype, 0.0f);
    for (int l = 0; l < config["num_hidden_layers"].get<int>(); ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      add(p + "input_layernorm.weight", {d}, norm_dtype, 1.0f);
      add(p + "self_attn.q_proj.weight", {heads * hd, d}, linear_dtype, 0.0f);
      add(p + "self_attn.k_proj.weight", {kv * hd, d}, linear_dtype, 0.0f);
      add(p + "self_attn.v_proj.weight", {kv * hd, d}, linear_dtype, 0.0f);
      add(p + "self_attn.o_proj.weight", {d, heads * hd}, linear_dtype, 0.0f);
      add(p + "post_attention_layernorm.weight", {d}, norm_dtype, 1.0f);
      add(p + "mlp.gate_proj.weight", {f, d}, linear_dtype, 0.0f);
      add(p + "mlp.up_proj.weight", {f, d}, linear_dtype, 0.0f);
      add(p + "mlp.down_proj.weight", {d, f}, linear_dtype, 0.0f);
    }
    add("model.norm.weight", {d}, norm_dtype, 1.0f);
    if (!config.value("tie_word_embeddings", false)) add("lm_head.weight", {vocab, d}, linear_dtype, 0.0f);
  }

  FixtureTensor* Find(const std::string& name) {
    for (auto& t : tensors) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }

  // Writes config.json + model.safetensors (or two shards + index when `shards`) into `dir`.
  void Write(const fs::path& dir, bool shards = false) const {
    fs::create_directories(dir);
    testing::WriteText((dir / "config.json").string(), config.dump(1));
    if (!shards) {
      testing::WriteBytes((dir / "model.safetensors").string(), BuildSafetensors(tensors));
      return;
    }
    const size_t half = tensors.size() / 2;
    const std::vector<FixtureTensor> first(tensors.begin(), tensors.begin() + half);
    const std::vector<FixtureTensor> second(tensors.begin() + half, tensors.end());
    const char* names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    testing::WriteBytes((dir / names[0]).string(), BuildSafetensors(first));
    testing::WriteBytes((dir / names[1]).string(), BuildSafetensors(second));
    Json index;
    index["metadata"] = Json::object();
    for (size_t i = 0; i < tensors.size(); ++i) index["weight_map"][tensors[i].name] = names[i < half ? 0 : 1];
    testing::WriteText((dir / "model.safetensors.index.json").string(), index.dump());
  }
};

class HfModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("mixq_hf_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path Dir(const std::string& name) const { return root_ / name; }

  // Loading `dir` must throw a mixq::Error whose message holds every one of `parts`.
  static void ExpectLoadError(const fs::path& dir, std::initializer_list<std::string> parts,
                              const LoadOptions& options = NoTokenizer()) {
    try {
      LoadModel(dir.string(), options);
      ADD_FAILURE() << "no error loading " << dir;
    } catch (const Error& e) {
      for (const auto& part : parts) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "'" << part << "' not in: " << e.what();
      }
    }
  }

  // The tiny model with `edit` applied to its config and tensors, written to a fresh folder.
  fs::path Tiny(const std::string& name, const std::function<void(TinyHf&)>& edit = nullptr,
                bool make_tensors_after_edit = false) {
    TinyHf hf;
    if (!make_tensors_after_edit) hf.MakeTensors();
    if (edit) edit(hf);
    if (make_tensors_after_edit) hf.MakeTensors();
    hf.Write(Dir(name));
    return Dir(name);
  }

  fs::path root_;
};

std::vector<float> RunLogits(const Model& model, const std::vector<int32_t>& tokens) {
  InferenceState state = MakeInferenceState(model.config, 16, 8);
  const float* logits = Forward(model, state, tokens, 0, true);
  return std::vector<float>(logits, logits + tokens.size() * static_cast<size_t>(model.config.vocab_size));
}

TEST_F(HfModelTest, LoadsDocs5M) {
  const Model model = LoadModel(SharedModels() + "docs-5M", NoTokenizer());
  const LlamaConfig& c = model.config;
  EXPECT_EQ(model.format, ModelFormat::kHuggingFace);
  EXPECT_EQ(c.dim, 256);
  EXPECT_EQ(c.hidden_dim, 768);
  EXPECT_EQ(c.n_layers, 4);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 4096);
  EXPECT_EQ(c.context_length, 256);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.rope_style, RopeStyle::kHalf);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_TRUE(c.rope_freq_factors.empty());
  EXPECT_EQ(ComputeModelSize(model).parameters, 5507328);  // models/README.md
  // Weights are used in place: every view points into the one mapping, none was copied.
  ASSERT_EQ(model.mappings.size(), 1u);
  EXPECT_TRUE(model.owned_tensors.empty());
  const std::byte* begin = model.mappings[0]->data();
  const std::byte* end = begin + model.mappings[0]->size();
  ForEachTensor(c, model.weights, [&](const TensorSlot& slot) {
    EXPECT_TRUE(slot.view->data >= begin && slot.view->data + slot.view->bytes <= end) << slot.name;
  });
  EXPECT_NE(model.weights.output.data, model.weights.token_embd.data);
}

TEST_F(HfModelTest, Docs5MWithTokenizerWhenRequired) {
  // The tokenizer.model in the folder is used; this only passes once Tokenizer::FromSentencePieceFile exists.
  LoadOptions options;
  try {
    const Model model = LoadModel(SharedModels() + "docs-5M", options);
    ASSERT_TRUE(model.tokenizer.loaded());
    EXPECT_EQ(model.tokenizer.vocab().size(), 4096);
  } catch (const Error& e) {
    if (std::string(e.what()).find("not built yet") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
}

TEST_F(HfModelTest, HalfPrecisionNormsBecomeF32AndWeightsStayInPlace) {
  for (const char* dtype : {"F16", "BF16"}) {
    const fs::path dir = Tiny(std::string("tiny_") + dtype, [&](TinyHf& hf) {
      hf.linear_dtype = dtype;
      hf.norm_dtype = dtype;
    }, true);
    const Model model = LoadModel(dir.string(), NoTokenizer());
    const DType expected = std::string(dtype) == "F16" ? DType::kF16 : DType::kBF16;
    EXPECT_EQ(model.weights.layers[1].wq.dtype, expected);
    EXPECT_EQ(model.weights.output.dtype, expected);
    // 2 layers x 2 norms + the final norm, converted into owned F32 tensors.
    EXPECT_EQ(model.owned_tensors.size(), 5u);
    const TensorView& norm = model.weights.layers[0].ffn_norm;
    EXPECT_EQ(norm.dtype, DType::kF32);
    // The stored half values, widened exactly.
    TinyHf reference;
    reference.norm_dtype = dtype;
    reference.linear_dtype = dtype;
    reference.MakeTensors();
    const FixtureTensor* stored = reference.Find("model.layers.0.post_attention_layernorm.weight");
    std::vector<float> widened(8);
    RowToFloat(expected, stored->data.data(), widened.data(), 8);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(norm.as<float>()[i], widened[static_cast<size_t>(i)]) << dtype << " " << i;
    const auto logits = RunLogits(model, {1, 5, 9});
    for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST_F(HfModelTest, TiedEmbeddingsUseTheTokenTable) {
  const fs::path dir = Tiny("tied", [](TinyHf& hf) { hf.config["tie_word_embeddings"] = true; }, true);
  const Model model = LoadModel(dir.string(), NoTokenizer());
  EXPECT_TRUE(model.config.tied_embeddings);
  EXPECT_TRUE(model.weights.output.empty());
  EXPECT_EQ(model.weights.head().data, model.weights.token_embd.data);
}

TEST_F(HfModelTest, ShardedCheckpointGivesTheSameLogits) {
  TinyHf hf;
  hf.MakeTensors();
  hf.Write(Dir("single"));
  hf.Write(Dir("sharded"), /*shards=*/true);
  const Model single = LoadModel(Dir("single").string(), NoTokenizer());
  const Model sharded = LoadModel(Dir("sharded").string(), NoTokenizer());
  EXPECT_EQ(sharded.mappings.size(), 2u);
  const std::vector<int32_t> tokens = {1, 3, 15, 7, 0, 2};
  EXPECT_EQ(RunLogits(single, tokens), RunLogits(sharded, tokens));
}

TEST_F(HfModelTest, ConfigDefaultsAndOptionalKeys) {
  const fs::path dir = Tiny("defaults", [](TinyHf& hf) {
    hf.config.erase("num_key_value_heads");
    hf.config.erase("rope_theta");
    hf.config.erase("tie_word_embeddings");
    hf.config["head_dim"] = 4;
    hf.config["rope_scaling"] = nullptr;
  }, true);
  const Model model = LoadModel(dir.string(), NoTokenizer());
  EXPECT_EQ(model.config.n_kv_heads, 2);  // defaults to the number of heads
  EXPECT_EQ(model.config.head_dim, 4);
  EXPECT_FLOAT_EQ(model.config.rope_theta, 10000.0f);
  EXPECT_FALSE(model.config.tied_embeddings);
}

TEST_F(HfModelTest, Llama3RopeScalingBecomesFrequencyFactors) {
  const fs::path dir = Tiny("llama3", [](TinyHf& hf) {
    hf.config["rope_theta"] = 500000.0;
    hf.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8}};
  });
  const Model model = LoadModel(dir.string(), NoTokenizer());
  EXPECT_EQ(model.config.rope_freq_factors, Llama3RopeFreqFactors(4, 500000.0f, 8.0f, 1.0f, 4.0f, 8));
  ASSERT_EQ(model.config.rope_freq_factors.size(), 2u);
  EXPECT_NE(model.config.rope_freq_factors[1], 1.0f);  // the long wavelength is scaled
}

TEST_F(HfModelTest, MistralWithoutSlidingWindowLoads) {
  const fs::path dir = Tiny("mistral", [](TinyHf& hf) {
    hf.config["architectures"] = {"MistralForCausalLM"};
    hf.config["model_type"] = "mistral";
    hf.config["sliding_window"] = nullptr;
  });
  EXPECT_NO_THROW(LoadModel(dir.string(), NoTokenizer()));
  const fs::path windowed = Tiny("mistral_window", [](TinyHf& hf) {
    hf.config["architectures"] = {"MistralForCausalLM"};
    hf.config["sliding_window"] = 4;
  });
  ExpectLoadError(windowed, {"config.json", "sliding_window 4"});
}

TEST_F(HfModelTest, ConfigErrorsNameTheFileAndKey) {
  const fs::path missing = Dir("no_config");
  fs::create_directories(missing);
  testing::WriteBytes((missing / "model.safetensors").string(), BuildSafetensors({}));
  ExpectLoadError(missing, {"config.json", "does not exist"});

  const fs::path malformed = Tiny("malformed");
  testing::WriteText((malformed / "config.json").string(), "{\"hidden_size\": 8,");
  ExpectLoadError(malformed, {"config.json", "not valid JSON"});

  ExpectLoadError(Tiny("no_hidden", [](TinyHf& hf) { hf.config.erase("hidden_size"); }),
                  {"config.json", "\"hidden_size\""});
  ExpectLoadError(Tiny("no_layers", [](TinyHf& hf) { hf.config.erase("num_hidden_layers"); }),
                  {"config.json", "\"num_hidden_layers\""});
  ExpectLoadError(Tiny("string_vocab", [](TinyHf& hf) { hf.config["vocab_size"] = "16"; }),
                  {"config.json", "\"vocab_size\"", "expected an integer"});
  ExpectLoadError(Tiny("bool_eps", [](TinyHf& hf) { hf.config["rms_norm_eps"] = true; }),
                  {"config.json", "\"rms_norm_eps\"", "expected a number"});
  ExpectLoadError(Tiny("zero_heads", [](TinyHf& hf) { hf.config["num_attention_heads"] = 0; }),
                  {"config.json", "num_attention_heads"});
  ExpectLoadError(Tiny("bad_kv", [](TinyHf& hf) { hf.config["num_key_value_heads"] = 3; }),
                  {"config.json", "n_kv_heads"});
  ExpectLoadError(Tiny("qwen2", [](TinyHf& hf) {
                    hf.config["architectures"] = {"Qwen2ForCausalLM"};
                    hf.config["model_type"] = "qwen2";
                  }), {"config.json", "unsupported architecture 'Qwen2ForCausalLM'", "biases"});
  ExpectLoadError(Tiny("gpt2", [](TinyHf& hf) {
                    hf.config.erase("architectures");
                    hf.config["model_type"] = "gpt2";
                  }), {"config.json", "unsupported architecture", "gpt2"});
  ExpectLoadError(Tiny("linear_rope", [](TinyHf& hf) {
                    hf.config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
                  }), {"config.json", "rope_scaling type \"linear\" is not supported"});
  ExpectLoadError(Tiny("llama3_incomplete", [](TinyHf& hf) {
                    hf.config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
                  }), {"config.json", "\"low_freq_factor\""});
  ExpectLoadError(Tiny("attn_bias", [](TinyHf& hf) { hf.config["attention_bias"] = true; }),
                  {"config.json", "attention_bias"});
  ExpectLoadError(Tiny("gelu", [](TinyHf& hf) { hf.config["hidden_act"] = "gelu"; }),
                  {"config.json", "hidden_act", "gelu"});
}

TEST_F(HfModelTest, TensorErrorsNameTheFileAndTensor) {
  ExpectLoadError(Tiny("wrong_shape", [](TinyHf& hf) {
                    FixtureTensor* t = hf.Find("model.layers.1.self_attn.k_proj.weight");
                    t->shape = {8, 4};  // transposed: [kv_dim, hidden] is [4, 8]
                  }), {"model.safetensors", "'model.layers.1.self_attn.k_proj.weight'", "[8, 4]", "[4, 8]"});
  ExpectLoadError(Tiny("config_mismatch", [](TinyHf& hf) { hf.config["intermediate_size"] = 32; }),
                  {"model.safetensors", "'model.layers.0.mlp.gate_proj.weight'", "[16, 8]", "[32, 8]"});
  ExpectLoadError(Tiny("missing_tensor", [](TinyHf& hf) {
                    std::erase_if(hf.tensors, [](const FixtureTensor& t) { return t.name == "model.norm.weight"; });
                  }), {"model.safetensors", "'model.norm.weight'", "missing"});
  ExpectLoadError(Tiny("missing_head", [](TinyHf& hf) {
                    std::erase_if(hf.tensors, [](const FixtureTensor& t) { return t.name == "lm_head.weight"; });
                  }), {"'lm_head.weight'", "missing"});
  ExpectLoadError(Tiny("fp8", [](TinyHf& hf) { hf.Find("model.layers.0.mlp.up_proj.weight")->dtype = "F8_E4M3"; }),
                  {"model.safetensors", "'model.layers.0.mlp.up_proj.weight'", "F8_E4M3 is not supported"});
  ExpectLoadError(Tiny("bias", [](TinyHf& hf) {
                    hf.tensors.push_back({"model.layers.0.self_attn.q_proj.bias", "F32", {8},
                                          EncodeFloats("F32", std::vector<float>(8, 0.0f))});
                  }), {"model.safetensors", "'model.layers.0.self_attn.q_proj.bias'", "bias"});

  const fs::path truncated = Tiny("truncated");
  fs::resize_file(truncated / "model.safetensors", fs::file_size(truncated / "model.safetensors") - 100);
  ExpectLoadError(truncated, {"model.safetensors", "truncated"});

  const fs::path huge = Tiny("huge_header");
  testing::WriteBytes((huge / "model.safetensors").string(),
                      testing::RawSafetensors(std::string(16, ' '), {}));
  {
    std::fstream f(huge / "model.safetensors", std::ios::binary | std::ios::in | std::ios::out);
    const uint64_t n = 0xffffffffffull;
    f.write(reinterpret_cast<const char*>(&n), 8);
  }
  ExpectLoadError(huge, {"model.safetensors", "header length", "absurd"});

  const fs::path out_of_range = Tiny("offsets");
  testing::WriteBytes((out_of_range / "model.safetensors").string(),
                      testing::RawSafetensors(R"({"model.embed_tokens.weight": {"dtype": "F32", "shape": [16, 8],
                                                  "data_offsets": [0, 512]}})", std::vector<std::byte>(100)));
  ExpectLoadError(out_of_range, {"model.safetensors", "'model.embed_tokens.weight'", "past the end"});
}

TEST_F(HfModelTest, MissingTokenizerIsAnErrorWhenRequired) {
  const fs::path dir = Tiny("no_tokenizer");
  LoadOptions options;
  options.require_tokenizer = true;
  ExpectLoadError(dir, {"no tokenizer", "tokenizer.model"}, options);
  EXPECT_NO_THROW(LoadModel(dir.string(), NoTokenizer()));
}

}  // namespace
}  // namespace mixq
