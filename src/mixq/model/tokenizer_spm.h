// Sentencepiece-style BPE by piece scores ("llama" vocabularies), as llama.cpp's SPM tokenizer does it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mixq/model/tokenizer.h"

namespace mixq::tokenizer_internal {

// Hashes std::string and std::string_view alike, so lookups of substrings allocate nothing.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Piece -> id; when a piece occurs twice the lower id wins (as llama.cpp's token_to_id does not define
// it, the first is the stable choice).
PieceMap BuildPieceMap(const std::vector<std::string>& pieces);

// The byte length of the UTF-8 character that starts with `first_byte` (1 for a stray continuation
// byte), as llama.cpp's unicode_len_utf8 counts it.
inline size_t Utf8Length(unsigned char first_byte) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[first_byte >> 4];
}

class SpmEncoder {
 public:
  explicit SpmEncoder(const Vocab& vocab);

  // Appends the ids of `text` (raw text with plain spaces) to `out`: a space is prepended when
  // `add_space_prefix`, spaces become U+2581, then pairs merge by the score of their concatenation.
  void Encode(const Vocab& vocab, std::string_view text, bool add_space_prefix, std::vector<int32_t>* out) const;

  const PieceMap& piece_to_id() const { return piece_to_id_; }

 private:
  // Appends the byte-fallback ids of one character that is not a piece (unk when a byte has no token).
  void AppendBytes(const Vocab& vocab, std::string_view character, std::vector<int32_t>* out) const;

  PieceMap piece_to_id_;
  std::array<int32_t, 256> byte_to_id_;  // -1 where the vocabulary has no <0xXX> piece
};

// Whether `piece` is a byte token's text "<0xXX>" (two upper- or lower-case hex digits); sets *byte.
bool ParseBytePiece(std::string_view piece, uint8_t* byte);

}  // namespace mixq::tokenizer_internal
