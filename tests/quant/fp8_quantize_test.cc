// FP8 E4M3 end to end: `QuantizeModel` and `mixq quantize --type fp8` store every weight matrix of
// stories260K (any row length) and docs-5M as FP8, the files hold exactly the quantizer's rows, load and run,
// and perplexity stays within a stated margin of FP32.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "cli_runner.h"
#include "mixq/eval/perplexity.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/fp8.h"
#include "mixq/quant/quantize_model.h"
#include "stories_fixture.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories;
using testing::Stories260KPath;
using testing::StoriesText;
using testing::TempPath;

double StoriesPpl(const Model& model) {
  PerplexityOptions options;
  options.ctx = 256;
  options.progress = false;
  return EvaluatePerplexity(model, TokenizeForPerplexity(model, StoriesText()), options).ppl;
}

double StoriesF32Ppl() {
  static const double ppl = StoriesPpl(Stories());
  return ppl;
}

QuantizeReport Quantize(const Model& model, const std::string& format, const std::string& path) {
  QuantizeOptions options;
  options.type = ParseWeightFormat(format);
  EXPECT_TRUE(options.type.has_value()) << format;
  return QuantizeModel(model, path, options);
}

// Perplexity bounds over FP32 on stories260K (ctx 256), about 1.7x the measured loss, and each tensor's
// relative RMS error bound (docs/fp8.md). Measured: per channel ppl x1.0116, RMSE 2.1-2.3%; per tensor
// x1.0120, RMSE 2.3-2.6%. E4M3's 3 mantissa bits cost this tiny model ~1% (docs-5M: 0.1%, below).
struct Fp8Bounds {
  double ppl_ratio;
  double relative_rmse;
};
const std::map<std::string, Fp8Bounds> kStoriesBounds = {{"fp8", {1.02, 0.03}}, {"fp8-pt", {1.02, 0.03}}};

class StoriesFp8 : public ::testing::TestWithParam<std::string> {};

TEST_P(StoriesFp8, QuantizesLoadsAndRunsNearFp32) {
  const std::string format = GetParam();
  const Fp8Bounds bounds = kStoriesBounds.at(format);
  const std::string path = TempPath("stories-" + format + ".gguf");
  const QuantizeReport report = Quantize(Stories(), format, path);
  for (const TensorQuantReport& t : report.tensors) {
    if (t.name.ends_with("_norm.weight")) continue;
    EXPECT_EQ(t.format, format) << t.name;  // no fallback: FP8 holds rows of any length (64, 172, ...)
    EXPECT_LT(t.relative_rmse, bounds.relative_rmse) << t.name;
    RecordProperty("rmse_" + t.name, std::to_string(t.relative_rmse));
  }
  const Model q = LoadModel(path);
  const TensorView& down = q.weights.layers[2].w_down;
  ASSERT_EQ(down.dtype, DType::kFp8E4M3);
  ASSERT_EQ(down.bytes, static_cast<size_t>(down.rows()) * Fp8RowBytes(down.cols()));
  if (format == "fp8-pt") {
    for (int64_t r = 1; r < down.rows(); ++r) ASSERT_EQ(Fp8RowScale(down.row(r)), Fp8RowScale(down.row(0))) << r;
  }
  // The file holds exactly what QuantizeMatrix makes of the source rows.
  const TensorView& src = Stories().weights.layers[2].w_down;
  std::vector<float> x(static_cast<size_t>(src.elements()));
  for (int64_t r = 0; r < src.rows(); ++r) RowToFloat(src.dtype, src.row(r), x.data() + r * src.cols(), src.cols());
  std::vector<std::byte> expected(down.bytes);
  QuantizeMatrix(*ParseWeightFormat(format), x.data(), src.rows(), src.cols(), expected.data());
  EXPECT_EQ(std::memcmp(expected.data(), down.data, down.bytes), 0);

  const double ppl = StoriesPpl(q);
  const double ratio = ppl / StoriesF32Ppl();
  RecordProperty("ppl_ratio", std::to_string(ratio));
  EXPECT_LE(ratio, bounds.ppl_ratio) << format << ": ppl " << ppl << " vs F32 " << StoriesF32Ppl();
  EXPECT_GE(ratio, 0.998) << format << ": better than FP32 would mean a measurement bug";
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(Formats, StoriesFp8, ::testing::Values("fp8", "fp8-pt"), [](const auto& info) {
  std::string name = info.param;
  for (char& c : name) c = c == '-' ? '_' : c;
  return name;
});

// docs-5M (a Hugging Face model, 256-wide) in per-channel FP8: measured ratio 1.0006 over 8 chunks of 256.
TEST(Fp8Quantize, DocsModelStaysNearFp32) {
  const Model hf = LoadModel(SharedPath("models/docs-5M"));
  const std::string text = ReadFileToString(SharedPath("data/docs/docs-heldout.norm.txt")).substr(0, 60000);
  PerplexityOptions options;
  options.ctx = 256;
  options.max_chunks = 8;
  options.progress = false;
  const double f32 = EvaluatePerplexity(hf, TokenizeForPerplexity(hf, text), options).ppl;
  const std::string path = TempPath("docs-fp8.gguf");
  Quantize(hf, "fp8", path);
  const Model q = LoadModel(path);
  const double ppl = EvaluatePerplexity(q, TokenizeForPerplexity(q, text), options).ppl;
  RecordProperty("ppl_ratio", std::to_string(ppl / f32));
  EXPECT_LT(ppl / f32, 1.005) << ppl << " vs " << f32;
  EXPECT_GT(ppl / f32, 0.995);
  std::filesystem::remove(path);
}

TEST(Fp8Quantize, CliQuantizesToFp8) {
  const std::string out = TempPath("cli-fp8.gguf");
  const testing::CliRun r = testing::RunMixq("quantize " + Stories260KPath() + " " + out + " --type fp8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("blk.4.ffn_down.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fp8"), std::string::npos) << r.output;
  const testing::CliRun info = testing::RunMixq("info " + out);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("FP8_E4M3"), std::string::npos) << info.output;
  const testing::CliRun gen = testing::RunMixq("generate " + out + " --temp 0 -n 20");
  EXPECT_EQ(gen.exit_code, 0) << gen.output;
  std::filesystem::remove(out);
}

}  // namespace
}  // namespace mixq
