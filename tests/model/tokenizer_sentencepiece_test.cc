// Sentencepiece tokenizer.model files: libsentencepiece's encoding, the exported vocabulary, and our
// own SPM encoder on that vocabulary agreeing with libsentencepiece on normalized text.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "test_paths.h"
#include "mixq/model/tokenizer.h"
#include "mixq/model/tokenizer_sentencepiece.h"

namespace mixq {
namespace {

using ::mixq::testing::SharedPath;

const std::string kDocsModel = SharedPath("models/docs-5M/tokenizer.model");
const std::string kLlama2Model = SharedPath("models/llama2-tokenizer/tokenizer.model");

// Chunks of about `target_bytes`, cut at spaces (the space dropped), so each is a normalized text of
// its own: no leading, trailing or doubled spaces.
std::vector<std::string> SpaceChunks(const std::string& text, size_t target_bytes) {
  std::vector<std::string> chunks;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start + target_bytes);
    if (end == std::string::npos) end = text.size();
    chunks.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return chunks;
}

TEST(TokenizerSentencePieceTest, ExportsDocsVocabulary) {
  const Tokenizer tok = Tokenizer::FromSentencePieceFile(kDocsModel);
  const Vocab& v = tok.vocab();
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(kDocsModel).ok());
  ASSERT_EQ(v.size(), 4096);
  ASSERT_EQ(v.size(), sp.GetPieceSize());
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.types[0], TokenType::kUnknown);
  EXPECT_EQ(v.types[1], TokenType::kControl);
  EXPECT_EQ(v.types[2], TokenType::kControl);
  EXPECT_TRUE(v.add_space_prefix);
  int n_bytes = 0;
  for (int id = 0; id < v.size(); ++id) {
    EXPECT_EQ(v.pieces[id], sp.IdToPiece(id));
    EXPECT_EQ(v.scores[id], sp.GetScore(id));
    EXPECT_EQ(v.types[id] == TokenType::kByte, sp.IsByte(id)) << id;
    n_bytes += v.types[id] == TokenType::kByte;
  }
  EXPECT_EQ(n_bytes, 256);  // byte fallback
  const int32_t byte_a = sp.PieceToId("<0x41>");
  EXPECT_EQ(v.types[byte_a], TokenType::kByte);
}

TEST(TokenizerSentencePieceTest, EncodesThroughLibsentencepiece) {
  const Tokenizer tok = Tokenizer::FromSentencePieceFile(kDocsModel);
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(kDocsModel).ok());
  // Not normalized: NFKC turns the ligature "ﬁ" into "fi" and whitespace runs collapse.
  const std::string text = "The \xEF\xAC\x81le   system\tcall returns 42.";
  std::vector<int> expected;
  ASSERT_TRUE(sp.Encode(text, &expected).ok());
  std::vector<int32_t> ids = tok.Encode(text, true);
  ASSERT_EQ(ids.size(), expected.size() + 1);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.end()), std::vector<int32_t>(expected.begin(), expected.end()));
  EXPECT_EQ(tok.DecodeAll(ids), "The file system call returns 42.");
}

// Our SPM encoder on the exported vocabulary reproduces libsentencepiece on normalized text: this is
// what a GGUF written from this model gives in llama.cpp.
TEST(TokenizerSentencePieceTest, OwnSpmMatchesLibsentencepieceOnNormalizedDocs) {
  const Tokenizer lib = Tokenizer::FromSentencePieceFile(kDocsModel);
  const Tokenizer own = Tokenizer::FromVocab(lib.vocab());
  const std::string text = ReadFileToString(SharedPath("data/docs/docs-heldout.norm.txt"));
  ASSERT_GT(text.size(), 100000u);
  const auto chunks = SpaceChunks(text.substr(0, text.find_last_not_of('\n') + 1), 300);
  int n_same = 0;
  for (const std::string& chunk : chunks) {
    const auto expected = lib.Encode(chunk, true);
    const auto actual = own.Encode(chunk, true);
    EXPECT_EQ(actual, expected) << chunk;
    n_same += actual == expected;
    EXPECT_EQ(own.DecodeAll(actual), chunk);
  }
  EXPECT_EQ(n_same, static_cast<int>(chunks.size()));
  // The whole held-out text in one call.
  const std::string whole = text.substr(0, text.find_last_not_of('\n') + 1);
  EXPECT_EQ(own.Encode(whole, true), lib.Encode(whole, true));
}

TEST(TokenizerSentencePieceTest, OwnSpmMatchesLibsentencepieceOnLlama2Wikitext) {
  const Tokenizer lib = Tokenizer::FromSentencePieceFile(kLlama2Model);
  ASSERT_EQ(lib.vocab().size(), 32000);
  EXPECT_TRUE(lib.vocab().add_space_prefix);
  const Tokenizer own = Tokenizer::FromVocab(lib.vocab());
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(kLlama2Model).ok());
  std::stringstream stream(ReadFileToString(SharedPath("data/wikitext2/wiki.test.raw")));
  int n_lines = 0, n_same = 0;
  for (std::string line; std::getline(stream, line);) {
    if (line.find_first_not_of(' ') == std::string::npos) continue;
    ++n_lines;
    const auto expected = lib.Encode(line, false);
    const auto actual = own.Encode(line, false);
    EXPECT_EQ(actual, expected) << line;
    n_same += actual == expected;
    // Our piece-wise decoding agrees with libsentencepiece's.
    std::string decoded;
    ASSERT_TRUE(sp.Decode(std::vector<int>(actual.begin(), actual.end()), &decoded).ok());
    EXPECT_EQ(own.DecodeAll(actual), decoded);
  }
  EXPECT_GT(n_lines, 2000);
  EXPECT_EQ(n_same, n_lines);
}

TEST(TokenizerSentencePieceTest, RejectsBadFiles) {
  EXPECT_THROW(Tokenizer::FromSentencePieceFile(::testing::TempDir() + "/missing.model"), Error);
  const std::string path = ::testing::TempDir() + "/garbage.model";
  std::ofstream(path, std::ios::binary) << "this is not a protobuf";
  try {
    Tokenizer::FromSentencePieceFile(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  // A malformed proto (a length running past the end) is an error, not a read past the buffer.
  EXPECT_THROW(tokenizer_internal::ParseSentencePieceProto(std::string("\x0a\x7f", 2), "x.model"), Error);
}

}  // namespace
}  // namespace mixq
