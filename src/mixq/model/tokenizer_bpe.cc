// Byte-level BPE for "gpt2" vocabularies: ICU regex pre-tokenization, then merges by rank per word.
#include "mixq/model/tokenizer_bpe.h"

#include "mixq/model/tokenizer_merge.h"

#include <algorithm>

#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include "mixq/base/check.h"
#include "mixq/base/error.h"

namespace mixq::tokenizer_internal {
namespace {

// `\s` is written \p{White_Space} throughout: ICU's \s leaves out U+000B and U+0085, which
// llama.cpp's whitespace table (and Python's regex) count as space.
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+"
    "|\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+";

// The pattern lists of llama.cpp's llm_tokenizer_bpe for each tokenizer.ggml.pre; each pattern splits
// every piece left by the previous ones, keeping both the matches and the text between them.
std::vector<std::string> PreTokenizerPatterns(const std::string& pre) {
  if (pre == "gpt-2") return {kGpt2Regex};
  if (pre == "default" || pre.empty()) {
    return {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Regex, "\\p{N}+", "[0-9][0-9][0-9]"};
  }
  if (pre == "deepseek-llm") {
    // Written with \x{...} escapes: several letters in llama.cpp's list (U+1F7D, U+1FBE, U+1FD3,
    // U+1FDB, U+2126, U+212A) are canonical singletons that an editor's Unicode normalisation would
    // silently turn into other code points, breaking the ranges.
    return {
        "[\\r\\n]",
        "\\p{White_Space}?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
        "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"
        "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}"
        "\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
        "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
        "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}"
        "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
        "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
        "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
        "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
        "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
        "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
        "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
        "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
        "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
        "\\x{1E900}-\\x{1E943}]+",
        "\\p{White_Space}?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
        "\\p{White_Space}+$",
        "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
        "\\p{N}+",
    };
  }
  return {};
}

void AppendUtf8(char32_t code_point, std::string* out) {
  char buffer[4];
  int32_t length = 0;
  UBool error = false;
  U8_APPEND(buffer, length, 4, code_point, error);
  MIXQ_CHECK(!error);
  out->append(buffer, length);
}

}  // namespace

std::vector<std::string> BpeEncoder::KnownPreTokenizers() { return {"default", "gpt-2", "deepseek-llm"}; }

BpeEncoder::BpeEncoder(const Vocab& vocab) : piece_to_id_(BuildPieceMap(vocab.pieces)) {
  const std::vector<std::string> patterns = PreTokenizerPatterns(vocab.pre);
  if (patterns.empty()) {
    Fail("tokenizer pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported; known: default, gpt-2, deepseek-llm",
         vocab.pre);
  }
  for (const std::string& pattern : patterns) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError parse_error;
    std::unique_ptr<icu::RegexPattern> compiled(
        icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(pattern), 0, parse_error, status));
    MIXQ_CHECK(U_SUCCESS(status) && compiled != nullptr);  // our own patterns: a failure is a bug
    patterns_.push_back(std::move(compiled));
  }

  merge_rank_.reserve(vocab.merges.size() * 2);
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& merge = vocab.merges[rank];
    // The split is the first space after the first character: a piece never holds a raw space,
    // but llama.cpp searches from index 1 all the same.
    if (merge.size() < 3 || merge.find(' ', 1) == std::string::npos) {
      Fail("tokenizer merge {} ('{}') is not 'left right'", rank, merge);
    }
    merge_rank_.emplace(merge, static_cast<int32_t>(rank));
  }

  // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to 256 + n.
  unicode_to_byte_.assign(256 + 68, -1);
  int next_extra = 0;
  for (int byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE);
    const char32_t code_point = printable ? byte : 256 + next_extra++;
    AppendUtf8(code_point, &byte_to_unicode_[byte]);
    unicode_to_byte_[code_point] = static_cast<int16_t>(byte);
  }
}

BpeEncoder::~BpeEncoder() = default;

std::vector<std::string> BpeEncoder::PreTokenize(std::string_view text) const {
  const icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), text.size()));
  // Pieces as [start, end) in UTF-16 units of `unicode`.
  std::vector<std::pair<int32_t, int32_t>> pieces = {{0, unicode.length()}};
  if (unicode.isEmpty()) return {};
  for (const auto& pattern : patterns_) {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> matcher(pattern->matcher(unicode, status));
    MIXQ_CHECK(U_SUCCESS(status));
    std::vector<std::pair<int32_t, int32_t>> split;
    for (const auto& [start, end] : pieces) {
      // Each piece is matched on its own: `$` is its end and look-ahead stops there, as when
      // llama.cpp runs std::regex over the piece's range.
      matcher->region(start, end, status);
      MIXQ_CHECK(U_SUCCESS(status));
      int32_t position = start;
      while (matcher->find()) {
        const int32_t match_start = matcher->start(status);
        const int32_t match_end = matcher->end(status);
        MIXQ_CHECK(U_SUCCESS(status));
        if (match_end == match_start) continue;
        if (match_start > position) split.emplace_back(position, match_start);
        split.emplace_back(match_start, match_end);
        position = match_end;
      }
      if (position < end) split.emplace_back(position, end);
    }
    pieces = std::move(split);
  }
  std::vector<std::string> words;
  words.reserve(pieces.size());
  for (const auto& [start, end] : pieces) {
    std::string word;
    unicode.tempSubStringBetween(start, end).toUTF8String(word);
    words.push_back(std::move(word));
  }
  return words;
}

void BpeEncoder::EncodeWord(const std::string& raw_word, std::vector<int32_t>* out) const {
  std::string word;
  word.reserve(raw_word.size() * 2);
  for (unsigned char c : raw_word) word += byte_to_unicode_[c];

  std::vector<MergeSymbol> symbols = SplitUtf8Symbols(word);
  std::string key;
  MergePairs(symbols, [&](const MergeSymbol& left, const MergeSymbol& right) -> std::optional<double> {
    key.assign(word, left.offset, left.bytes);
    key += ' ';
    key.append(word, right.offset, right.bytes);
    auto it = merge_rank_.find(key);
    if (it == merge_rank_.end()) return std::nullopt;
    return -static_cast<double>(it->second);  // the earliest merge first
  });

  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = std::string_view(word).substr(symbols[i].offset, symbols[i].bytes);
    auto it = piece_to_id_.find(piece);
    if (it != piece_to_id_.end()) {
      out->push_back(it->second);
      continue;
    }
    // A merge result missing from the vocabulary: llama.cpp falls back to single-byte pieces and
    // drops what it cannot find.
    for (char c : piece) {
      auto byte_it = piece_to_id_.find(std::string_view(&c, 1));
      if (byte_it != piece_to_id_.end()) out->push_back(byte_it->second);
    }
  }
}

void BpeEncoder::Encode(std::string_view text, std::vector<int32_t>* out) const {
  for (const std::string& word : PreTokenize(text)) EncodeWord(word, out);
}

std::string BpeEncoder::DecodePiece(std::string_view piece) const {
  std::string bytes;
  bytes.reserve(piece.size());
  int32_t offset = 0;
  const int32_t length = static_cast<int32_t>(piece.size());
  while (offset < length) {
    const int32_t start = offset;
    UChar32 code_point;
    U8_NEXT(piece.data(), offset, length, code_point);
    if (code_point >= 0 && code_point < static_cast<UChar32>(unicode_to_byte_.size()) &&
        unicode_to_byte_[code_point] >= 0) {
      bytes += static_cast<char>(unicode_to_byte_[code_point]);
    } else {
      bytes.append(piece.data() + start, offset - start);
    }
  }
  return bytes;
}

}  // namespace mixq::tokenizer_internal
