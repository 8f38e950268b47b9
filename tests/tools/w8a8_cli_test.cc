// `mixq quantize` with W8A8 and --spike-aware: option errors name the option, the report shows the
// activation mode, and the spike-aware recipe saved with --save-policy re-quantizes to identical bytes.
#include <gtest/gtest.h>

#include <string>

#include "cli_runner.h"
#include "mixq/base/file.h"
#include "w8a8_fixture.h"

namespace mixq {
namespace {

using testing::RunMixq;
using testing::Stories260KPath;
using testing::StoriesCalibrationStatsFile;
using testing::TempPath;

void ExpectFails(const std::string& args, const std::string& expected) {
  const testing::CliRun run = RunMixq("quantize " + Stories260KPath() + " " + TempPath("cli-never.gguf") + " " + args);
  EXPECT_NE(run.exit_code, 0) << args;
  EXPECT_NE(run.output.find("mixq: error:"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(expected), std::string::npos) << args << "\n" << run.output;
}

TEST(W8A8Cli, OptionErrorsNameTheOption) {
  const std::string calib = " --calib " + StoriesCalibrationStatsFile();
  ExpectFails("--type w8a8", "--calib");
  ExpectFails("--spike-aware", "--calib");
  ExpectFails("--spike-aware --spike-threshold 0.5" + calib, "--spike-threshold 0.5 is out of range");
  ExpectFails("--spike-aware --spike-threshold inf" + calib, "--spike-threshold");
  ExpectFails("--spike-aware --spike-type bf16" + calib, "--spike-type 'bf16'");
  ExpectFails("--type w8a8 --spike-threshold 3" + calib, "add --spike-aware");
  ExpectFails("--spike-aware --policy q4_k_m" + calib, "--spike-aware makes the policy");
  ExpectFails("--type w8a8-token --method gptq --data " + testing::StoriesCalibrationFile(), "--method rtn or imatrix");
}

TEST(W8A8Cli, ReportShowsActivationModes) {
  const testing::CliRun run = RunMixq("quantize " + Stories260KPath() + " " + TempPath("cli-w8a8.gguf") +
                                      " --type w8a8 --method rtn -t 1 --calib " + StoriesCalibrationStatsFile());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("activations"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("int8-tensor 0."), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("the embedding table is a lookup"), std::string::npos) << run.output;
}

TEST(W8A8Cli, SavedSpikePolicyRequantizesToIdenticalBytes) {
  const std::string calib = " -t 1 --calib " + StoriesCalibrationStatsFile();
  const std::string policy = TempPath("spike.policy");
  const std::string first = TempPath("cli-spike-1.gguf"), second = TempPath("cli-spike-2.gguf");
  // K = 2 keeps stories260K's two largest inputs, so the policy has rules, not just a default.
  const testing::CliRun a = RunMixq("quantize " + Stories260KPath() + " " + first +
                                    " --spike-aware --spike-threshold 2 --spike-type fp8 --save-policy " + policy + calib);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const std::string text = ReadFileToString(policy);
  EXPECT_NE(text.find("= fp8"), std::string::npos) << text;
  EXPECT_NE(text.find("default = w8a8"), std::string::npos) << text;
  EXPECT_NE(a.output.find("fp8 "), std::string::npos) << a.output;  // a tensor reported as fp8
  const testing::CliRun b = RunMixq("quantize " + Stories260KPath() + " " + second + " --policy " + policy + calib);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const std::string x = ReadFileToString(first), y = ReadFileToString(second);
  EXPECT_GT(x.size(), 100000u);
  EXPECT_TRUE(x == y) << "the saved policy quantized to different bytes";
}

}  // namespace
}  // namespace mixq
