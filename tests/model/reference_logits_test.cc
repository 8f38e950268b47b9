// mixq's forward pass against the independent float64 NumPy reference (scripts/reference_logits.py).
//
// Agreement is judged per position: max_j |mixq_j - ref_j| <= kRelTol * max_j |ref_j| over the vocabulary,
// i.e. the worst logit error relative to the largest logit magnitude at that position.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mixq/model/forward.h"
#include "mixq/model/model.h"

namespace mixq {
namespace {

constexpr double kRelTol = 1e-4;
constexpr int kGoldenFormatVersion = 1;

std::string SharedModels() { return std::string(MIXQ_SOURCE_DIR) + "/../shared/models/"; }

struct Golden {
  nlohmann::json header;
  int64_t vocab_size = 0;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<float> logits;  // [positions, vocab]: prompt by prompt, position by position
};

Golden ReadGolden(const std::string& name) {
  const std::string path = std::string(MIXQ_SOURCE_DIR) + "/tests/golden/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path << " (regenerate with scripts/reference_logits.py)";
  Golden g;
  std::string line;
  std::getline(in, line);
  g.header = nlohmann::json::parse(line);
  EXPECT_EQ(g.header.at("format_version").get<int>(), kGoldenFormatVersion) << path;
  EXPECT_EQ(g.header.at("dtype").get<std::string>(), "float32") << path;
  g.vocab_size = g.header.at("vocab_size").get<int64_t>();
  g.prompts = g.header.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const int64_t positions = g.header.at("positions").get<int64_t>();
  g.logits.resize(static_cast<size_t>(positions * g.vocab_size));
  in.read(reinterpret_cast<char*>(g.logits.data()), static_cast<std::streamsize>(g.logits.size() * sizeof(float)));
  EXPECT_EQ(static_cast<size_t>(in.gcount()), g.logits.size() * sizeof(float)) << path << " is truncated";
  EXPECT_EQ(in.peek(), EOF) << path << " has bytes after its logits";
  int64_t counted = 0;
  for (const auto& p : g.prompts) counted += static_cast<int64_t>(p.size());
  EXPECT_EQ(counted, positions) << path;
  return g;
}

// The relative error of one position's logits, as defined at the top of this file.
double RelativeError(const float* got, const float* ref, int64_t n) {
  double max_err = 0.0, max_ref = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    max_err = std::max(max_err, std::abs(static_cast<double>(got[j]) - ref[j]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ref[j])));
  }
  return max_err / max_ref;
}

enum class Mode { kBatched, kSmallBatches, kDecode };
const char* ModeName(Mode m) {
  return m == Mode::kBatched ? "one batch" : m == Mode::kSmallBatches ? "batches of 3" : "token by token";
}

void CompareAgainstGolden(const Model& model, const Golden& golden, const std::string& label) {
  ASSERT_EQ(model.config.vocab_size, golden.vocab_size);
  for (Mode mode : {Mode::kBatched, Mode::kSmallBatches, Mode::kDecode}) {
    double worst = 0.0;
    std::string worst_where;
    size_t offset = 0;
    for (size_t p = 0; p < golden.prompts.size(); ++p) {
      const std::vector<int32_t>& tokens = golden.prompts[p];
      const int64_t n = static_cast<int64_t>(tokens.size());
      InferenceState state = MakeInferenceState(model.config, 32, mode == Mode::kSmallBatches ? 3 : 64);
      std::vector<float> got(static_cast<size_t>(n * golden.vocab_size));
      if (mode == Mode::kDecode) {
        for (int64_t t = 0; t < n; ++t) {
          const float* logits = Forward(model, state, std::span(tokens).subspan(static_cast<size_t>(t), 1), t, false);
          std::copy_n(logits, golden.vocab_size, got.begin() + t * golden.vocab_size);
        }
      } else {
        const float* logits = Forward(model, state, tokens, 0, true);
        std::copy_n(logits, n * golden.vocab_size, got.begin());
      }
      for (int64_t t = 0; t < n; ++t) {
        const float* ref = golden.logits.data() + offset + static_cast<size_t>(t * golden.vocab_size);
        const double err = RelativeError(got.data() + t * golden.vocab_size, ref, golden.vocab_size);
        EXPECT_LE(err, kRelTol) << label << " (" << ModeName(mode) << "): prompt " << p << " position " << t;
        if (err > worst) {
          worst = err;
          worst_where = "prompt " + std::to_string(p) + " position " + std::to_string(t);
        }
      }
      offset += static_cast<size_t>(n * golden.vocab_size);
    }
    std::printf("[ reference ] %s, %s: max relative logit error %.3g (at %s), tolerance %.0e\n", label.c_str(),
                ModeName(mode), worst, worst_where.c_str(), kRelTol);
  }
}

TEST(ReferenceLogitsTest, Stories260KMatchesNumpyReference) {
  const Golden golden = ReadGolden("stories260K_logits.golden");
  ASSERT_EQ(golden.header.at("model").get<std::string>(), "stories260K/stories260K.bin");
  // Only the weights matter here: the checkpoint is linked into an empty folder so the loader finds no
  // tokenizer.bin beside it, keeping this test independent of the tokenizer.
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                    ("mixq_ref_stories_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path link = dir / "stories260K.bin";
  std::filesystem::remove(link);
  std::filesystem::create_symlink(SharedModels() + "stories260K/stories260K.bin", link);
  LoadOptions options;
  options.require_tokenizer = false;
  const Model model = LoadModel(link.string(), options);
  EXPECT_EQ(model.config.rope_style, RopeStyle::kInterleaved);
  CompareAgainstGolden(model, golden, "stories260K");
  std::filesystem::remove_all(dir);
}

TEST(ReferenceLogitsTest, Docs5MHuggingFaceMatchesNumpyReference) {
  const Golden golden = ReadGolden("docs-5M_logits.golden");
  ASSERT_EQ(golden.header.at("model").get<std::string>(), "docs-5M/model.safetensors");
  LoadOptions options;
  options.require_tokenizer = false;
  const Model model = LoadModel(SharedModels() + "docs-5M", options);
  EXPECT_EQ(model.format, ModelFormat::kHuggingFace);
  EXPECT_EQ(model.config.rope_style, RopeStyle::kHalf);
  CompareAgainstGolden(model, golden, "docs-5M");
}

}  // namespace
}  // namespace mixq
