// Sentencepiece tokenizer.model files: libsentencepiece encodes; the vocabulary is exported for GGUF.
#include "mixq/model/tokenizer_sentencepiece.h"

#include <sentencepiece_processor.h>

#include "mixq/base/error.h"

namespace mixq::tokenizer_internal {
namespace {

// A reader for protobuf's wire format: just enough to walk ModelProto's fields.
class WireReader {
 public:
  WireReader(std::string_view data, const std::string& path) : data_(data), path_(path) {}
  bool done() const { return offset_ >= data_.size(); }

  uint64_t Varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (offset_ >= data_.size()) Fail("sentencepiece model '{}': truncated varint at byte {}", path_, offset_);
      const uint8_t byte = static_cast<uint8_t>(data_[offset_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    Fail("sentencepiece model '{}': varint longer than 10 bytes at byte {}", path_, offset_);
  }

  std::string_view Bytes(size_t n) {
    if (data_.size() - offset_ < n) {
      Fail("sentencepiece model '{}': a field of {} bytes at byte {} runs past the end ({})", path_, n, offset_,
           data_.size());
    }
    std::string_view out = data_.substr(offset_, n);
    offset_ += n;
    return out;
  }

  // Reads one field's key; for length-delimited fields `*payload` receives the bytes, for varints
  // `*value` the number; other wire types are skipped.
  void Field(uint32_t* number, uint32_t* wire_type, uint64_t* value, std::string_view* payload) {
    const uint64_t key = Varint();
    *number = static_cast<uint32_t>(key >> 3);
    *wire_type = static_cast<uint32_t>(key & 7);
    switch (*wire_type) {
      case 0: *value = Varint(); break;
      case 1: Bytes(8); break;
      case 2: *payload = Bytes(Varint()); break;
      case 5: Bytes(4); break;
      default: Fail("sentencepiece model '{}': unknown protobuf wire type {} at byte {}", path_, *wire_type, offset_);
    }
  }

 private:
  std::string_view data_;
  const std::string& path_;
  size_t offset_ = 0;
};

}  // namespace

SentencePieceProtoFacts ParseSentencePieceProto(std::string_view serialized, const std::string& path) {
  // ModelProto: 1 = repeated SentencePiece {1 piece, 2 score, 3 type}, 3 = NormalizerSpec {3 add_dummy_prefix}.
  SentencePieceProtoFacts facts;
  WireReader model(serialized, path);
  while (!model.done()) {
    uint32_t number, wire_type;
    uint64_t value = 0;
    std::string_view payload;
    model.Field(&number, &wire_type, &value, &payload);
    if (wire_type != 2 || (number != 1 && number != 3)) continue;
    WireReader inner(payload, path);
    int32_t type = 1;  // SentencePiece.type defaults to NORMAL
    while (!inner.done()) {
      uint32_t inner_number, inner_wire_type;
      uint64_t inner_value = 0;
      std::string_view inner_payload;
      inner.Field(&inner_number, &inner_wire_type, &inner_value, &inner_payload);
      if (inner_number != 3 || inner_wire_type != 0) continue;
      if (number == 1) type = static_cast<int32_t>(inner_value);
      else facts.add_dummy_prefix = inner_value != 0;
    }
    if (number == 1) facts.piece_types.push_back(type);
  }
  return facts;
}

SentencePieceModel::SentencePieceModel(const std::string& path)
    : path_(path), processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = processor_->Load(path);
  if (!status.ok()) Fail("cannot load sentencepiece model '{}': {}", path, status.ToString());
  const int n = processor_->GetPieceSize();
  if (n <= 0) Fail("sentencepiece model '{}' has no pieces", path);
  const SentencePieceProtoFacts facts = ParseSentencePieceProto(processor_->serialized_model_proto(), path);
  if (facts.piece_types.size() != static_cast<size_t>(n)) {
    Fail("sentencepiece model '{}': the proto lists {} pieces, libsentencepiece {}", path, facts.piece_types.size(), n);
  }

  vocab_.model = "llama";
  vocab_.pieces.reserve(n);
  vocab_.scores.reserve(n);
  vocab_.types.reserve(n);
  for (int id = 0; id < n; ++id) {
    vocab_.pieces.push_back(processor_->IdToPiece(id));
    vocab_.scores.push_back(processor_->GetScore(id));
    TokenType type = TokenType::kNormal;
    if (processor_->IsUnknown(id)) type = TokenType::kUnknown;
    else if (processor_->IsControl(id)) type = TokenType::kControl;
    else if (processor_->IsByte(id)) type = TokenType::kByte;
    else if (processor_->IsUnused(id)) type = TokenType::kUnused;
    else if (facts.piece_types[id] == static_cast<int32_t>(TokenType::kUserDefined)) type = TokenType::kUserDefined;
    vocab_.types.push_back(type);
  }
  vocab_.bos_id = processor_->bos_id();
  vocab_.eos_id = processor_->eos_id();
  vocab_.unk_id = processor_->unk_id();
  vocab_.pad_id = processor_->pad_id();
  // Llama models are trained with BOS first; sentencepiece itself never adds it.
  vocab_.add_bos = vocab_.bos_id >= 0;
  vocab_.add_eos = false;
  vocab_.add_space_prefix = facts.add_dummy_prefix;
}

SentencePieceModel::~SentencePieceModel() = default;

void SentencePieceModel::Encode(std::string_view text, std::vector<int32_t>* out) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  if (!status.ok()) Fail("sentencepiece model '{}' cannot encode the text: {}", path_, status.ToString());
  out->insert(out->end(), ids.begin(), ids.end());
}

std::string SentencePieceModel::Decode(const std::vector<int32_t>& ids) const {
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) Fail("sentencepiece model '{}' cannot decode: {}", path_, status.ToString());
  return text;
}

}  // namespace mixq::tokenizer_internal
