// Calibration: windows sampled from text and JSONL, the activation statistics checked against a direct
// computation, the statistics file (mixq's, llama.cpp's imatrix GGUF and legacy .dat) read back or refused
// by name, and imatrix-weighted quantization beating RTN on held-out text.
#include "mixq/quant/calibration.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/eval/kld.h"
#include "mixq/eval/perplexity.h"
#include "mixq/io/gguf.h"
#include "mixq/kernels/ops.h"
#include "mixq/model/forward.h"
#include "mixq/quant/quantize_model.h"
#include "stories_fixture.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories;
using testing::StoriesText;
using testing::TempPath;
const auto& CalibrationFile = testing::StoriesCalibrationFile;
const auto& HeldOutText = testing::StoriesHeldOutText;
using testing::Stories260KPath;

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(CalibrationWindowsTest, SeededWindowsOfCtxTokensStartingWithBos) {
  CalibrationOptions o{CalibrationFile(), 16, 64, 7};
  const auto a = SampleCalibrationWindows(Stories(), o);
  const auto b = SampleCalibrationWindows(Stories(), o);
  ASSERT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 64u);
    EXPECT_EQ(w[0], Stories().tokenizer.bos());
  }
  o.seed = 8;
  EXPECT_NE(SampleCalibrationWindows(Stories(), o), a);
  // The windows are pieces of the tokenized text, in order.
  const std::vector<int32_t> stream =
      Stories().tokenizer.Encode(StoriesText().substr(0, testing::kStoriesCalibrationBytes), true);
  const auto it = std::search(stream.begin(), stream.end(), a[3].begin() + 1, a[3].end());
  EXPECT_NE(it, stream.end());
}

TEST(CalibrationWindowsTest, JsonlDocumentsAndBadInput) {
  const std::string jsonl = TempPath("calib.jsonl");
  std::string lines;
  for (int i = 0; i < 40; ++i) lines += R"({"text": "Once upon a time there was a little girl named Lily."})" "\n";
  WriteFile(jsonl, lines);
  const auto w = SampleCalibrationWindows(Stories(), {jsonl, 4, 32, 0});
  EXPECT_EQ(w.size(), 4u);

  WriteFile(jsonl, "{\"text\": \"fine\"}\n{\"body\": 3}\n");
  try {
    SampleCalibrationWindows(Stories(), {jsonl, 4, 32, 0});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calib.jsonl:2"), std::string::npos) << e.what();
  }
  const std::string tiny = TempPath("tiny.txt");
  WriteFile(tiny, "Hi.");
  EXPECT_THROW(SampleCalibrationWindows(Stories(), {tiny, 4, 512, 0}), Error);
  EXPECT_THROW(SampleCalibrationWindows(Stories(), {CalibrationFile(), 4, 1, 0}), Error);  // --ctx 1
  EXPECT_THROW(SampleCalibrationWindows(Stories(), {CalibrationFile(), 0, 64, 0}), Error);  // --samples 0
}

// The statistics of layer 0's q projection equal a direct computation: its input is RMSNorm of the
// token embeddings, so it needs no forward pass to check.
TEST(CalibrationStatsTest, MatchesDirectComputation) {
  const Model& m = Stories();
  const auto windows = SampleCalibrationWindows(m, {CalibrationFile(), 8, 64, 1});
  const CalibrationStats stats = CollectCalibrationStats(m, windows, "calib");
  EXPECT_EQ(stats.linears.size(), 5u * 7u + 1u);  // 7 per block, and the (tied) head under token_embd
  const LinearStats* s = stats.Find("blk.0.attn_q.weight");
  ASSERT_NE(s, nullptr);
  const int64_t dim = m.config.dim;
  std::vector<double> sum2(dim, 0.0), sum_abs(dim, 0.0);
  std::vector<float> max_abs(dim, 0.0f), x(dim), xn(dim);
  for (const auto& w : windows) {
    for (int32_t token : w) {
      std::memcpy(x.data(), m.weights.token_embd.row(token), dim * sizeof(float));
      RmsNorm(x.data(), m.weights.layers[0].attn_norm.as<float>(), xn.data(), dim, m.config.rms_eps);
      for (int64_t j = 0; j < dim; ++j) {
        sum2[j] += static_cast<double>(xn[j]) * xn[j];
        sum_abs[j] += std::fabs(xn[j]);
        max_abs[j] = std::max(max_abs[j], std::fabs(xn[j]));
      }
    }
  }
  EXPECT_EQ(s->count, 8.0 * 64.0);
  for (int64_t j = 0; j < dim; ++j) {
    EXPECT_NEAR(s->in_sum2[j], sum2[j], 1e-6 * sum2[j]) << j;
    EXPECT_NEAR(s->in_sum_abs[j], sum_abs[j], 1e-6 * sum_abs[j]) << j;
    EXPECT_EQ(s->in_max_abs[j], max_abs[j]) << j;
  }
  EXPECT_EQ(s->token_max_summary[4], *std::max_element(max_abs.begin(), max_abs.end()));
  EXPECT_GT(s->MaxOutput(), 0.0f);
  EXPECT_EQ(stats.Find("token_embd.weight")->in_dim, dim);
  EXPECT_EQ(CheckCalibrationStats(stats, m), 35);
  EXPECT_FALSE(RankSpikes(stats).empty());
}

TEST(CalibrationStatsTest, FileRoundTripsAndLlamaCppImatrixReads) {
  const Model& m = Stories();
  CalibrationStats stats = CollectCalibrationStats(m, SampleCalibrationWindows(m, {CalibrationFile(), 4, 64, 1}), "d");
  const std::string path = TempPath("stats.gguf");
  SaveCalibrationStats(stats, path);
  const CalibrationStats back = LoadCalibrationStats(path);
  EXPECT_FALSE(back.from_llamacpp);
  ASSERT_EQ(back.linears.size(), stats.linears.size());
  for (const auto& [name, s] : stats.linears) {
    const LinearStats& b = back.linears.at(name);
    EXPECT_EQ(b.count, s.count);
    for (size_t j = 0; j < s.in_sum2.size(); ++j) {
      EXPECT_EQ(b.in_sum2[j], static_cast<float>(s.in_sum2[j]));
      EXPECT_EQ(b.in_max_abs[j], s.in_max_abs[j]);
    }
    EXPECT_EQ(b.out_max_abs, s.out_max_abs);
    EXPECT_EQ(b.token_max_summary, s.token_max_summary);
  }

  // A llama.cpp imatrix GGUF: in_sum2 [1, n] and counts [1] only.
  GgufWriter w;
  w.SetString("general.type", "imatrix");
  w.SetStringArray("imatrix.datasets", {"wiki"});
  w.SetUint32("imatrix.chunk_count", 10);
  w.SetUint32("imatrix.chunk_size", 512);
  std::vector<float> sum2(64, 2.0f), counts{4.0f};
  w.AddTensor("blk.0.attn_q.weight.in_sum2", DType::kF32, {1, 64}, sum2.data(), 256);
  w.AddTensor("blk.0.attn_q.weight.counts", DType::kF32, {1}, counts.data(), 4);
  w.Write(TempPath("llama-imatrix.gguf"));
  const CalibrationStats lc = LoadCalibrationStats(TempPath("llama-imatrix.gguf"));
  EXPECT_TRUE(lc.from_llamacpp);
  EXPECT_EQ(lc.dataset, "wiki");
  EXPECT_EQ(lc.Find("blk.0.attn_q.weight")->Importance(), std::vector<float>(64, 0.5f));
  EXPECT_EQ(CheckCalibrationStats(lc, m), 1);

  // The legacy .dat: int n; {int len, name, int ncall, int nval, float[nval]}; int chunk, int len, dataset.
  std::string dat;
  auto put = [&](int32_t v) { dat.append(reinterpret_cast<const char*>(&v), 4); };
  put(1);
  const std::string name = "blk.1.ffn_down.weight";
  put(static_cast<int32_t>(name.size()));
  dat += name;
  put(3);
  put(172);
  for (int j = 0; j < 172; ++j) {
    const float v = 3.0f * j;
    dat.append(reinterpret_cast<const char*>(&v), 4);
  }
  put(7);
  put(4);
  dat += "wiki";
  WriteFile(TempPath("legacy.dat"), dat);
  const CalibrationStats legacy = LoadCalibrationStats(TempPath("legacy.dat"));
  EXPECT_EQ(legacy.Find(name)->Importance()[5], 5.0f);
  EXPECT_EQ(legacy.dataset, "wiki");
  EXPECT_EQ(CheckCalibrationStats(legacy, m), 1);

  // Truncated .dat, and statistics whose width disagrees with the model's tensor.
  WriteFile(TempPath("cut.dat"), dat.substr(0, 100));
  EXPECT_THROW(LoadCalibrationStats(TempPath("cut.dat")), Error);
  std::string wrong = dat;
  std::memcpy(wrong.data() + 4 + 4 + name.size() + 4, "\x40\x00\x00\x00", 4);  // nval 64: ffn_down has 172
  wrong.resize(4 + 4 + name.size() + 8 + 64 * 4);
  WriteFile(TempPath("wrong.dat"), wrong);
  try {
    CheckCalibrationStats(LoadCalibrationStats(TempPath("wrong.dat")), m);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.1.ffn_down.weight"), std::string::npos) << e.what();
  }
  std::string negative = dat;
  const float minus = -1.0f;
  std::memcpy(negative.data() + 4 + 4 + name.size() + 8 + 4, &minus, 4);
  WriteFile(TempPath("negative.dat"), negative);
  EXPECT_THROW(LoadCalibrationStats(TempPath("negative.dat")), Error);
}

// imatrix-weighted scale search against plain RTN at the same bits, judged by KL divergence from FP32 on
// the held-out half. Measured (64 windows x 128 of the first half, evaluated with ctx 128): q4_0 0.130 ->
// 0.106, int4-g32 0.130 -> 0.118, int4-pc 0.178 -> 0.160, int2-g32 3.50 -> 3.33; int3-g32 0.612 -> 0.607
// (a near tie). The bound asks for a 5% gain where we saw 10-19%, and only "not worse" at int3.
TEST(CalibrationMethodTest, ImatrixBeatsRtnOnHeldOutText) {
  const Model& m = Stories();
  const CalibrationStats stats =
      CollectCalibrationStats(m, SampleCalibrationWindows(m, {CalibrationFile(), 64, 128, 0}), "calib");
  const std::vector<int32_t> tokens = TokenizeForPerplexity(m, HeldOutText());
  KldOptions ko;
  ko.ctx = 128;
  auto kld = [&](const std::string& format, QuantMethod method) {
    QuantizeOptions o;
    o.type = ParseWeightFormat(format);
    o.method = method;
    o.calib = &stats;
    const std::string path = TempPath(fmt::format("imatrix-{}-{}.gguf", format, QuantMethodName(method)));
    QuantizeModel(m, path, o);
    return EvaluateKld(m, LoadModel(path), tokens, ko).summary.kld.value;
  };
  for (const auto& [format, gain] : std::vector<std::pair<std::string, double>>{
           {"q4_0", 0.95}, {"int4-g32", 0.95}, {"int4-pc", 0.95}, {"int3-g32", 1.0}}) {
    const double rtn = kld(format, QuantMethod::kRtn);
    const double imatrix = kld(format, QuantMethod::kImatrix);
    RecordProperty("kld_rtn_" + format, std::to_string(rtn));
    RecordProperty("kld_imatrix_" + format, std::to_string(imatrix));
    EXPECT_LT(imatrix, gain * rtn) << format << ": rtn " << rtn << " imatrix " << imatrix;
  }
}

TEST(CalibrationMethodTest, ImatrixNeedsStatistics) {
  QuantizeOptions o;
  o.type = ParseWeightFormat("q4_0");
  o.method = QuantMethod::kImatrix;
  EXPECT_THROW(QuantizeModel(Stories(), TempPath("never.gguf"), o), Error);
}

}  // namespace
}  // namespace mixq
