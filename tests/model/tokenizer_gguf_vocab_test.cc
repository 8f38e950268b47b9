// Tokenizers on real GGUF vocabularies: every test string of llama.cpp's ggml-vocab-*.gguf.inp must
// give the ids of its .out line (llama.cpp's test-tokenizer-0 tokenizes without BOS).
#include <chrono>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "test_paths.h"
#include "mixq/io/gguf.h"
#include "mixq/model/tokenizer.h"
#include "mixq/model/vocab_gguf.h"
#include "mixq/model/tokenizer_bpe.h"

namespace mixq {
namespace {

using ::mixq::testing::SharedPath;

Vocab VocabFromGguf(const std::string& path) { return ReadVocabFromGguf(ReadGguf(path)); }

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> ReadCases(const std::string& name) {
  const std::string inputs = ReadFileToString(SharedPath("data/tokenizer/" + name + ".inp"));
  const std::string outputs = ReadFileToString(SharedPath("data/tokenizer/" + name + ".out"));
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t start = 0, at; (at = inputs.find(separator, start)) != std::string::npos; start = at + separator.size()) {
    cases.push_back({inputs.substr(start, at - start), {}});
  }
  std::stringstream lines(outputs);
  size_t i = 0;
  for (std::string line; std::getline(lines, line); ++i) {
    if (i >= cases.size()) break;
    std::stringstream ids(line);
    for (int32_t id; ids >> id;) cases[i].ids.push_back(id);
  }
  EXPECT_EQ(i, cases.size()) << name << ": .out lines vs .inp strings";
  return cases;
}

class GgufVocabTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufVocabTest, ReproducesLlamaCppTokenizations) {
  const std::string name = fmt::format("ggml-vocab-{}.gguf", GetParam());
  const Tokenizer tok = Tokenizer::FromVocab(VocabFromGguf(SharedPath("data/tokenizer/" + name)));
  const auto cases = ReadCases(name);
  ASSERT_GT(cases.size(), 40u);
  int n_same = 0;
  for (const Case& c : cases) {
    const auto ids = tok.Encode(c.text, false);
    EXPECT_EQ(ids, c.ids) << name << " text: '" << c.text << "'";
    n_same += ids == c.ids;
    // Decoding gives the text back (llama-spm and phi-3 drop the dummy-prefix space at the start).
    EXPECT_EQ(tok.DecodeAll(ids), c.text) << name;
  }
  RecordProperty("lines_reproduced", n_same);
  std::printf("%s: %d of %zu lines reproduced\n", name.c_str(), n_same, cases.size());
  EXPECT_EQ(n_same, static_cast<int>(cases.size()));
}

INSTANTIATE_TEST_SUITE_P(LlamaCppVocabs, GgufVocabTest,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm"));

TEST(GgufVocabTest, BosComesFromTheVocabulary) {
  const Tokenizer tok = Tokenizer::FromVocab(VocabFromGguf(SharedPath("data/tokenizer/ggml-vocab-deepseek-llm.gguf")));
  EXPECT_EQ(tok.bos(), 100000);
  const auto ids = tok.Encode("Hello world", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 100000);
  EXPECT_EQ(tok.DecodeAll(ids), "Hello world");  // control tokens print nothing
}

// A user-defined token ("</s>" is one in phi-3) is cut out of the raw text before encoding, and the
// text after it gets sentencepiece's dummy-prefix space again, as in llama.cpp.
TEST(GgufVocabTest, UserDefinedTokensAreMatchedInText) {
  const Tokenizer tok = Tokenizer::FromVocab(VocabFromGguf(SharedPath("data/tokenizer/ggml-vocab-phi-3.gguf")));
  ASSERT_EQ(tok.vocab().types[2], TokenType::kUserDefined);
  const auto ids = tok.Encode("Hello</s>world", false);
  const auto hello = tok.Encode("Hello", false);
  const auto world = tok.Encode("world", false);
  std::vector<int32_t> expected = hello;
  expected.push_back(2);
  expected.insert(expected.end(), world.begin(), world.end());
  EXPECT_EQ(ids, expected);
  ASSERT_FALSE(world.empty());
  EXPECT_EQ(tok.vocab().pieces[world[0]].substr(0, 3), "\xE2\x96\x81");
}

// Byte-level BPE is lossless: 1.3 MB of Wikipedia text comes back byte for byte, in well under 10 s.
TEST(GgufVocabTest, Gpt2RoundTripsWikitextQuickly) {
  const Tokenizer tok = Tokenizer::FromVocab(VocabFromGguf(SharedPath("data/tokenizer/ggml-vocab-gpt-2.gguf")));
  const std::string text = ReadFileToString(SharedPath("data/wikitext2/wiki.test.raw"));
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.Encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tok.DecodeAll(ids), text);
  // GPT-2 averages about 4 bytes of English per token.
  EXPECT_GT(static_cast<double>(text.size()) / ids.size(), 3.0);
  EXPECT_LT(seconds, 10.0) << ids.size() << " tokens";
}

// The GPT-2 pattern on its own: contractions, optional leading space, whitespace runs that leave
// their last space to the next word.
TEST(BpePreTokenizerTest, SplitsLikeGpt2Regex) {
  Vocab vocab;
  vocab.model = "gpt2";
  vocab.pre = "gpt-2";
  vocab.pieces = {"a"};
  vocab.scores = {0};
  vocab.types = {TokenType::kNormal};
  const tokenizer_internal::BpeEncoder bpe(vocab);
  EXPECT_EQ(bpe.PreTokenize("Hello world's  123!!\n\n"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " 123", "!!", "\n\n"}));
  EXPECT_EQ(bpe.PreTokenize("a   b"), (std::vector<std::string>{"a", "  ", " b"}));
  EXPECT_EQ(bpe.PreTokenize(""), std::vector<std::string>{});
  // GPT-2's byte->unicode mapping: 'Ġ' (U+0120) is the space, 'Ċ' (U+010A) the newline.
  EXPECT_EQ(bpe.DecodePiece("\xC4\xA0Hello\xC4\x8A"), " Hello\n");
  vocab.pre = "no-such-pre";
  EXPECT_THROW(tokenizer_internal::BpeEncoder{vocab}, Error);
}

// Merges by rank on a hand-built vocabulary: "l o" first, then "lo w", so "low" is one token, and a
// byte with no piece is dropped as llama.cpp drops it.
TEST(BpeEncoderTest, MergesByRank) {
  Vocab vocab;
  vocab.model = "gpt2";
  vocab.pre = "gpt-2";
  vocab.pieces = {"l", "o", "w", "lo", "low", "\xC4\xA0", "\xC4\xA0low", "ow"};
  vocab.scores.assign(vocab.pieces.size(), 0.0f);
  vocab.types.assign(vocab.pieces.size(), TokenType::kNormal);
  vocab.merges = {"l o", "lo w", "\xC4\xA0 low", "o w"};
  vocab.bos_id = vocab.eos_id = vocab.unk_id = -1;
  const Tokenizer tok = Tokenizer::FromVocab(vocab);
  EXPECT_EQ(tok.Encode("low low", false), (std::vector<int32_t>{4, 6}));
  EXPECT_EQ(tok.Encode("owl", false), (std::vector<int32_t>{7, 0}));  // "o w" is the only merge here
  EXPECT_EQ(tok.DecodeAll({4, 6}), "low low");
  vocab.merges = {"lo"};
  EXPECT_THROW(Tokenizer::FromVocab(vocab), Error);
}

}  // namespace
}  // namespace mixq
