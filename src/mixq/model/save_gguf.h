// Writing a loaded model as a llama-architecture GGUF v3 file that llama.cpp loads and runs.
#pragma once

#include <string>

#include "mixq/model/model.h"
#include "mixq/tensor/dtype.h"

namespace mixq {

// Writes `model` to `path` with every weight matrix stored as `weight_type` (F32, F16 or BF16; norms stay
// F32), the llama.* keys convert_hf_to_gguf.py writes, the tokenizer (tokenizer.ggml.*) when the model
// has one, and model.metadata's "mixq.*" entries. Rotate-half (Hugging Face) q/k rows are permuted into
// GGUF's interleaved order, as convert_hf_to_gguf.py does. The file is written atomically; writing over
// the model's own input file is refused. Throws mixq::Error naming the file or tensor on failure.
void SaveGgufModel(const Model& model, const std::string& path, DType weight_type);

// llama.cpp's general.file_type (LLAMA_FTYPE_*) for a file whose weights are all `weight_type`.
uint32_t GgufFileType(DType weight_type);

}  // namespace mixq
