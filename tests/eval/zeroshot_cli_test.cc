// `mixq eval` as a user runs it: a small seeded run, JSON, --compare against itself, and bad input.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::CliRun;
using testing::RunMixq;
using testing::SharedPath;
using testing::Stories260KPath;

std::string DataArg() { return " --data " + SharedPath("data"); }

TEST(ZeroShotCliTest, JsonRunOnASeededSubset) {
  const CliRun r = RunMixq("eval " + Stories260KPath() + " --task winogrande,lambada --limit 8 --seed 3 --json" + DataArg(),
                       /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j["tasks"].size(), 2u);
  EXPECT_EQ(j["tasks"][0]["task"], "winogrande");
  EXPECT_EQ(j["tasks"][0]["items"], 8);
  EXPECT_EQ(j["tasks"][0]["items_available"], 1267);
  EXPECT_TRUE(j["tasks"][1].contains("target_ppl"));
  EXPECT_GT(j["tasks"][1]["target_ppl"].get<double>(), 1.0);
  const double acc = j["average"]["acc"].get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
}

TEST(ZeroShotCliTest, CompareWithItselfHasZeroDelta) {
  const CliRun r = RunMixq("eval " + Stories260KPath() + " --task piqa --limit 6 --compare " + Stories260KPath() + DataArg());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("BASE  = "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("+0.0000 ± 0.0000"), std::string::npos) << r.output;
}

TEST(ZeroShotCliTest, BadTaskAndMissingDataAreErrors) {
  const CliRun bad_task = RunMixq("eval " + Stories260KPath() + " --task arc" + DataArg());
  EXPECT_EQ(bad_task.exit_code, 1);
  EXPECT_NE(bad_task.output.find("mixq: error:"), std::string::npos) << bad_task.output;
  EXPECT_NE(bad_task.output.find("\"arc\""), std::string::npos) << bad_task.output;
  const CliRun missing = RunMixq("eval " + Stories260KPath() + " --task piqa --data /nonexistent/data");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/data/piqa/valid.jsonl"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace mixq
