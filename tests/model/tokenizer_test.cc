// Tokenizers: llama2.c's tokenizer.bin with the SPM encoder, round trips on real text, bad files.
#include "mixq/model/tokenizer.h"

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "test_paths.h"

namespace mixq {
namespace {

using ::mixq::testing::SharedPath;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

const std::string kTok512 = SharedPath("models/stories260K/tok512.bin");

TEST(TokenizerLlama2cTest, LoadsVocabularyInGgufConventions) {
  const Tokenizer tok = Tokenizer::FromLlama2cFile(kTok512, 512);
  const Vocab& v = tok.vocab();
  ASSERT_EQ(v.size(), 512);
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.pieces[0], "<unk>");
  EXPECT_EQ(v.types[0], TokenType::kUnknown);
  EXPECT_EQ(v.pieces[1], "<s>");
  EXPECT_EQ(v.types[1], TokenType::kControl);
  EXPECT_EQ(v.pieces[2], "</s>");
  EXPECT_EQ(v.types[2], TokenType::kControl);
  EXPECT_EQ(v.pieces[3], "<0x00>");
  EXPECT_EQ(v.types[3], TokenType::kByte);
  EXPECT_EQ(v.pieces[258], "<0xFF>");
  EXPECT_EQ(v.types[258], TokenType::kByte);
  // The file writes " t"; the vocabulary keeps sentencepiece's U+2581.
  EXPECT_EQ(v.pieces[259], "\xE2\x96\x81t");
  EXPECT_EQ(v.types[259], TokenType::kNormal);
  EXPECT_FLOAT_EQ(v.scores[260], -1.0f);  // "he"
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_EQ(tok.eos(), 2);
}

// Expected ids read off tok512.bin by hand (and by a naive rescan-all-pairs BPE in Python):
// 403 "▁Once", 407 "▁upon", 261 "▁a", 378 "▁time", 432 ",", 383 "▁there", 286 "▁was", 376 "▁little",
// 298 "▁g", 315 "ir", 421 "l", 395 "▁named", 317 "▁Lily", 426 ".".
TEST(TokenizerLlama2cTest, EncodesLikeLlama2c) {
  const Tokenizer tok = Tokenizer::FromLlama2cFile(kTok512, 512);
  EXPECT_EQ(tok.Encode("Once upon a time, there was a little girl named Lily.", true),
            (std::vector<int32_t>{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426}));
  // 346 "▁He", 306 "ll", 414 "o", 263 "▁w", 304 "or", 341 "ld".
  EXPECT_EQ(tok.Encode("Hello world", false), (std::vector<int32_t>{346, 306, 414, 263, 304, 341}));
  // "é" is a piece (485); the CJK characters are not, so they fall back to their UTF-8 bytes (byte + 3).
  EXPECT_EQ(tok.Encode("h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC", false),
            (std::vector<int32_t>{270, 485, 306, 414, 410, 0xE6 + 3, 0x97 + 3, 0xA5 + 3, 0xE6 + 3, 0x9C + 3, 0xAC + 3}));
  EXPECT_EQ(tok.Encode("", true), (std::vector<int32_t>{1}));
  EXPECT_TRUE(tok.Encode("", false).empty());
}

TEST(TokenizerLlama2cTest, DecodesPieces) {
  const Tokenizer tok = Tokenizer::FromLlama2cFile(kTok512, 512);
  EXPECT_EQ(tok.Decode(-1, 403), "Once");  // the dummy-prefix space is dropped at the start of the text
  EXPECT_EQ(tok.Decode(1, 403), " Once");  // but kept after a BOS in mid-text, as llama.cpp prints it
  EXPECT_EQ(tok.DecodeAll({1, 403, 407}), "Once upon");
  EXPECT_EQ(tok.DecodeAll({403, 1, 403}), "Once Once");
  EXPECT_EQ(tok.Decode(403, 407), " upon");
  EXPECT_EQ(tok.Decode(403, 1), "");       // control tokens print nothing
  EXPECT_EQ(tok.Decode(403, 0), "");       // nor does unk
  EXPECT_EQ(tok.Decode(403, 13), "\n");    // <0x0A>
  EXPECT_THROW(tok.Decode(403, 512), Error);
  EXPECT_THROW(tok.Decode(403, -1), Error);
}

TEST(TokenizerLlama2cTest, RoundTripsTinyStories) {
  const Tokenizer tok = Tokenizer::FromLlama2cFile(kTok512, 512);
  const std::string text = ReadFileToString(SharedPath("data/tinystories/TinyStories-valid.head30k.txt"));
  const auto lines = Lines(text);
  ASSERT_GT(lines.size(), 10u);
  size_t n_tokens = 0;
  for (const std::string& line : lines) {
    const auto ids = tok.Encode(line, true);
    n_tokens += ids.size();
    ASSERT_EQ(tok.DecodeAll(ids), line);
  }
  // The whole file at once (newlines become <0x0A> byte tokens).
  const auto ids = tok.Encode(text, true);
  EXPECT_EQ(tok.DecodeAll(ids), text);
  // A 512-token vocabulary compresses English to roughly 2-4 bytes per token.
  EXPECT_GT(static_cast<double>(text.size()) / ids.size(), 1.5);
  EXPECT_LT(static_cast<double>(text.size()) / ids.size(), 5.0);
}

// 1.3 MB in one call: the merge queue keeps this linear-ish (a rescan-all-pairs loop would take minutes).
TEST(TokenizerLlama2cTest, EncodesWikitextQuickly) {
  const Tokenizer tok = Tokenizer::FromLlama2cFile(kTok512, 512);
  const std::string text = ReadFileToString(SharedPath("data/wikitext2/wiki.test.raw"));
  ASSERT_GT(text.size(), 1000000u);
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.Encode(text, true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tok.DecodeAll(ids), text);
  EXPECT_LT(seconds, 10.0) << ids.size() << " tokens";
}

class TokenizerBadFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
    return path;
  }
  static std::string Token(float score, const std::string& piece) {
    std::string out(8, '\0');
    const int32_t length = static_cast<int32_t>(piece.size());
    std::memcpy(out.data(), &score, 4);
    std::memcpy(out.data() + 4, &length, 4);
    return out + piece;
  }
  static std::string Header(int32_t max_length) { return std::string(reinterpret_cast<const char*>(&max_length), 4); }
};

TEST_F(TokenizerBadFileTest, RejectsBrokenFiles) {
  const std::string good = Header(5) + Token(0, "<unk>") + Token(0, "<s>") + Token(0, "</s>") + Token(-1, " a");
  EXPECT_EQ(Tokenizer::FromLlama2cFile(Write("good.bin", good), 4).vocab().pieces[3], "\xE2\x96\x81" "a");

  auto expect_error = [&](const std::string& name, const std::string& bytes, int32_t vocab_size, const char* what) {
    const std::string path = Write(name, bytes);
    try {
      Tokenizer::FromLlama2cFile(path, vocab_size);
      ADD_FAILURE() << name << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error("empty.bin", "", 4, "truncated");
  expect_error("cut.bin", good.substr(0, good.size() - 1), 4, "truncated");
  expect_error("cut_header.bin", good.substr(0, 30), 4, "truncated");
  expect_error("more.bin", good, 3, "bytes after");
  expect_error("fewer.bin", good, 5, "truncated");
  expect_error("max.bin", Header(-3) + good.substr(4), 4, "max_token_length");
  expect_error("long.bin", Header(5) + Token(0, "<unk>") + Token(0, "toolongpiece"), 2, "length 12");
  std::string negative = Header(5) + Token(0, "<unk>");
  const int32_t minus = -7;
  std::memcpy(negative.data() + 4 + 4, &minus, 4);
  expect_error("negative.bin", negative, 1, "length -7");
  expect_error("zero.bin", good, 0, "vocab_size");
  EXPECT_THROW(Tokenizer::FromLlama2cFile(::testing::TempDir() + "/does-not-exist.bin", 4), Error);
}

}  // namespace
}  // namespace mixq
