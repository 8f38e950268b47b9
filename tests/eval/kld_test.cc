// KL divergence: per-row measures on hand-made distributions, llama.cpp's statistics, stories260K
// against itself and its F16 conversion, the base-logits file and its refusals.
#include "mixq/eval/kld.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/model/save_gguf.h"
#include "mixq/model/synth.h"
#include "cli_runner.h"
#include "test_paths.h"

namespace mixq {
namespace {

using testing::SharedPath;
using testing::Stories260KPath;

// Small windows keep each evaluation of stories260K to a fraction of a second: 2 chunks of 64 tokens
// score 2 * 31 = 62 positions (> 10, so every "±" is defined).
constexpr int64_t kCtx = 64;
constexpr int64_t kChunks = 2;

std::string TextPath() { return SharedPath("data/tinystories/TinyStories-valid.head30k.txt"); }

// A distribution given by its logits.
struct Dist {
  std::vector<float> logits;
  double log_normalizer;
  LogProbRow row() const { return {logits, log_normalizer}; }
  double log_p(size_t i) const { return logits[i] - log_normalizer; }
};
Dist FromLogits(std::vector<float> logits) {
  const double norm = LogNormalizer(logits);
  return {std::move(logits), norm};
}

KldOptions SmallOptions() {
  KldOptions o;
  o.ctx = kCtx;
  o.max_chunks = kChunks;
  return o;
}

// Runs `fn`, expecting a mixq::Error whose message holds every one of `needles`.
template <typename Fn>
void ExpectErrorMentioning(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected mixq::Error";
  } catch (const Error& e) {
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// ---- Hand-made distributions -------------------------------------------------------------------

TEST(KldRowTest, ThreeTokenSoftmaxesMatchClosedForm) {
  // p = softmax(1, 2, 3). With L = log(e + e^2 + e^3), log p_i = x_i - L, so against the uniform q,
  // KL = E_p[x] - L + log 3; against q = softmax(3, 2, 1) (same L), KL = E_p[x - y] = 2 E_p[x] - 4.
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0);
  const double sum = e1 + e2 + e3;
  const double mean_x = (1 * e1 + 2 * e2 + 3 * e3) / sum;  // 2.5752104...
  const double kl_uniform = mean_x - std::log(sum) + std::log(3.0);
  const double kl_reversed = 2 * mean_x - 4;
  EXPECT_NEAR(kl_uniform, 0.2662167068, 1e-9);  // the closed form itself, worked out by hand
  EXPECT_NEAR(kl_reversed, 1.1504207652, 1e-9);

  const Dist p = FromLogits({1, 2, 3});
  const Dist uniform = FromLogits({0, 0, 0});
  const Dist reversed = FromLogits({3, 2, 1});
  EXPECT_NEAR(p.log_p(2), 3 - std::log(sum), 1e-14);
  constexpr double kTolerance = 1e-14;  // double arithmetic on exact float logits
  RowComparison c = CompareRows(p.row(), uniform.row());
  EXPECT_NEAR(c.kld, kl_uniform, kTolerance);
  EXPECT_FALSE(c.same_top);  // uniform's first argmax is token 0, p's is token 2
  c = CompareRows(p.row(), reversed.row());
  EXPECT_NEAR(c.kld, kl_reversed, kTolerance);
  EXPECT_FALSE(c.same_top);
  c = CompareRows(p.row(), FromLogits({11, 12, 13}).row());  // a shift changes no probability
  EXPECT_NEAR(c.kld, 0.0, kTolerance);
  EXPECT_TRUE(c.same_top);
  c = CompareRows(p.row(), p.row());
  EXPECT_EQ(c.kld, 0.0);
}

TEST(KldRowTest, ZeroBaseProbabilityContributesNothingAndNonFiniteLogitsAreRefused) {
  const float inf = std::numeric_limits<float>::infinity();
  const Dist base = FromLogits({0, 0, -inf});  // p = (1/2, 1/2, 0)
  const Dist quant = FromLogits({0, 0, 0});    // q = (1/3, 1/3, 1/3)
  EXPECT_NEAR(CompareRows(base.row(), quant.row()).kld, std::log(1.5), 1e-14);
  EXPECT_THROW(LogNormalizer(std::vector<float>{0, std::nanf(""), 1}), Error);
  EXPECT_THROW(LogNormalizer(std::vector<float>{0, inf, 1}), Error);
}

TEST(KldStatsTest, MomentsErrorsAndPercentilesFollowLlamaCpp) {
  KldStats stats;
  constexpr int kN = 20;
  for (int i = 0; i < kN; ++i) {
    // kld 0.00 .. 0.19; NLL(Q) alternates 1, 2; NLL(base) constant 1.5; top agrees for i < 15.
    stats.Add(i / 100.0, i < 15, -(1.0 + i % 2), -1.5);
  }
  const KldSummary s = stats.Summarize();
  EXPECT_EQ(s.count, kN);
  // Mean 0.095; population variance of 0..19 is (20^2 - 1) / 12 = 33.25, in units of 0.01^2.
  EXPECT_NEAR(s.kld.value, 0.095, 1e-12);
  EXPECT_NEAR(s.kld.error, 0.01 * std::sqrt(33.25 / 19), 1e-12);
  EXPECT_NEAR(s.kld_percentiles.median, 0.095, 1e-12);
  EXPECT_NEAR(s.kld_percentiles.p90, 0.171, 1e-12);   // 0.9 * 19 = 17.1
  EXPECT_NEAR(s.kld_percentiles.p99, 0.1881, 1e-12);  // 0.99 * 19 = 18.81
  EXPECT_NEAR(s.kld_percentiles.p1, 0.0019, 1e-12);
  EXPECT_EQ(s.kld_percentiles.maximum, 0.19);
  EXPECT_EQ(s.kld_percentiles.minimum, 0.0);
  // Mean NLL(Q) 1.5 with population variance 0.25; NLL(base) has no spread.
  const double se = std::sqrt(0.25 / 19);
  EXPECT_NEAR(s.ppl_quant.value, std::exp(1.5), 1e-12);
  EXPECT_NEAR(s.ppl_quant.error, std::exp(1.5) * se, 1e-12);
  EXPECT_NEAR(s.ppl_base.value, std::exp(1.5), 1e-12);
  EXPECT_EQ(s.ppl_base.error, 0.0);
  EXPECT_TRUE(std::isnan(s.log_ppl_correlation));  // undefined with a constant base
  EXPECT_NEAR(s.log_ppl_ratio.value, 0.0, 1e-12);
  EXPECT_NEAR(s.log_ppl_ratio.error, se, 1e-12);
  EXPECT_NEAR(s.ppl_ratio.value, 1.0, 1e-12);
  EXPECT_NEAR(s.ppl_diff.value, 0.0, 1e-12);
  EXPECT_NEAR(s.ppl_diff.error, std::exp(1.5) * se, 1e-12);
  // Δp alternates a = e^-1 - e^-1.5 and b = e^-2 - e^-1.5.
  const double a = std::exp(-1.0) - std::exp(-1.5), b = std::exp(-2.0) - std::exp(-1.5);
  EXPECT_NEAR(s.p_diff.value, (a + b) / 2, 1e-12);
  EXPECT_NEAR(s.p_diff_rms.value, std::sqrt((a * a + b * b) / 2), 1e-12);
  EXPECT_EQ(s.p_diff_percentiles.maximum, a);
  EXPECT_EQ(s.p_diff_percentiles.minimum, b);
  EXPECT_NEAR(s.same_top.value, 0.75, 1e-12);
  EXPECT_NEAR(s.same_top.error, std::sqrt(0.75 * 0.25 / 19), 1e-12);
}

TEST(KldStatsTest, TenValuesOrFewerHaveNoError) {
  KldStats stats;
  for (int i = 0; i < 10; ++i) stats.Add(i, true, -i, -1.0);
  const KldSummary s = stats.Summarize();
  EXPECT_EQ(s.kld.error, 0.0);
  EXPECT_EQ(s.ppl_quant.error, 0.0);
  EXPECT_NEAR(s.kld.value, 4.5, 1e-12);
}

TEST(KldStatsTest, PercentileInterpolatesAsLlamaCpp) {
  const std::vector<double> v = {1, 2, 4, 8};
  EXPECT_EQ(Percentile(v, 0.0), 1);
  EXPECT_EQ(Percentile(v, 1.0), 8);
  EXPECT_NEAR(Percentile(v, 0.5), 3.0, 1e-12);         // position 1.5
  EXPECT_NEAR(Percentile(v, 0.9), 4 + 0.7 * 4, 1e-12);  // position 2.7
}

// ---- Real models -------------------------------------------------------------------------------

class KldModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new Model(LoadModel(Stories260KPath()));
    dir_ = new std::string(::testing::TempDir() + "/kld_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    SaveGgufModel(*base_, *dir_ + "/stories260K-f16.gguf", DType::kF16);
    f16_ = new Model(LoadModel(*dir_ + "/stories260K-f16.gguf"));
    tokens_ = new std::vector<int32_t>(TokenizeForPerplexity(*base_, ReadFileToString(TextPath())));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete base_;
    delete f16_;
    delete dir_;
    delete tokens_;
  }

  static Model* base_;
  static Model* f16_;
  static std::string* dir_;
  static std::vector<int32_t>* tokens_;
};
Model* KldModelTest::base_ = nullptr;
Model* KldModelTest::f16_ = nullptr;
std::string* KldModelTest::dir_ = nullptr;
std::vector<int32_t>* KldModelTest::tokens_ = nullptr;

PerplexityResult Ppl(const Model& model, const std::vector<int32_t>& tokens) {
  PerplexityOptions o;
  o.ctx = kCtx;
  o.max_chunks = kChunks;
  o.progress = false;
  return EvaluatePerplexity(model, tokens, o);
}

TEST_F(KldModelTest, AgainstItselfIsExactlyZero) {
  const Model again = LoadModel(Stories260KPath());  // a second load, not the same object
  const KldResult r = EvaluateKld(*base_, again, *tokens_, SmallOptions());
  const KldSummary& s = r.summary;
  EXPECT_EQ(s.count, kChunks * (kCtx - 1 - kCtx / 2));
  EXPECT_EQ(s.kld.value, 0.0);
  EXPECT_EQ(s.kld_percentiles.maximum, 0.0);
  EXPECT_EQ(s.kld_percentiles.minimum, 0.0);
  EXPECT_EQ(s.same_top.value, 1.0);
  EXPECT_EQ(s.ppl_diff.value, 0.0);
  EXPECT_EQ(s.ppl_ratio.value, 1.0);
  EXPECT_EQ(s.p_diff_rms.value, 0.0);
  EXPECT_NEAR(s.log_ppl_correlation, 1.0, 1e-9);
  EXPECT_DOUBLE_EQ(s.ppl_base.value, Ppl(*base_, *tokens_).ppl);
}

TEST_F(KldModelTest, F16ConversionHasSmallPositiveKldAndTheSamePerplexities) {
  const KldResult r = EvaluateKld(*base_, *f16_, *tokens_, SmallOptions());
  const KldSummary& s = r.summary;
  // F16 weights move the logits by ~1e-3: a KLD well above rounding noise and far below a real
  // quantization's (~1e-2 for 4-bit types).
  EXPECT_GT(s.kld.value, 1e-8);
  EXPECT_LT(s.kld.value, 1e-3);
  EXPECT_GE(s.kld_percentiles.minimum, -1e-12);  // each position's KL is >= 0 up to double rounding
  EXPECT_GT(s.same_top.value, 0.95);
  const PerplexityResult base_ppl = Ppl(*base_, *tokens_);
  EXPECT_DOUBLE_EQ(s.ppl_base.value, base_ppl.ppl);
  EXPECT_NEAR(s.ppl_base.error, base_ppl.ppl_stderr, 1e-12 * base_ppl.ppl);
  EXPECT_DOUBLE_EQ(s.ppl_quant.value, Ppl(*f16_, *tokens_).ppl);
  EXPECT_NEAR(s.ppl_ratio.value, 1.0, 1e-2);
  EXPECT_GT(s.log_ppl_correlation, 0.99);
}

TEST_F(KldModelTest, SavedF32BaseLogitsReproduceTheResultExactly) {
  KldOptions save = SmallOptions();
  save.save_base_path = *dir_ + "/base-f32.kld";
  save.save_encoding = BaseLogitsEncoding::kF32;
  const KldSummary direct = EvaluateKld(*base_, *f16_, *tokens_, save).summary;
  const BaseLogitsHeader h = ReadBaseLogitsHeader(save.save_base_path);
  EXPECT_EQ(h.vocab, base_->config.vocab_size);
  EXPECT_EQ(h.ctx, kCtx);
  EXPECT_EQ(h.n_chunks, kChunks);
  EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(save.save_base_path)), h.file_bytes());
  const KldSummary reused = EvaluateKldFromFile(save.save_base_path, *f16_, *tokens_, SmallOptions()).summary;
  EXPECT_EQ(reused.count, direct.count);
  EXPECT_EQ(reused.kld.value, direct.kld.value);
  EXPECT_EQ(reused.kld.error, direct.kld.error);
  EXPECT_EQ(reused.kld_percentiles.maximum, direct.kld_percentiles.maximum);
  EXPECT_EQ(reused.kld_percentiles.median, direct.kld_percentiles.median);
  EXPECT_EQ(reused.ppl_base.value, direct.ppl_base.value);
  EXPECT_EQ(reused.ppl_quant.value, direct.ppl_quant.value);
  EXPECT_EQ(reused.p_diff_rms.value, direct.p_diff_rms.value);
  EXPECT_EQ(reused.same_top.value, direct.same_top.value);
}

TEST_F(KldModelTest, SavedF16BaseLogitsAreHalfTheSizeAndClose) {
  KldOptions save = SmallOptions();
  save.save_base_path = *dir_ + "/base-f16.kld";
  save.save_encoding = BaseLogitsEncoding::kF16;
  const KldSummary direct = EvaluateKld(*base_, *f16_, *tokens_, save).summary;
  const BaseLogitsHeader h = ReadBaseLogitsHeader(save.save_base_path);
  EXPECT_EQ(h.encoding, BaseLogitsEncoding::kF16);
  EXPECT_EQ(h.row_bytes(), 8 + 2 * base_->config.vocab_size);
  const KldSummary reused = EvaluateKldFromFile(save.save_base_path, *f16_, *tokens_, SmallOptions()).summary;
  // The target token's log-probability is stored exactly, so the perplexities and Δp do not move.
  EXPECT_EQ(reused.ppl_base.value, direct.ppl_base.value);
  EXPECT_EQ(reused.p_diff_rms.value, direct.p_diff_rms.value);
  // Float16 rows move each shifted log-probability s_i by d_i <= 2^-12 |s_i|. The decoded row is
  // renormalised, so the first-order change sum p_i d_i (log p_i - log q_i) is scaled by the tiny
  // log p - log q of an F16 conversion, and the second-order term ~ 1/2 E_p[d^2] is ~1e-8 * E_p[s^2]:
  // 1e-6 bounds both with a wide margin (observed: ~6e-8 at --ctx 512).
  constexpr double kF16FileKldTolerance = 1e-6;
  EXPECT_NEAR(reused.kld.value, direct.kld.value, kF16FileKldTolerance);
  EXPECT_GE(reused.kld.value, 0.0);
  // And against itself through an f16 file, the KLD is float16 rounding only.
  const KldSummary self = EvaluateKldFromFile(save.save_base_path, *base_, *tokens_, SmallOptions()).summary;
  EXPECT_LT(self.kld.value, kF16FileKldTolerance);
  EXPECT_GT(self.kld.value, 0.0);  // the file really is lossy: it was read, not bypassed
  EXPECT_EQ(self.ppl_diff.value, 0.0);
}

TEST_F(KldModelTest, MismatchedVocabulariesAreRefused) {
  SynthPreset preset{"tiny-300", base_->config};
  preset.config.vocab_size = 300;
  const Model other = MakeSyntheticModel(preset, 1, DType::kF32, 7);
  ExpectErrorMentioning([&] { EvaluateKld(*base_, other, *tokens_, SmallOptions()); },
                        {"vocabularies differ", "512", "300"});
}

TEST_F(KldModelTest, TokenizersWithDifferentPiecesAreRefused) {
  // The same vocabulary size, other pieces (the synthetic vocabulary): the cuts differ and so do the tokens'
  // meanings, so there is nothing to compare.
  const Model other = MakeSyntheticModel({"synthetic-512", base_->config}, 1, DType::kF32, 7);
  ASSERT_EQ(other.config.vocab_size, base_->config.vocab_size);
  ExpectErrorMentioning([&] { TokensForKld("Once upon a time", *base_, other); },
                        {"tokenizers differ", "vocabularies differ from piece"});
}

// docs-5M's tokenizer.model normalizes text (runs of spaces become one) and its GGUF conversion keeps the
// pieces but not the normalizer: the two cut such text differently over one vocabulary. KLD then scores
// QUANT on BASE's tokens, as llama.cpp does with the tokens saved beside its base logits.
TEST(KldTokensTest, OneVocabularyCutDifferentlyIsScoredOnBaseTokens) {
  const Model hf = LoadModel(SharedPath("models/docs-5M"));
  const std::string dir = ::testing::TempDir() + "/kld_tokens_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  SaveGgufModel(hf, dir + "/docs-5M.gguf", DType::kF32);
  const Model gguf = LoadModel(dir + "/docs-5M.gguf");
  std::filesystem::remove_all(dir);
  const std::string text = "The  model   reads text with runs of spaces.";
  const std::vector<int32_t> hf_tokens = TokenizeForPerplexity(hf, text);
  ASSERT_NE(hf_tokens, TokenizeForPerplexity(gguf, text)) << "the cuts must differ for this test to mean anything";
  std::string note;
  EXPECT_EQ(TokensForKld(text, hf, gguf, &note), hf_tokens);
  EXPECT_NE(note.find("same vocabulary"), std::string::npos) << note;
  EXPECT_NE(note.find("BASE's tokens"), std::string::npos) << note;
  // And the other way round: BASE's cut again, whichever side BASE is.
  EXPECT_EQ(TokensForKld(text, gguf, hf, &note), TokenizeForPerplexity(gguf, text));
  // One cut: no note.
  std::string none;
  EXPECT_EQ(TokensForKld("The model reads text.", hf, gguf, &none), TokenizeForPerplexity(hf, "The model reads text."));
  EXPECT_TRUE(none.empty()) << none;
}

TEST_F(KldModelTest, BaseLogitsFromOtherTextOrSettingsAreRefused) {
  KldOptions save = SmallOptions();
  save.save_base_path = *dir_ + "/refuse.kld";
  EvaluateKld(*base_, *base_, *tokens_, save);
  const std::string& path = save.save_base_path;

  // Other text: the same story file from its second sentence on.
  const std::string text = ReadFileToString(TextPath());
  const std::vector<int32_t> other = TokenizeForPerplexity(*base_, text.substr(text.find('.') + 1));
  ExpectErrorMentioning([&] { EvaluateKldFromFile(path, *f16_, other, SmallOptions()); }, {path, "other tokens"});

  KldOptions wider = SmallOptions();
  wider.ctx = 2 * kCtx;
  ExpectErrorMentioning([&] { EvaluateKldFromFile(path, *f16_, *tokens_, wider); }, {path, "--ctx 64"});

  KldOptions more = SmallOptions();
  more.max_chunks = kChunks + 1;
  ExpectErrorMentioning([&] { EvaluateKldFromFile(path, *f16_, *tokens_, more); }, {path, "--chunks 2"});

  SynthPreset preset{"tiny-300", base_->config};
  preset.config.vocab_size = 300;
  const Model small_vocab = MakeSyntheticModel(preset, 1, DType::kF32, 7);
  ExpectErrorMentioning([&] { EvaluateKldFromFile(path, small_vocab, *tokens_, SmallOptions()); },
                        {path, "512", "300"});
}

std::string ReadBytes(const std::string& path) { return ReadFileToString(path); }
void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST_F(KldModelTest, TruncatedOrCorruptBaseLogitsAreRefused) {
  KldOptions save = SmallOptions();
  save.save_base_path = *dir_ + "/good.kld";
  EvaluateKld(*base_, *base_, *tokens_, save);
  const std::string good = ReadBytes(save.save_base_path);

  const std::string truncated = *dir_ + "/truncated.kld";
  WriteBytes(truncated, good.substr(0, good.size() - 100));
  ExpectErrorMentioning([&] { EvaluateKldFromFile(truncated, *base_, *tokens_, SmallOptions()); },
                        {truncated, "truncated"});

  const std::string corrupt = *dir_ + "/corrupt.kld";
  std::string flipped = good;
  flipped[good.size() - 1000] ^= 0x10;  // inside the last chunk's rows
  WriteBytes(corrupt, flipped);
  ExpectErrorMentioning([&] { EvaluateKldFromFile(corrupt, *base_, *tokens_, SmallOptions()); },
                        {corrupt, "corrupt", "chunk 2"});

  std::string bad_header = good;
  bad_header[40] ^= 0x01;  // n_chunks
  WriteBytes(corrupt, bad_header);
  ExpectErrorMentioning([&] { ReadBaseLogitsHeader(corrupt); }, {corrupt, "header checksum"});

  const std::string not_kld = *dir_ + "/text.kld";
  WriteBytes(not_kld, ReadFileToString(TextPath()).substr(0, 200));
  ExpectErrorMentioning([&] { ReadBaseLogitsHeader(not_kld); }, {not_kld, "not a mixq base logits file"});
  ExpectErrorMentioning([&] { ReadBaseLogitsHeader(*dir_ + "/missing.kld"); }, {"missing.kld"});
}

// ---- The command -------------------------------------------------------------------------------

TEST_F(KldModelTest, CommandSavesAndReusesBaseLogits) {
  const std::string saved = *dir_ + "/cli.kld";
  const std::string common = " -f " + TextPath() + " --ctx 64 --chunks 2";
  const testing::CliRun first = testing::RunMixq("kld " + Stories260KPath() + " " + *dir_ + "/stories260K-f16.gguf" + common +
                                 " --save-base " + saved + " --base-precision f32 --json");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("\"kld_percentiles\""), std::string::npos) << first.output;
  // QUANT alone with the file: --ctx and --chunks come from its header.
  const testing::CliRun second = testing::RunMixq("kld " + *dir_ + "/stories260K-f16.gguf -f " + TextPath() + " --base-logits " +
                                  saved + " --json");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  const auto kld_line = [](const std::string& out) {
    const size_t at = out.find("\"kld\":");
    return out.substr(at, out.find('}', at) - at);
  };
  EXPECT_EQ(kld_line(first.output), kld_line(second.output));
  const testing::CliRun text = testing::RunMixq("kld " + Stories260KPath() + " " + Stories260KPath() + common);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("Mean    KLD:   0.000000 ±   0.000000"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Same top p: 100.000 ± 0.000 %"), std::string::npos) << text.output;
  const testing::CliRun one = testing::RunMixq("kld " + Stories260KPath() + common);
  EXPECT_EQ(one.exit_code, 1) << one.output;
  EXPECT_NE(one.output.find("--base-logits"), std::string::npos) << one.output;
}

}  // namespace
}  // namespace mixq
