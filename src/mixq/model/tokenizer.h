// Tokenizers: sentencepiece-style BPE by scores ("llama"), byte-level BPE ("gpt2"), and Hugging Face
// tokenizer.model files through libsentencepiece. One Vocab type holds what GGUF stores about each.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mixq {

// GGUF's token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// What a GGUF file stores about a tokenizer (tokenizer.ggml.*), in GGUF's conventions: for "llama"
// vocabularies a space is written U+2581 ("▁") inside pieces and bytes are pieces "<0x0A>".
struct Vocab {
  std::string model = "llama";  // tokenizer.ggml.model: "llama" or "gpt2"
  std::string pre;              // tokenizer.ggml.pre: the pre-tokenizer of a "gpt2" vocab ("gpt-2", ...)
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::vector<std::string> merges;  // "gpt2": "left right" pairs, highest priority first
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  int32_t unk_id = 0;
  int32_t pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;  // "llama": prepend a space to the text, as sentencepiece does

  int32_t size() const { return static_cast<int32_t>(pieces.size()); }
};

class TokenizerImpl;

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // A tokenizer for a vocabulary read from GGUF or llama2.c; throws mixq::Error for a model it does not know.
  static Tokenizer FromVocab(Vocab vocab);
  // llama2.c's tokenizer.bin (tok512.bin etc.) for a model with `vocab_size` tokens.
  static Tokenizer FromLlama2cFile(const std::string& path, int32_t vocab_size);
  // A sentencepiece tokenizer.model, encoded by libsentencepiece itself (normalisation included); its
  // vocabulary is exported as a "llama" Vocab so the model can be written to GGUF.
  static Tokenizer FromSentencePieceFile(const std::string& path);

  bool loaded() const { return impl_ != nullptr; }
  const Vocab& vocab() const;
  int32_t bos() const { return vocab().bos_id; }
  int32_t eos() const { return vocab().eos_id; }

  // Token ids for `text`; BOS first when add_bos (the vocabulary's own add_bos decides callers' default).
  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const;
  // The text of one token as it should be printed after `previous` (byte tokens are raw bytes; control
  // tokens are empty; the space that sentencepiece adds at the start is dropped when `previous` < 0,
  // i.e. nothing has been printed yet — callers keep -1 through leading control tokens such as BOS).
  std::string Decode(int32_t previous, int32_t token) const;
  // Decode for a stream: `*previous` starts at -1 and is updated here, staying -1 through leading
  // control tokens (BOS), so the start-of-text space is dropped exactly once.
  std::string DecodeNext(int32_t* previous, int32_t token) const;
  // The text of a whole sequence, as the concatenation of DecodeNext.
  std::string DecodeAll(const std::vector<int32_t>& tokens) const;

 private:
  std::unique_ptr<TokenizerImpl> impl_;
};

}  // namespace mixq
