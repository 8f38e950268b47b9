// Sentencepiece-style BPE by scores: llama.cpp's llm_tokenizer_spm (and llama2.c's encode) re-derived.
#include "mixq/model/tokenizer_spm.h"

#include <algorithm>

#include "mixq/model/tokenizer_merge.h"

namespace mixq::tokenizer_internal {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, sentencepiece's visible space

}  // namespace

std::vector<MergeSymbol> SplitUtf8Symbols(std::string_view text) {
  std::vector<MergeSymbol> symbols;
  symbols.reserve(text.size());
  for (size_t offset = 0; offset < text.size();) {
    const size_t bytes = std::min(Utf8Length(static_cast<unsigned char>(text[offset])), text.size() - offset);
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, index + 1, static_cast<uint32_t>(offset), static_cast<uint32_t>(bytes)});
    offset += bytes;
  }
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

PieceMap BuildPieceMap(const std::vector<std::string>& pieces) {
  PieceMap map;
  map.reserve(pieces.size() * 2);
  for (size_t i = 0; i < pieces.size(); ++i) map.emplace(pieces[i], static_cast<int32_t>(i));
  return map;
}

bool ParseBytePiece(std::string_view piece, uint8_t* byte) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return false;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else return false;
    value = value * 16 + digit;
  }
  *byte = static_cast<uint8_t>(value);
  return true;
}

SpmEncoder::SpmEncoder(const Vocab& vocab) : piece_to_id_(BuildPieceMap(vocab.pieces)) {
  byte_to_id_.fill(-1);
  for (int32_t id = vocab.size() - 1; id >= 0; --id) {
    uint8_t byte;
    // A byte piece counts as the fallback whatever its type (llama2.c's files mark no types).
    if (ParseBytePiece(vocab.pieces[id], &byte)) byte_to_id_[byte] = id;
  }
}

void SpmEncoder::AppendBytes(const Vocab& vocab, std::string_view character, std::vector<int32_t>* out) const {
  for (unsigned char c : character) {
    int32_t id = byte_to_id_[c];
    if (id < 0) {
      // No byte token: llama.cpp tries the byte as a one-character piece before giving up.
      auto it = piece_to_id_.find(std::string_view(reinterpret_cast<const char*>(&c), 1));
      id = it != piece_to_id_.end() ? it->second : vocab.unk_id;
    }
    if (id >= 0) out->push_back(id);
  }
}

void SpmEncoder::Encode(const Vocab& vocab, std::string_view text, bool add_space_prefix,
                        std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::string escaped;
  escaped.reserve(text.size() + text.size() / 2 + 3);
  if (add_space_prefix) escaped += kSpaceMark;
  for (char c : text) {
    if (c == ' ') escaped += kSpaceMark;
    else escaped += c;
  }

  std::vector<MergeSymbol> symbols = SplitUtf8Symbols(escaped);
  const int32_t n_tokens = vocab.size();
  MergePairs(symbols, [&](const MergeSymbol& left, const MergeSymbol& right) -> std::optional<double> {
    auto it = piece_to_id_.find(std::string_view(escaped).substr(left.offset, left.bytes + right.bytes));
    if (it == piece_to_id_.end() || it->second >= n_tokens) return std::nullopt;
    return vocab.scores[it->second];
  });

  // Every merged run is a piece; a symbol that is not a piece is a single unmerged character.
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = std::string_view(escaped).substr(symbols[i].offset, symbols[i].bytes);
    auto it = piece_to_id_.find(piece);
    if (it != piece_to_id_.end()) out->push_back(it->second);
    else AppendBytes(vocab, piece, out);
  }
}

}  // namespace mixq::tokenizer_internal
