// Tokenizer vocabularies in GGUF metadata (tokenizer.ggml.*): read into a Vocab, written from one.
#pragma once

#include "mixq/io/gguf.h"
#include "mixq/model/tokenizer.h"

namespace mixq {

// Whether the file carries a tokenizer (tokenizer.ggml.model and tokens).
bool GgufHasVocab(const GgufFile& file);
// Reads tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,bos/eos/unknown/padding_token_id,
// add_bos_token,add_eos_token,add_space_prefix}; throws mixq::Error naming the file and key when a
// required key is missing or the arrays disagree in length.
Vocab ReadVocabFromGguf(const GgufFile& file);
// Writes the same keys, as llama.cpp's converters do.
void WriteVocabToGguf(const Vocab& vocab, GgufWriter& writer);

}  // namespace mixq
