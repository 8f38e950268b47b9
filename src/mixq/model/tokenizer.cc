// The Tokenizer facade: loads vocabularies (llama2.c, GGUF, sentencepiece) and dispatches to an encoder.
#include "mixq/model/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "mixq/base/error.h"
#include "mixq/base/file.h"
#include "mixq/model/tokenizer_bpe.h"
#include "mixq/model/tokenizer_sentencepiece.h"
#include "mixq/model/tokenizer_spm.h"

namespace mixq {

using tokenizer_internal::BpeEncoder;
using tokenizer_internal::SpmEncoder;

class TokenizerImpl {
 public:
  Vocab vocab;
  std::unique_ptr<SpmEncoder> spm;  // "llama" vocabularies from GGUF or llama2.c
  std::unique_ptr<BpeEncoder> bpe;  // "gpt2"
  // User-defined tokens, longest first: llama.cpp matches them in the raw text before encoding,
  // even when special tokens are not parsed.
  std::vector<int32_t> user_defined;
  std::unique_ptr<tokenizer_internal::SentencePieceModel> sentencepiece;  // tokenizer.model files
};

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";

void ReplaceAll(std::string& text, std::string_view from, std::string_view to) {
  std::string result;
  result.reserve(text.size());
  size_t start = 0;
  for (size_t at; (at = text.find(from, start)) != std::string::npos; start = at + from.size()) {
    result.append(text, start, at - start);
    result += to;
  }
  result.append(text, start, std::string::npos);
  text = std::move(result);
}

// Checks what every encoder relies on: parallel arrays, special ids inside the vocabulary.
void ValidateVocab(const Vocab& vocab) {
  const size_t n = vocab.pieces.size();
  if (n == 0) Fail("tokenizer vocabulary ('{}') is empty", vocab.model);
  if (vocab.scores.size() != n || vocab.types.size() != n) {
    Fail("tokenizer vocabulary ('{}'): {} pieces but {} scores and {} types", vocab.model, n, vocab.scores.size(),
         vocab.types.size());
  }
  auto check_id = [&](const char* name, int32_t id) {
    if (id < -1 || id >= static_cast<int32_t>(n)) {
      Fail("tokenizer vocabulary ('{}'): {} id {} is outside [-1, {})", vocab.model, name, id, n);
    }
  };
  check_id("bos", vocab.bos_id);
  check_id("eos", vocab.eos_id);
  check_id("unk", vocab.unk_id);
  check_id("pad", vocab.pad_id);
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::FromVocab(Vocab vocab) {
  ValidateVocab(vocab);
  Tokenizer tokenizer;
  tokenizer.impl_ = std::make_unique<TokenizerImpl>();
  TokenizerImpl& impl = *tokenizer.impl_;
  if (vocab.model == "llama") {
    impl.spm = std::make_unique<SpmEncoder>(vocab);
  } else if (vocab.model == "gpt2") {
    impl.bpe = std::make_unique<BpeEncoder>(vocab);
  } else {
    Fail("tokenizer model '{}' (tokenizer.ggml.model) is not supported; known: llama, gpt2", vocab.model);
  }
  for (int32_t id = 0; id < vocab.size(); ++id) {
    if (vocab.types[id] == TokenType::kUserDefined && !vocab.pieces[id].empty()) impl.user_defined.push_back(id);
  }
  std::stable_sort(impl.user_defined.begin(), impl.user_defined.end(),
                   [&](int32_t a, int32_t b) { return vocab.pieces[a].size() > vocab.pieces[b].size(); });
  impl.vocab = std::move(vocab);
  return tokenizer;
}

Tokenizer Tokenizer::FromLlama2cFile(const std::string& path, int32_t vocab_size) {
  if (vocab_size <= 0) Fail("llama2.c tokenizer '{}': vocab_size must be positive, got {}", path, vocab_size);
  const std::string bytes = ReadFileToString(path);

  size_t offset = 0;
  auto read_i32 = [&](const char* what, int32_t index) {
    if (bytes.size() - offset < 4) {
      Fail("llama2.c tokenizer '{}' is truncated: {} of token {} needs 4 bytes at offset {}, file has {}", path, what,
           index, offset, bytes.size());
    }
    int32_t value;
    std::memcpy(&value, bytes.data() + offset, 4);
    offset += 4;
    return value;
  };
  // Every piece llama2.c's exporter writes is at most max_token_length bytes; a larger length means
  // the file is not a tokenizer.bin (or is corrupt).
  const int32_t max_token_length = read_i32("the header", -1);
  if (max_token_length <= 0 || max_token_length > 4096) {
    Fail("llama2.c tokenizer '{}': max_token_length {} is outside [1, 4096]", path, max_token_length);
  }

  Vocab vocab;
  vocab.model = "llama";
  vocab.pieces.reserve(vocab_size);
  vocab.scores.reserve(vocab_size);
  vocab.types.reserve(vocab_size);
  for (int32_t id = 0; id < vocab_size; ++id) {
    float score;
    const int32_t score_bits = read_i32("the score", id);
    std::memcpy(&score, &score_bits, 4);
    const int32_t length = read_i32("the length", id);
    if (length < 0 || length > max_token_length) {
      Fail("llama2.c tokenizer '{}': token {} has length {}, expected 0..{} (max_token_length)", path, id, length,
           max_token_length);
    }
    if (bytes.size() - offset < static_cast<size_t>(length)) {
      Fail("llama2.c tokenizer '{}' is truncated: token {} needs {} bytes at offset {}, file has {} (is vocab_size {} "
           "right?)",
           path, id, length, offset, bytes.size(), vocab_size);
    }
    std::string piece = bytes.substr(offset, length);
    offset += length;
    // llama2.c's exporter wrote sentencepiece's U+2581 as a plain space; GGUF keeps U+2581.
    ReplaceAll(piece, " ", kSpaceMark);
    TokenType type = TokenType::kNormal;
    uint8_t byte;
    if (id == 0) {
      type = TokenType::kUnknown;
    } else if (id == 1 || id == 2) {
      type = TokenType::kControl;
      // The exporter wrote "\n<s>\n" and "\n</s>\n"; GGUF names them "<s>" and "</s>".
      const size_t first = piece.find_first_not_of('\n');
      const size_t last = piece.find_last_not_of('\n');
      piece = first == std::string::npos ? std::string() : piece.substr(first, last - first + 1);
    } else if (tokenizer_internal::ParseBytePiece(piece, &byte)) {
      type = TokenType::kByte;
    }
    vocab.pieces.push_back(std::move(piece));
    vocab.scores.push_back(score);
    vocab.types.push_back(type);
  }
  if (offset != bytes.size()) {
    Fail("llama2.c tokenizer '{}' has {} bytes after its {} tokens: it is for a larger vocabulary than the model's {}",
         path, bytes.size() - offset, vocab_size, vocab_size);
  }
  vocab.bos_id = 1;
  vocab.eos_id = 2;
  vocab.unk_id = 0;
  vocab.add_bos = true;
  vocab.add_space_prefix = true;
  return FromVocab(std::move(vocab));
}

Tokenizer Tokenizer::FromSentencePieceFile(const std::string& path) {
  auto model = std::make_unique<tokenizer_internal::SentencePieceModel>(path);
  ValidateVocab(model->vocab());
  Tokenizer tokenizer;
  tokenizer.impl_ = std::make_unique<TokenizerImpl>();
  tokenizer.impl_->vocab = model->vocab();
  tokenizer.impl_->sentencepiece = std::move(model);
  return tokenizer;
}

const Vocab& Tokenizer::vocab() const {
  if (!impl_) Fail("no tokenizer is loaded");
  return impl_->vocab;
}

namespace {

// A stretch of the input: raw text to encode, or a user-defined token found in it.
struct Fragment {
  int32_t token;  // -1 for raw text
  size_t offset;
  size_t length;
};

// Splits the raw fragments at every occurrence of each user-defined token, longest tokens first,
// as llama.cpp's tokenizer_st_partition does.
std::vector<Fragment> SplitUserDefined(const Vocab& vocab, const std::vector<int32_t>& tokens, std::string_view text) {
  std::vector<Fragment> fragments = {{-1, 0, text.size()}};
  for (int32_t token : tokens) {
    const std::string& piece = vocab.pieces[token];
    std::vector<Fragment> split;
    split.reserve(fragments.size());
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        split.push_back(fragment);
        continue;
      }
      const std::string_view raw = text.substr(fragment.offset, fragment.length);
      size_t position = 0;
      for (size_t at; (at = raw.find(piece, position)) != std::string_view::npos; position = at + piece.size()) {
        if (at > position) split.push_back({-1, fragment.offset + position, at - position});
        split.push_back({token, fragment.offset + at, piece.size()});
      }
      if (position < raw.size()) split.push_back({-1, fragment.offset + position, raw.size() - position});
    }
    fragments = std::move(split);
  }
  return fragments;
}

}  // namespace

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  const Vocab& v = vocab();
  std::vector<int32_t> ids;
  if (add_bos && v.bos_id >= 0) ids.push_back(v.bos_id);
  if (impl_->sentencepiece) {
    impl_->sentencepiece->Encode(text, &ids);
    return ids;
  }
  if (text.empty()) return ids;
  bool after_special = true;  // sentencepiece's dummy prefix goes before the text and after each special token
  for (const Fragment& fragment : SplitUserDefined(v, impl_->user_defined, text)) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
      after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(fragment.offset, fragment.length);
    if (impl_->spm) impl_->spm->Encode(v, raw, v.add_space_prefix && after_special, &ids);
    else impl_->bpe->Encode(raw, &ids);
    after_special = false;
  }
  return ids;
}

std::string Tokenizer::Decode(int32_t previous, int32_t token) const {
  const Vocab& v = vocab();
  if (token < 0 || token >= v.size()) Fail("token id {} is outside the vocabulary [0, {})", token, v.size());
  const TokenType type = v.types[token];
  const std::string& piece = v.pieces[token];
  if (type == TokenType::kControl || type == TokenType::kUnknown) return {};
  uint8_t byte;
  if (type == TokenType::kByte && tokenizer_internal::ParseBytePiece(piece, &byte)) {
    return std::string(1, static_cast<char>(byte));
  }
  if (impl_->bpe) {
    // User-defined tokens are stored as plain text; the others in GPT-2's byte->unicode mapping.
    return type == TokenType::kUserDefined ? piece : impl_->bpe->DecodePiece(piece);
  }
  std::string text = piece;
  ReplaceAll(text, kSpaceMark, " ");
  // Sentencepiece's dummy prefix: the space it added before the first word is not part of the text.
  // Only at the very start, as llama.cpp does: a BOS generated mid-text keeps the next word's space.
  if (v.add_space_prefix && previous < 0 && !text.empty() && text[0] == ' ') {
    text.erase(0, 1);
  }
  return text;
}

std::string Tokenizer::DecodeNext(int32_t* previous, int32_t token) const {
  std::string piece = Decode(*previous, token);
  // BOS and other control tokens before any text leave the stream at its start.
  if (*previous >= 0 || vocab().types[token] != TokenType::kControl) *previous = token;
  return piece;
}

std::string Tokenizer::DecodeAll(const std::vector<int32_t>& tokens) const {
  std::string text;
  int32_t previous = -1;
  for (int32_t token : tokens) text += DecodeNext(&previous, token);
  return text;
}

}  // namespace mixq
