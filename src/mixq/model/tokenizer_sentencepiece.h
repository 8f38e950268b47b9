// Sentencepiece tokenizer.model files through libsentencepiece, with the vocabulary exported for GGUF.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mixq/model/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace mixq::tokenizer_internal {

class SentencePieceModel {
 public:
  // Loads `path`; throws mixq::Error naming the file when libsentencepiece rejects it.
  explicit SentencePieceModel(const std::string& path);
  ~SentencePieceModel();

  // The vocabulary as GGUF's "llama" model stores it (types, special ids, add_space_prefix).
  const Vocab& vocab() const { return vocab_; }
  // libsentencepiece's own encoding (normalisation included), without BOS.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;
  // libsentencepiece's own decoding of a whole sequence (for tests that compare with it).
  std::string Decode(const std::vector<int32_t>& ids) const;

 private:
  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  Vocab vocab_;
};

// The fields of a serialized ModelProto that the public libsentencepiece API does not expose.
struct SentencePieceProtoFacts {
  std::vector<int32_t> piece_types;  // sentencepiece's Type enum, which GGUF's token types copy
  bool add_dummy_prefix = true;      // NormalizerSpec's default
};
// Reads them from the protobuf wire format; throws mixq::Error (naming `path`) when it is malformed.
SentencePieceProtoFacts ParseSentencePieceProto(std::string_view serialized, const std::string& path);

}  // namespace mixq::tokenizer_internal
