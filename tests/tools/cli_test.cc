// The mixq binary as a user runs it: exit codes and messages for good and bad input.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::CliPath;
using testing::SharedPath;
using testing::Stories260KPath;

TEST(CliTest, InfoDescribesStories260K) {
  const testing::CliRun r = testing::RunMixq("info " + Stories260KPath());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("blk.4.ffn_down.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("parameters:"), std::string::npos);
  const testing::CliRun j = testing::RunMixq("info --json " + Stories260KPath());
  EXPECT_EQ(j.exit_code, 0) << j.output;
  EXPECT_NE(j.output.find("\"bits_per_weight\": 32.0"), std::string::npos) << j.output;
}

TEST(CliTest, GreedyGenerationStreamsTheStory) {
  const testing::CliRun r = testing::RunMixq("generate " + Stories260KPath() + " --temp 0 -n 30");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos);
}

TEST(CliTest, MissingModelIsAnErrorNamingIt) {
  const testing::CliRun r = testing::RunMixq("info /nonexistent/model.gguf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("mixq: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/model.gguf"), std::string::npos) << r.output;
}

TEST(CliTest, WrongMagicGgufIsAnError) {
  const std::string path = ::testing::TempDir() + "/not_really.gguf";
  std::ofstream(path) << "this is not a model at all, just text";
  const testing::CliRun r = testing::RunMixq("info " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not_really.gguf"), std::string::npos) << r.output;
}

TEST(CliTest, OutOfRangeOptionsAreRejected) {
  for (const std::string& bad : {std::string("--temp -1"), std::string("--top-p 0"), std::string("--top-p 1.5")}) {
    const testing::CliRun r = testing::RunMixq("generate " + Stories260KPath() + " -n 1 " + bad);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.output.find(bad.substr(0, bad.find(' '))), std::string::npos) << r.output;
  }
  const testing::CliRun scoring = testing::RunMixq("ppl " + Stories260KPath() + " -f x --scoring other");
  EXPECT_NE(scoring.exit_code, 0);
  EXPECT_NE(scoring.output.find("--scoring"), std::string::npos) << scoring.output;
}

TEST(CliTest, ContextLargerThanTrainedWarnsAsLlamaCpp) {
  const testing::CliRun r = testing::RunMixq("ppl " + Stories260KPath() + " -f " +
                             SharedPath("data/tinystories/TinyStories-valid.head30k.txt") +
                             " --ctx 1024 --chunks 1 --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: --ctx 1024 is larger than the model's trained context (512)"), std::string::npos)
      << r.output;
}

TEST(CliTest, TextTooShortForTheContextIsAnError) {
  const std::string path = ::testing::TempDir() + "/short.txt";
  std::ofstream(path) << "Once upon a time.";
  const testing::CliRun r = testing::RunMixq("ppl " + Stories260KPath() + " -f " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--ctx 512 needs at least 1024"), std::string::npos) << r.output;
}


TEST(CliTest, QuantizePrintsATableAndTheFileRuns) {
  const std::string out = ::testing::TempDir() + "/cli-int4.gguf";
  const testing::CliRun r = testing::RunMixq("quantize " + Stories260KPath() + " " + out + " --type int4-g128");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("blk.4.ffn_down.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("int4-g128"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bits per weight"), std::string::npos) << r.output;
  const testing::CliRun info = testing::RunMixq("info " + out);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("int4-g128"), std::string::npos) << info.output;
  const testing::CliRun gen = testing::RunMixq("generate " + out + " --temp 0 -n 20");
  EXPECT_EQ(gen.exit_code, 0) << gen.output;
  const testing::CliRun json = testing::RunMixq("quantize " + Stories260KPath() + " " + out + " --policy q4_k_m --json");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"output_bits_per_weight\""), std::string::npos) << json.output;
}

TEST(CliTest, QuantizeErrorsNameTheOption) {
  const std::string out = ::testing::TempDir() + "/cli-bad.gguf";
  testing::CliRun r = testing::RunMixq("quantize " + Stories260KPath() + " " + out + " --type q9_k");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--type 'q9_k'"), std::string::npos) << r.output;
  r = testing::RunMixq("quantize " + Stories260KPath() + " " + out + " --policy /nonexistent.policy");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent.policy"), std::string::npos) << r.output;
  r = testing::RunMixq("quantize " + Stories260KPath() + " " + out + " --type q4_k --strict");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("token_embd.weight"), std::string::npos) << r.output;
  r = testing::RunMixq("quantize " + Stories260KPath() + " " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--type"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
  // Writing over the input is refused and leaves it intact.
  const std::string in = ::testing::TempDir() + "/cli-q8.gguf";
  ASSERT_EQ(testing::RunMixq("quantize " + Stories260KPath() + " " + in + " --type q8_0").exit_code, 0);
  r = testing::RunMixq("quantize " + in + " " + in + " --type q4_0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("refusing to overwrite"), std::string::npos) << r.output;
  EXPECT_EQ(testing::RunMixq("info " + in).exit_code, 0);
}

// `mixq bench --token-bound` on a model too large for the caches (a 2-layer SmolLM-135M shape in F32:
// 0.13 GiB, its head the tied 113 MiB embedding table): one fraction and one read rate per token, in
// JSON and in the text line. stories260K fits in the caches, so it gets the note instead.
TEST(CliTest, BenchHoldsEachTokenToAReadOfItsWeights) {
  const std::string model = ::testing::TempDir() + "/cli-smol2.gguf";
  const testing::CliRun synth = testing::RunMixq("synth --preset smollm-135m --layers 2 --type f32 " + model);
  ASSERT_EQ(synth.exit_code, 0) << synth.output;
  const testing::CliRun json =
      testing::RunMixq("bench " + model + " -t 2 -p 0 -n 5 -r 1 --no-bandwidth --token-bound --json", false);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const nlohmann::json j = nlohmann::json::parse(json.output);
  const nlohmann::json& b = j.at("token_bound");
  EXPECT_EQ(b.at("test"), "tg5 token by token");
  ASSERT_EQ(b.at("fraction_per_token").size(), 5u);
  ASSERT_EQ(b.at("read_gbs_per_token").size(), 5u);
  // A token reads what the read reads and computes besides, so it cannot be much faster than the read
  // beside it (1.5: room for timer noise on a short token); nor, on a machine with any memory, 100 times slower.
  for (double f : b.at("fraction_per_token")) EXPECT_TRUE(f > 0.01 && f < 1.5) << f;
  for (double g : b.at("read_gbs_per_token")) EXPECT_GT(g, 0.1);
  const testing::CliRun text = testing::RunMixq("bench " + model + " -t 2 -p 0 -n 4 -r 1 --no-bandwidth --token-bound");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("tg4 token by token, each against the faster of two reads"), std::string::npos)
      << text.output;
  const testing::CliRun small = testing::RunMixq("bench " + Stories260KPath() + " -p 0 -n 2 -r 1 --token-bound");
  ASSERT_EQ(small.exit_code, 0) << small.output;
  EXPECT_NE(small.output.find("no token is held to a memory read"), std::string::npos) << small.output;
  std::filesystem::remove(model);
}

}  // namespace
}  // namespace mixq
