// stories260K end to end: the published greedy generation, llama.cpp's perplexity, and bad checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "mixq/base/error.h"
#include "mixq/eval/perplexity.h"
#include "mixq/model/generate.h"
#include "mixq/model/model.h"
#include "mixq/base/file.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories260KPath;

TEST(Llama2cModelTest, LoadsStories260KHyperParameters) {
  const Model model = LoadModel(Stories260KPath());
  EXPECT_EQ(model.format, ModelFormat::kLlama2c);
  EXPECT_EQ(model.config.dim, 64);
  EXPECT_EQ(model.config.hidden_dim, 172);
  EXPECT_EQ(model.config.n_layers, 5);
  EXPECT_EQ(model.config.n_heads, 8);
  EXPECT_EQ(model.config.n_kv_heads, 4);
  EXPECT_EQ(model.config.vocab_size, 512);
  EXPECT_TRUE(model.config.tied_embeddings);
  EXPECT_EQ(model.tokenizer.vocab().size(), 512);
}

// llama2.c's doc/stories260K.md (quoted in ../shared/models/README.md): greedy generation from BOS.
TEST(Llama2cModelTest, GreedyGenerationReproducesPublishedText) {
  const Model model = LoadModel(Stories260KPath());
  Sampler sampler = MakeSampler({.temperature = 0.0f, .top_p = 1.0f, .seed = 0});
  std::vector<int32_t> generated;
  Generate(model, {model.tokenizer.bos()}, 160, sampler, [&](int32_t t) { generated.push_back(t); });
  std::vector<int32_t> with_bos = {model.tokenizer.bos()};
  with_bos.insert(with_bos.end(), generated.begin(), generated.end());
  const std::string text = model.tokenizer.DecodeAll(with_bos);
  const std::string published =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, "
      "she saw a big, red ball. She wanted to play with it, but it was too high.\n"
      "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, "
      "\"I want to play with your ball, but I can't find it.\"";
  ASSERT_GE(text.size(), published.size()) << text;
  EXPECT_EQ(text.substr(0, published.size()), published);
}

// llama.cpp build 34af94c's llama-perplexity on its own conversion of stories260K, --ctx 512:
// 7.0285 +/- 0.179 (from the issue). The computation is the same, so 0.1% agreement is required.
TEST(Llama2cModelTest, PerplexityMatchesLlamaCpp) {
  const Model model = LoadModel(Stories260KPath());
  const std::string text = ReadFileToString(SharedPath("data/tinystories/TinyStories-valid.head30k.txt"));
  ASSERT_FALSE(text.empty());
  PerplexityOptions options;
  options.ctx = 512;
  options.progress = false;
  const PerplexityResult r = EvaluatePerplexity(model, TokenizeForPerplexity(model, text), options);
  EXPECT_NEAR(r.ppl, 7.0285, 7.0285 * 1e-3);
  EXPECT_NEAR(r.ppl_stderr, 0.179, 0.0015);
  EXPECT_EQ(r.tokens_scored, r.n_chunks * 255);
}

TEST(Llama2cModelTest, GptqScoringScoresEveryTokenAfterTheFirst) {
  const Model model = LoadModel(Stories260KPath());
  const std::string text = ReadFileToString(SharedPath("data/tinystories/TinyStories-valid.head30k.txt"));
  PerplexityOptions options;
  options.ctx = 256;
  options.max_chunks = 4;
  options.scoring = PerplexityScoring::kGptq;
  options.progress = false;
  const PerplexityResult r = EvaluatePerplexity(model, TokenizeForPerplexity(model, text), options);
  EXPECT_EQ(r.n_chunks, 4);
  EXPECT_EQ(r.tokens_scored, 4 * 255);
  // Short-context tokens are scored too, so this is higher than llama.cpp's second-half-only number,
  // but it must still be a sane in-domain perplexity.
  EXPECT_GT(r.ppl, 5.0);
  EXPECT_LT(r.ppl, 15.0);
}

class Llama2cBadInputTest : public ::testing::Test {
 protected:
  std::string dir_ = ::testing::TempDir() + "/llama2c_bad";
  void SetUp() override {
    std::filesystem::create_directories(dir_);
    std::filesystem::copy_file(SharedPath("models/stories260K/tok512.bin"), dir_ + "/tok512.bin",
                               std::filesystem::copy_options::overwrite_existing);
  }
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  static std::string ErrorOf(const std::string& path, LoadOptions options = {}) {
    try {
      LoadModel(path, options);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(Llama2cBadInputTest, TruncatedCheckpointNamesFileAndSizes) {
  const std::string full = ReadFileToString(Stories260KPath());
  const std::string path = Write("truncated.bin", full.substr(0, full.size() / 2));
  const std::string error = ErrorOf(path);
  EXPECT_NE(error.find("truncated.bin"), std::string::npos) << error;
  EXPECT_NE(error.find("truncated"), std::string::npos) << error;
}

TEST_F(Llama2cBadInputTest, ShorterThanHeader) {
  const std::string error = ErrorOf(Write("tiny.bin", "abc"));
  EXPECT_NE(error.find("header"), std::string::npos) << error;
}

TEST_F(Llama2cBadInputTest, HeaderDimensionsThatDisagreeWithTheFile) {
  std::string bytes = ReadFileToString(Stories260KPath());
  int32_t huge_dim = 4096;
  bytes.replace(0, 4, reinterpret_cast<const char*>(&huge_dim), 4);
  const std::string error = ErrorOf(Write("bigdim.bin", bytes));
  EXPECT_NE(error.find("bigdim.bin"), std::string::npos) << error;
  EXPECT_NE(error.find("bytes"), std::string::npos) << error;
}

TEST_F(Llama2cBadInputTest, NegativeOrZeroDimensions) {
  std::string bytes = ReadFileToString(Stories260KPath());
  int32_t zero = 0;
  bytes.replace(8, 4, reinterpret_cast<const char*>(&zero), 4);  // n_layers
  const std::string error = ErrorOf(Write("zero_layers.bin", bytes));
  EXPECT_NE(error.find("n_layers"), std::string::npos) << error;
}

TEST_F(Llama2cBadInputTest, HeadsThatDoNotDivide) {
  std::string bytes = ReadFileToString(Stories260KPath());
  int32_t kv_heads = 3;
  bytes.replace(16, 4, reinterpret_cast<const char*>(&kv_heads), 4);
  const std::string error = ErrorOf(Write("kv3.bin", bytes));
  EXPECT_NE(error.find("n_kv_heads"), std::string::npos) << error;
}

TEST_F(Llama2cBadInputTest, MissingTokenizerIsAClearError) {
  const std::string lonely_dir = dir_ + "/lonely";
  std::filesystem::create_directories(lonely_dir);
  const std::string path = lonely_dir + "/model.bin";
  std::filesystem::copy_file(Stories260KPath(), path, std::filesystem::copy_options::overwrite_existing);
  const std::string error = ErrorOf(path);
  EXPECT_NE(error.find("--tokenizer"), std::string::npos) << error;
  LoadOptions no_tokenizer_needed;
  no_tokenizer_needed.require_tokenizer = false;
  EXPECT_EQ(ErrorOf(path, no_tokenizer_needed), "");
}

TEST_F(Llama2cBadInputTest, NanWeightsWarnOrAreRefused) {
  std::string bytes = ReadFileToString(Stories260KPath());
  const float nan = std::nanf("");
  bytes.replace(28 + 4 * 100, 4, reinterpret_cast<const char*>(&nan), 4);  // inside token_embd
  const std::string path = Write("nan.bin", bytes);
  EXPECT_EQ(ErrorOf(path), "");  // a warning only
  LoadOptions strict;
  strict.refuse_nonfinite = true;
  const std::string error = ErrorOf(path, strict);
  EXPECT_NE(error.find("token_embd.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("NaN"), std::string::npos) << error;
}

}  // namespace
}  // namespace mixq
