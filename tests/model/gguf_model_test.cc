// GGUF models: stories260K written by SaveGgufModel and loaded back gives the same logits; F16/BF16 close;
// q/k permutation, rope_freqs, tied heads; quantized, foreign and broken files refused by name; vocabularies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "mixq/base/error.h"
#include "mixq/io/gguf.h"
#include "mixq/model/forward.h"
#include "mixq/model/model.h"
#include "mixq/model/save_gguf.h"
#include "mixq/model/vocab_gguf.h"
#include "mixq/base/file.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories260KPath;

// Token sequences run through both models: BOS-led text ids, byte tokens, the last id, a long run.
std::vector<std::vector<int32_t>> Sequences(const Model& model) {
  std::vector<std::vector<int32_t>> seqs = {{1, 403, 261, 378, 13, 511}, {1}, {2, 3, 258, 259, 0}};
  std::vector<int32_t> run;
  for (int32_t i = 0; i < 40; ++i) run.push_back((i * 37 + 5) % static_cast<int32_t>(model.config.vocab_size));
  seqs.push_back(run);
  if (model.tokenizer.loaded()) seqs.push_back(model.tokenizer.Encode("Once upon a time, there was a cat.", true));
  return seqs;
}

std::vector<float> AllLogits(const Model& model, const std::vector<int32_t>& tokens) {
  InferenceState state = MakeInferenceState(model.config, 64, 16);
  const float* logits = Forward(model, state, tokens, 0, /*all_logits=*/true);
  return std::vector<float>(logits, logits + tokens.size() * static_cast<size_t>(model.config.vocab_size));
}

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

// Writes the llama.* keys of `c` and every tensor of `model` except `skip`, with `reshape` given a wrong shape.
void WriteEditedGguf(const Model& model, const std::string& path, const std::string& skip, const std::string& reshape) {
  const LlamaConfig& c = model.config;
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.context_length", static_cast<uint32_t>(c.context_length));
  w.SetUint32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  w.SetUint32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  w.SetUint32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  w.SetUint32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.SetUint32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", c.rms_eps);
  ForEachTensor(c, model.weights, [&](const TensorSlot& slot) {
    if (slot.name == skip) return;
    Shape shape = slot.view->shape;
    if (slot.name == reshape) shape = {shape[1], shape[0]};
    w.AddTensor(slot.name, slot.view->dtype, shape, slot.view->data, slot.view->bytes);
  });
  w.Write(path);
}

void ExpectLoadError(const std::string& path, const std::vector<std::string>& fragments) {
  LoadOptions options;
  options.require_tokenizer = false;
  try {
    LoadGgufModel(path, options);
    ADD_FAILURE() << path << " loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    for (const std::string& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << f << " not in: " << message;
  }
}

TEST(GgufModelTest, Stories260KF32RoundTripGivesBitIdenticalLogits) {
  const Model src = LoadModel(Stories260KPath());
  const std::string path = TempPath("stories260K-f32.gguf");
  SaveGgufModel(src, path, DType::kF32);
  const Model dst = LoadGgufModel(path, {});
  EXPECT_EQ(dst.format, ModelFormat::kGguf);
  EXPECT_EQ(dst.config.dim, 64);
  EXPECT_EQ(dst.config.hidden_dim, 172);
  EXPECT_EQ(dst.config.n_layers, 5);
  EXPECT_EQ(dst.config.n_heads, 8);
  EXPECT_EQ(dst.config.n_kv_heads, 4);
  EXPECT_EQ(dst.config.head_dim, 8);
  EXPECT_EQ(dst.config.vocab_size, 512);
  EXPECT_EQ(dst.config.context_length, 512);
  EXPECT_EQ(dst.config.rms_eps, src.config.rms_eps);
  EXPECT_EQ(dst.config.rope_theta, src.config.rope_theta);
  EXPECT_TRUE(dst.config.tied_embeddings);
  EXPECT_EQ(dst.config.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(dst.metadata.at("general.name"), "stories260K");
  // Views point into the file's mapping, not into copies.
  ASSERT_EQ(dst.mappings.size(), 1u);
  const MappedFile& map = *dst.mappings[0];
  EXPECT_GE(dst.weights.token_embd.data, map.data());
  EXPECT_LT(dst.weights.token_embd.data, map.data() + map.size());
  EXPECT_TRUE(dst.owned_tensors.empty());

  // The vocabulary survives the trip exactly.
  ASSERT_TRUE(dst.tokenizer.loaded());
  const Vocab& a = src.tokenizer.vocab();
  const Vocab& b = dst.tokenizer.vocab();
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.pieces, b.pieces);
  EXPECT_EQ(a.scores, b.scores);
  EXPECT_EQ(a.types, b.types);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_space_prefix, b.add_space_prefix);
  const std::string text = "Lily saw a big red ball in the park.";
  EXPECT_EQ(src.tokenizer.Encode(text, true), dst.tokenizer.Encode(text, true));

  // The file says what llama.cpp needs.
  const GgufFile f = ReadGguf(path);
  EXPECT_EQ(f.GetString("general.architecture"), "llama");
  EXPECT_EQ(f.GetInt("general.file_type"), 0);
  EXPECT_EQ(f.GetInt("llama.rope.dimension_count"), 8);
  EXPECT_EQ(f.GetInt("llama.vocab_size"), 512);
  EXPECT_EQ(f.Find("llama.attention.key_length"), nullptr);  // head_dim == dim / n_heads
  EXPECT_EQ(f.FindTensor("output.weight"), nullptr);         // tied
  EXPECT_EQ(f.tensors.size(), 2u + 9u * 5u);

  for (const auto& tokens : Sequences(src)) {
    SCOPED_TRACE(tokens.size());
    const std::vector<float> x = AllLogits(src, tokens);
    const std::vector<float> y = AllLogits(dst, tokens);
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
  }
}

// Measured on stories260K over 64 positions: F16 max |logit diff| 0.0113, BF16 0.133; argmax unchanged.
constexpr float kF16LogitTolerance = 0.02f;
constexpr float kBF16LogitTolerance = 0.25f;

TEST(GgufModelTest, F16AndBF16FilesGiveLogitsCloseToF32) {
  const Model src = LoadModel(Stories260KPath());
  for (const auto& [type, tolerance] : {std::pair{DType::kF16, kF16LogitTolerance}, std::pair{DType::kBF16, kBF16LogitTolerance}}) {
    SCOPED_TRACE(DTypeName(type));
    const std::string path = TempPath(std::string("stories260K-") + DTypeName(type) + ".gguf");
    SaveGgufModel(src, path, type);
    const Model dst = LoadGgufModel(path, {});
    EXPECT_EQ(dst.weights.layers[0].wq.dtype, type);
    EXPECT_EQ(dst.weights.layers[0].attn_norm.dtype, DType::kF32);
    EXPECT_EQ(dst.weights.token_embd.dtype, type);
    EXPECT_EQ(ReadGguf(path).GetInt("general.file_type"), type == DType::kF16 ? 1 : 32);
    float max_diff = 0.0f;
    int64_t same_argmax = 0, positions = 0;
    for (const auto& tokens : Sequences(src)) {
      const std::vector<float> x = AllLogits(src, tokens);
      const std::vector<float> y = AllLogits(dst, tokens);
      for (size_t i = 0; i < x.size(); ++i) max_diff = std::max(max_diff, std::abs(x[i] - y[i]));
      const size_t V = static_cast<size_t>(src.config.vocab_size);
      for (size_t t = 0; t < tokens.size(); ++t) {
        const auto xa = std::max_element(x.begin() + t * V, x.begin() + (t + 1) * V) - (x.begin() + t * V);
        const auto ya = std::max_element(y.begin() + t * V, y.begin() + (t + 1) * V) - (y.begin() + t * V);
        same_argmax += xa == ya;
        ++positions;
      }
    }
    RecordProperty(std::string("max_logit_diff_") + DTypeName(type), std::to_string(max_diff));
    std::printf("%s: max |logit diff| vs F32 = %.3g, same argmax at %lld of %lld positions\n", DTypeName(type),
                max_diff, static_cast<long long>(same_argmax), static_cast<long long>(positions));
    EXPECT_GT(max_diff, 0.0f);  // the weights really were rounded
    EXPECT_LT(max_diff, tolerance);
    EXPECT_GE(same_argmax, positions * 9 / 10);
  }
}

// Stories260K's q/k rows are interleaved; un-permuting them gives the Hugging Face layout of the same model.
std::unique_ptr<Tensor> UnpermuteRows(const TensorView& w, int64_t n_heads, int64_t head_dim) {
  auto t = std::make_unique<Tensor>(Tensor::Zeros(w.name, w.dtype, w.shape));
  const size_t row = w.row_bytes();
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t s = 0; s < 2; ++s) {
        std::memcpy(t->storage.data() + static_cast<size_t>(h * head_dim + s * half + j) * row,
                    w.data + static_cast<size_t>(h * head_dim + 2 * j + s) * row, row);
      }
    }
  }
  return t;
}

TEST(GgufModelTest, RotateHalfQkRowsArePermutedAsConvertHfToGgufDoes) {
  const Model original = LoadModel(Stories260KPath());
  Model hf = LoadModel(Stories260KPath());
  hf.config.rope_style = RopeStyle::kHalf;
  for (LayerWeights& l : hf.weights.layers) {
    hf.owned_tensors.push_back(UnpermuteRows(l.wq, hf.config.n_heads, hf.config.head_dim));
    l.wq = hf.owned_tensors.back()->view();
    hf.owned_tensors.push_back(UnpermuteRows(l.wk, hf.config.n_kv_heads, hf.config.head_dim));
    l.wk = hf.owned_tensors.back()->view();
  }
  ASSERT_NE(std::memcmp(hf.weights.layers[0].wq.data, original.weights.layers[0].wq.data,
                        original.weights.layers[0].wq.bytes), 0);
  const std::string path = TempPath("stories260K-from-hf-layout.gguf");
  SaveGgufModel(hf, path, DType::kF32);
  const Model dst = LoadGgufModel(path, {});
  EXPECT_EQ(dst.config.rope_style, RopeStyle::kInterleaved);
  for (size_t i = 0; i < dst.weights.layers.size(); ++i) {
    SCOPED_TRACE(i);
    const LayerWeights& a = original.weights.layers[i];
    const LayerWeights& b = dst.weights.layers[i];
    ASSERT_EQ(a.wq.bytes, b.wq.bytes);
    EXPECT_EQ(std::memcmp(a.wq.data, b.wq.data, a.wq.bytes), 0);
    EXPECT_EQ(std::memcmp(a.wk.data, b.wk.data, a.wk.bytes), 0);
    EXPECT_EQ(std::memcmp(a.wv.data, b.wv.data, a.wv.bytes), 0);  // v is never permuted
  }
  const std::vector<int32_t> tokens = Sequences(original).front();
  const std::vector<float> x = AllLogits(original, tokens);
  const std::vector<float> y = AllLogits(dst, tokens);
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
}

// A real Hugging Face checkpoint (rotate-half q/k, untied head, sentencepiece tokenizer) written as GGUF:
// the permuted file, run with interleaved RoPE, must give the checkpoint's own logits.
// Measured max |logit diff| on docs-5M: 3.3e-6 (Release), 1.1e-5 (ASan build); only float rounding differs.
constexpr float kHfToGgufLogitTolerance = 1e-4f;

TEST(GgufModelTest, HuggingFaceCheckpointConvertsWithTheSameLogits) {
  const Model hf = LoadModel(SharedPath("models/docs-5M"));
  ASSERT_EQ(hf.config.rope_style, RopeStyle::kHalf);
  const std::string path = TempPath("docs-5M-f32.gguf");
  SaveGgufModel(hf, path, DType::kF32);
  const Model gguf = LoadGgufModel(path, {});
  EXPECT_EQ(gguf.config.rope_style, RopeStyle::kInterleaved);
  EXPECT_FALSE(gguf.config.tied_embeddings);
  EXPECT_EQ(gguf.config.head_dim, 64);
  const std::string text = "The kernel uses a scheduler to decide which process runs next.";
  const std::vector<int32_t> tokens = hf.tokenizer.Encode(text, true);
  EXPECT_EQ(gguf.tokenizer.Encode(text, true), tokens);
  const std::vector<float> x = AllLogits(hf, tokens);
  const std::vector<float> y = AllLogits(gguf, tokens);
  float max_diff = 0.0f;
  for (size_t i = 0; i < x.size(); ++i) max_diff = std::max(max_diff, std::abs(x[i] - y[i]));
  std::printf("docs-5M HF -> GGUF: max |logit diff| = %.3g over %zu positions\n", max_diff, tokens.size());
  EXPECT_LT(max_diff, kHfToGgufLogitTolerance);
}

TEST(GgufModelTest, RopeFreqFactorsAndUntiedHeadRoundTrip) {
  Model src = LoadModel(Stories260KPath());
  src.config.rope_freq_factors = Llama3RopeFreqFactors(src.config.head_dim, 500000.0f, 8.0f, 1.0f, 4.0f, 8);
  src.config.rope_theta = 500000.0f;
  src.config.tied_embeddings = false;
  src.weights.output = src.weights.token_embd;
  src.metadata["mixq.note"] = "round trip";
  const std::string path = TempPath("stories260K-rope-freqs.gguf");
  SaveGgufModel(src, path, DType::kF32);
  const GgufFile f = ReadGguf(path);
  ASSERT_NE(f.FindTensor("rope_freqs.weight"), nullptr);
  ASSERT_NE(f.FindTensor("output.weight"), nullptr);
  EXPECT_EQ(f.GetString("mixq.note"), "round trip");
  const Model dst = LoadGgufModel(path, {});
  EXPECT_EQ(dst.config.rope_freq_factors, src.config.rope_freq_factors);
  EXPECT_FALSE(dst.config.tied_embeddings);
  EXPECT_EQ(dst.config.rope_theta, 500000.0f);
  EXPECT_EQ(dst.metadata.at("mixq.note"), "round trip");
  const std::vector<int32_t> tokens = Sequences(src)[3];
  const std::vector<float> x = AllLogits(src, tokens);
  const std::vector<float> y = AllLogits(dst, tokens);
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0);
}

TEST(GgufModelTest, RefusesToOverwriteItsInputAndUnsupportedTypes) {
  const std::string path = TempPath("stories260K-self.gguf");
  SaveGgufModel(LoadModel(Stories260KPath()), path, DType::kF32);
  const Model m = LoadGgufModel(path, {});
  EXPECT_THROW(SaveGgufModel(m, path, DType::kF16), Error);
  EXPECT_THROW(SaveGgufModel(m, TempPath("q.gguf"), DType::kQ4_0), Error);
  EXPECT_TRUE(ReadGguf(path).GetInt("general.file_type") == 0);  // untouched
}

TEST(GgufModelTest, LlamaCppSyntheticF32FileLoadsAndRuns) {
  const std::string path = SharedPath("data/ggml-reference/synth-f32.gguf");
  const Model m = LoadGgufModel(path, {});
  EXPECT_EQ(m.config.dim, 256);
  EXPECT_EQ(m.config.hidden_dim, 512);
  EXPECT_EQ(m.config.n_layers, 2);
  EXPECT_EQ(m.config.n_heads, 4);
  EXPECT_EQ(m.config.n_kv_heads, 2);
  EXPECT_EQ(m.config.vocab_size, 512);
  EXPECT_FALSE(m.config.tied_embeddings);
  ASSERT_TRUE(m.tokenizer.loaded());
  EXPECT_EQ(m.tokenizer.vocab().size(), 512);
  const std::vector<float> logits = AllLogits(m, {1, 10, 100});
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(GgufModelTest, ForeignArchitectureIsRefused) {
  ExpectLoadError(SharedPath("data/tokenizer/ggml-vocab-gpt-2.gguf"), {"general.architecture", "'gpt2'", "llama"});
}

TEST(GgufModelTest, MissingAndMisshapenTensorsAreNamed) {
  const Model src = LoadModel(Stories260KPath());
  const std::string missing = TempPath("missing.gguf");
  WriteEditedGguf(src, missing, "blk.3.ffn_up.weight", "");
  ExpectLoadError(missing, {"blk.3.ffn_up.weight", "missing"});
  const std::string misshapen = TempPath("misshapen.gguf");
  WriteEditedGguf(src, misshapen, "", "blk.1.attn_k.weight");
  ExpectLoadError(misshapen, {"blk.1.attn_k.weight", "[64, 32]", "[32, 64]"});
  const std::string wrong_ffn = TempPath("wrong_ffn.gguf");
  WriteEditedGguf(src, wrong_ffn, "", "blk.0.ffn_gate.weight");
  ExpectLoadError(wrong_ffn, {"blk.0.ffn_gate.weight", "[64, 172]", "[172, 64]"});
  // Written without tokenizer keys: an error unless a tokenizer file is given.
  const std::string no_vocab = TempPath("no_vocab.gguf");
  WriteEditedGguf(src, no_vocab, "", "");
  try {
    LoadGgufModel(no_vocab, {});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos) << e.what();
  }
  LoadOptions options;
  options.tokenizer_path = SharedPath("models/stories260K/tok512.bin");
  const Model with_tok = LoadGgufModel(no_vocab, options);
  EXPECT_TRUE(with_tok.tokenizer.loaded());
}

TEST(GgufModelTest, VocabulariesReadAndRoundTrip) {
  struct Expect {
    const char* name;
    const char* model;
    int32_t size, bos, eos;
    bool add_bos;
  };
  for (const Expect& e : {Expect{"llama-spm", "llama", 32000, 1, 2, true}, Expect{"phi-3", "llama", 32064, 1, 32000, true},
                          Expect{"gpt-2", "gpt2", 50257, 50256, 50256, false},
                          Expect{"deepseek-llm", "gpt2", 102400, 100000, 100001, true}}) {
    SCOPED_TRACE(e.name);
    const GgufFile f = ReadGguf(SharedPath(std::string("data/tokenizer/ggml-vocab-") + e.name + ".gguf"));
    ASSERT_TRUE(GgufHasVocab(f));
    const Vocab v = ReadVocabFromGguf(f);
    EXPECT_EQ(v.model, e.model);
    EXPECT_EQ(v.size(), e.size);
    EXPECT_EQ(v.bos_id, e.bos);
    EXPECT_EQ(v.eos_id, e.eos);
    EXPECT_EQ(v.add_bos, e.add_bos);
    EXPECT_EQ(v.types.size(), v.pieces.size());
    if (v.model == "gpt2") {
      EXPECT_FALSE(v.merges.empty());
    } else {
      EXPECT_EQ(v.scores.size(), v.pieces.size());
    }

    const std::string path = TempPath(std::string("vocab-") + e.name + ".gguf");
    GgufWriter w;
    WriteVocabToGguf(v, w);
    w.Write(path);
    const Vocab r = ReadVocabFromGguf(ReadGguf(path));
    EXPECT_EQ(r.model, v.model);
    EXPECT_EQ(r.pre, v.pre);
    EXPECT_EQ(r.pieces, v.pieces);
    EXPECT_EQ(r.scores, v.scores);
    EXPECT_EQ(r.types, v.types);
    EXPECT_EQ(r.merges, v.merges);
    EXPECT_EQ(r.bos_id, v.bos_id);
    EXPECT_EQ(r.eos_id, v.eos_id);
    EXPECT_EQ(r.unk_id, v.unk_id);
    EXPECT_EQ(r.pad_id, v.pad_id);
    EXPECT_EQ(r.add_bos, v.add_bos);
    EXPECT_EQ(r.add_eos, v.add_eos);
    EXPECT_EQ(r.add_space_prefix, v.add_space_prefix);
  }
}

TEST(GgufModelTest, BadVocabulariesAreRefusedByKey) {
  const std::string path = TempPath("bad-vocab.gguf");
  {
    GgufWriter w;
    w.SetString("tokenizer.ggml.model", "llama");
    w.SetStringArray("tokenizer.ggml.tokens", {"a", "b", "c"});
    w.SetFloat32Array("tokenizer.ggml.scores", {0.0f, 1.0f});
    w.Write(path);
  }
  try {
    ReadVocabFromGguf(ReadGguf(path));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.scores"), std::string::npos) << e.what();
  }
  {
    GgufWriter w;
    w.SetString("tokenizer.ggml.model", "llama");
    w.SetStringArray("tokenizer.ggml.tokens", {"a", "b", "c"});
    w.SetUint32("tokenizer.ggml.bos_token_id", 7);
    w.Write(path);
  }
  EXPECT_THROW(ReadVocabFromGguf(ReadGguf(path)), Error);
  {
    GgufWriter w;
    w.SetString("tokenizer.ggml.model", "llama");
    w.Write(path);
  }
  EXPECT_FALSE(GgufHasVocab(ReadGguf(path)));
  EXPECT_THROW(ReadVocabFromGguf(ReadGguf(path)), Error);
}

TEST(GgufModelTest, ConvertCommandWritesALoadableFile) {
  const std::string out = TempPath("cli-stories260K-bf16.gguf");
  std::filesystem::remove(out);
  const std::string log = TempPath("cli-convert.log");
  const std::string cmd = testing::CliPath() + " convert " + Stories260KPath() + " " + out + " --type bf16 > " + log + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string text = ReadFileToString(log);
  EXPECT_NE(text.find("47 tensors"), std::string::npos) << text;
  EXPECT_NE(text.find("bits per weight"), std::string::npos) << text;
  const Model m = LoadGgufModel(out, {});
  EXPECT_EQ(m.weights.layers[2].w_down.dtype, DType::kBF16);
  // Converting a file onto itself is refused with a clear message and leaves it intact.
  const std::string self = testing::CliPath() + " convert " + out + " " + out + " > " + log + " 2>&1";
  EXPECT_NE(std::system(self.c_str()), 0);
  const std::string text2 = ReadFileToString(log);
  EXPECT_NE(text2.find("refusing to overwrite"), std::string::npos) << text2;
  EXPECT_EQ(LoadGgufModel(out, {}).weights.layers[2].w_down.dtype, DType::kBF16);
  const std::string bad_type = testing::CliPath() + " convert " + Stories260KPath() + " " + out + " --type q4_k > " + log + " 2>&1";
  EXPECT_NE(std::system(bad_type.c_str()), 0);
}

}  // namespace
}  // namespace mixq
