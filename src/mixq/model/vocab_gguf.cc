// Tokenizer vocabularies in GGUF metadata: tokenizer.ggml.* read into a Vocab and written from one.
#include "mixq/model/vocab_gguf.h"

#include "mixq/base/error.h"
#include "mixq/base/log.h"

namespace mixq {
namespace {

constexpr const char* kModelKey = "tokenizer.ggml.model";
constexpr const char* kTokensKey = "tokenizer.ggml.tokens";

// An optional token id; GGUF writers store "none" as -1 or as uint32 0xFFFFFFFF.
std::optional<int32_t> ReadTokenId(const GgufFile& file, const char* key, int32_t n_tokens, bool required_in_range) {
  const std::optional<int64_t> id = file.GetInt(key);
  if (!id) return std::nullopt;
  if (*id == -1 || *id == 0xFFFFFFFFLL) return -1;
  if (*id < 0 || *id >= n_tokens) {
    if (required_in_range) {
      Fail("'{}': key '{}' is {}, outside the vocabulary of {} tokens", file.path, key, *id, n_tokens);
    }
    Warn("'{}': key '{}' is {}, outside the vocabulary of {} tokens; ignored", file.path, key, *id, n_tokens);
    return -1;
  }
  return static_cast<int32_t>(*id);
}

const GgufValue* FindArray(const GgufFile& file, const char* key, GgufValueType element, const char* expected) {
  const GgufValue* v = file.Find(key);
  if (v == nullptr) return nullptr;
  if (v->type != GgufValueType::kArray || v->array_type != element) {
    Fail("'{}': key '{}' has type {}{}, expected an array of {}", file.path, key, GgufValueTypeName(v->type),
         v->type == GgufValueType::kArray ? fmt::format(" of {}", GgufValueTypeName(v->array_type)) : "", expected);
  }
  return v;
}

}  // namespace

bool GgufHasVocab(const GgufFile& file) {
  const GgufValue* model = file.Find(kModelKey);
  const GgufValue* tokens = file.Find(kTokensKey);
  return model != nullptr && model->type == GgufValueType::kString && model->string_value != "none" &&
         model->string_value != "no_vocab" && tokens != nullptr;
}

Vocab ReadVocabFromGguf(const GgufFile& file) {
  Vocab vocab;
  const std::optional<std::string> model = file.GetString(kModelKey);
  if (!model) Fail("'{}' has no tokenizer: key '{}' is missing (pass --tokenizer FILE)", file.path, kModelKey);
  vocab.model = *model;
  vocab.pre = file.GetString("tokenizer.ggml.pre").value_or("");

  const GgufValue* tokens = FindArray(file, kTokensKey, GgufValueType::kString, "string");
  if (tokens == nullptr) Fail("'{}': key '{}' is missing", file.path, kTokensKey);
  vocab.pieces = tokens->strings;
  const size_t n = vocab.pieces.size();
  if (n == 0) Fail("'{}': key '{}' is empty", file.path, kTokensKey);
  if (n > static_cast<size_t>(INT32_MAX)) Fail("'{}': {} tokens is too many", file.path, n);

  if (const GgufValue* scores = FindArray(file, "tokenizer.ggml.scores", GgufValueType::kFloat32, "float32")) {
    if (scores->floats.size() != n) {
      Fail("'{}': key 'tokenizer.ggml.scores' has {} entries, but '{}' has {}", file.path, scores->floats.size(),
           kTokensKey, n);
    }
    vocab.scores.assign(scores->floats.begin(), scores->floats.end());
  }
  if (const GgufValue* types = file.Find("tokenizer.ggml.token_type")) {
    if (types->type != GgufValueType::kArray || types->ints.size() != n) {
      Fail("'{}': key 'tokenizer.ggml.token_type' must be an integer array of {} entries (one per token), it has "
           "{} ({})", file.path, n, types->ints.size(), GgufValueTypeName(types->type));
    }
    vocab.types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = types->ints[i];
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        Fail("'{}': key 'tokenizer.ggml.token_type' entry {} is {}, expected 0..6", file.path, i, t);
      }
      vocab.types.push_back(static_cast<TokenType>(t));
    }
  }
  if (const GgufValue* merges = FindArray(file, "tokenizer.ggml.merges", GgufValueType::kString, "string")) {
    vocab.merges = merges->strings;
  }
  // llama.cpp's loader: a vocabulary without scores scores every token 0; without types, all are normal;
  // without a pre-tokenizer name, "default" (with a warning there; byte-level vocabs need one to work).
  if (vocab.scores.empty()) vocab.scores.assign(n, 0.0f);
  if (vocab.types.empty()) vocab.types.assign(n, TokenType::kNormal);
  if (vocab.pre.empty() && vocab.model != "llama") vocab.pre = "default";

  // Defaults as llama.cpp's loader has them when a key is absent.
  const int32_t n_tokens = static_cast<int32_t>(n);
  if (vocab.model == "gpt2") {
    vocab.bos_id = 11;
    vocab.eos_id = 11;
    vocab.unk_id = -1;
    vocab.add_bos = false;
    vocab.add_space_prefix = false;
  }
  vocab.bos_id = ReadTokenId(file, "tokenizer.ggml.bos_token_id", n_tokens, true).value_or(vocab.bos_id);
  vocab.eos_id = ReadTokenId(file, "tokenizer.ggml.eos_token_id", n_tokens, true).value_or(vocab.eos_id);
  vocab.unk_id = ReadTokenId(file, "tokenizer.ggml.unknown_token_id", n_tokens, true).value_or(vocab.unk_id);
  vocab.pad_id = ReadTokenId(file, "tokenizer.ggml.padding_token_id", n_tokens, false).value_or(vocab.pad_id);
  if (vocab.bos_id >= n_tokens) vocab.bos_id = -1;
  if (vocab.eos_id >= n_tokens) vocab.eos_id = -1;
  if (vocab.unk_id >= n_tokens) vocab.unk_id = -1;
  vocab.add_bos = file.GetBool("tokenizer.ggml.add_bos_token").value_or(vocab.add_bos);
  vocab.add_eos = file.GetBool("tokenizer.ggml.add_eos_token").value_or(vocab.add_eos);
  vocab.add_space_prefix = file.GetBool("tokenizer.ggml.add_space_prefix").value_or(vocab.add_space_prefix);
  return vocab;
}

void WriteVocabToGguf(const Vocab& vocab, GgufWriter& writer) {
  const size_t n = vocab.pieces.size();
  if (n == 0) Fail("cannot write an empty vocabulary to GGUF");
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    Fail("vocabulary has {} scores for {} tokens", vocab.scores.size(), n);
  }
  if (!vocab.types.empty() && vocab.types.size() != n) {
    Fail("vocabulary has {} token types for {} tokens", vocab.types.size(), n);
  }
  if (vocab.pre.empty() && vocab.model != "llama") Fail("a '{}' vocabulary needs its pre-tokenizer name", vocab.model);
  writer.SetString(kModelKey, vocab.model);
  // convert_hf_to_gguf.py writes "default" for sentencepiece vocabularies.
  writer.SetString("tokenizer.ggml.pre", vocab.pre.empty() && vocab.model == "llama" ? "default" : vocab.pre);
  writer.SetStringArray(kTokensKey, vocab.pieces);
  if (!vocab.scores.empty()) writer.SetFloat32Array("tokenizer.ggml.scores", vocab.scores);
  if (!vocab.types.empty()) {
    std::vector<int32_t> types;
    types.reserve(n);
    for (TokenType t : vocab.types) types.push_back(static_cast<int32_t>(t));
    writer.SetInt32Array("tokenizer.ggml.token_type", std::move(types));
  }
  if (!vocab.merges.empty()) writer.SetStringArray("tokenizer.ggml.merges", vocab.merges);
  auto id = [&](const char* key, int32_t value) {
    if (value >= 0) writer.SetUint32(key, static_cast<uint32_t>(value));
  };
  id("tokenizer.ggml.bos_token_id", vocab.bos_id);
  id("tokenizer.ggml.eos_token_id", vocab.eos_id);
  id("tokenizer.ggml.unknown_token_id", vocab.unk_id);
  id("tokenizer.ggml.padding_token_id", vocab.pad_id);
  writer.SetBool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  writer.SetBool("tokenizer.ggml.add_eos_token", vocab.add_eos);
  writer.SetBool("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix);
}

}  // namespace mixq
