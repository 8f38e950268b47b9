// Writing a loaded model as a llama-architecture GGUF v3 file that llama.cpp loads and runs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "mixq/model/model.h"
#include "mixq/tensor/dtype.h"
#include "mixq/tensor/sparse_rows.h"

namespace mixq {

// How one tensor is stored in the written file. `produce` fills the tensor's bytes (rows in the model's
// own order; the writer applies GGUF's q/k permutation afterwards) when the writer reaches it, so a
// converter or quantizer holds one tensor at a time; a null `produce` copies the source bytes as they are
// (dtype and group must then be the source's).
// A salient (sparse FP16) part: when salient_nnz > 0, `produce` also fills *salient with exactly that many
// entries (rows in the model's own order, like the dense bytes), and the writer stores it as the three
// companion tensors of tensor/sparse_rows.h. The count is declared up front because GGUF's header lists
// every tensor's size before any data. A null `produce` copies the source's own salient part as it is.
// `activation` / `activation_scale` (W8A8, docs/w8a8.md; only with dtype kInt8Sym and group 0) are written
// as the keys GgufActivationKey / GgufActivationScaleKey; a copied tensor (null `produce`) keeps the
// source's own mode.
struct TensorEncoding {
  DType dtype = DType::kF32;
  int64_t group = 0;
  std::function<void(std::byte* dst)> produce;
  int64_t salient_nnz = 0;
  std::shared_ptr<SparseRows> salient;
  ActivationQuant activation = ActivationQuant::kFormat;
  float activation_scale = 0.0f;  // kInt8Tensor: the static scale (max|x| / 127)
};
using TensorEncoder = std::function<TensorEncoding(const TensorSlot& slot)>;

// Writes `model` as a llama-architecture GGUF v3 file with each tensor encoded as `encode` says: the
// llama.* keys convert_hf_to_gguf.py writes, general.file_type when given, the tokenizer, model.metadata's
// "mixq.*" entries. Rotate-half (Hugging Face) q/k rows are permuted into GGUF's interleaved order. The file
// is written atomically; writing over one of the model's own input files is refused.
void WriteGgufModel(const Model& model, const std::string& path, std::optional<uint32_t> file_type,
                    const TensorEncoder& encode);

// Rows of `src` (any type RowToFloat reads) re-encoded as F32, F16 or BF16 into dst.
void ConvertRows(const TensorView& src, DType dst_type, std::byte* dst, const std::string& path);

// Writes `model` to `path` with every weight matrix stored as `weight_type` (F32, F16 or BF16; norms stay
// F32), the llama.* keys convert_hf_to_gguf.py writes, the tokenizer (tokenizer.ggml.*) when the model
// has one, and model.metadata's "mixq.*" entries. Rotate-half (Hugging Face) q/k rows are permuted into
// GGUF's interleaved order, as convert_hf_to_gguf.py does. The file is written atomically; writing over
// the model's own input file is refused. Throws mixq::Error naming the file or tensor on failure.
void SaveGgufModel(const Model& model, const std::string& path, DType weight_type);

// llama.cpp's general.file_type (LLAMA_FTYPE_*) for a file whose weights are mostly `weight_type`;
// nullopt for types llama.cpp has no file type for (mixq's INT types).
std::optional<uint32_t> GgufFileType(DType weight_type);

}  // namespace mixq
