// Byte-level BPE ("gpt2" vocabularies): GPT-2's byte->unicode mapping, merge ranks, and the
// regex pre-tokenizer chosen by tokenizer.ggml.pre, as llama.cpp's llm_tokenizer_bpe applies them.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mixq/model/tokenizer.h"
#include "mixq/model/tokenizer_spm.h"

#include <unicode/uversion.h>

U_NAMESPACE_BEGIN
class RegexPattern;
U_NAMESPACE_END

namespace mixq::tokenizer_internal {

class BpeEncoder {
 public:
  // Throws mixq::Error for an unknown pre-tokenizer or a malformed merge.
  explicit BpeEncoder(const Vocab& vocab);
  ~BpeEncoder();

  // Appends the ids of one stretch of raw text (special tokens already split off) to `out`.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;
  // The words the pre-tokenizer splits `text` into (raw bytes, before the byte->unicode mapping).
  std::vector<std::string> PreTokenize(std::string_view text) const;
  // A normal token's piece back to its bytes (code points outside the mapping are kept as UTF-8).
  std::string DecodePiece(std::string_view piece) const;

  // The pre-tokenizer names (tokenizer.ggml.pre) this encoder knows.
  static std::vector<std::string> KnownPreTokenizers();

 private:
  void EncodeWord(const std::string& word, std::vector<int32_t>* out) const;

  std::vector<std::unique_ptr<icu::RegexPattern>> patterns_;  // applied in order, each splitting further
  PieceMap piece_to_id_;
  PieceMap merge_rank_;                       // "left right" -> rank (0 = merged first)
  std::array<std::string, 256> byte_to_unicode_;  // GPT-2's printable stand-in for each byte, as UTF-8
  std::vector<int16_t> unicode_to_byte_;      // code point (< 324) -> byte, -1 where none
};

}  // namespace mixq::tokenizer_internal
