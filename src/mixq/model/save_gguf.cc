// Writing a model as llama-architecture GGUF: llama.* keys, tokenizer, every tensor converted and permuted.
#include "mixq/model/save_gguf.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/check.h"
#include "mixq/base/error.h"
#include "mixq/base/log.h"
#include "mixq/formats/convert.h"
#include "mixq/formats/weight_format.h"
#include "mixq/io/gguf.h"
#include "mixq/model/vocab_gguf.h"

namespace mixq {
namespace {

bool SameFile(const std::string& a, const std::string& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) && !ec;
}

}  // namespace

// Row by row through float, so memory stays one row beyond the output.
void ConvertRows(const TensorView& src, DType dst_type, std::byte* dst, const std::string& path) {
  if (!CanReadAsFloat(src.dtype)) {
    Fail("cannot write '{}': tensor '{}' is {}, which mixq cannot convert to {}", path, src.name,
         DTypeName(src.dtype), DTypeName(dst_type));
  }
  const int64_t cols = src.cols();
  const size_t dst_row_bytes = *StorageBytes(dst_type, cols);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < src.rows(); ++r) {
    TensorRowToFloat(src, r, row.data());
    RowFromFloat(dst_type, row.data(), dst + static_cast<size_t>(r) * dst_row_bytes, cols);
  }
}

namespace {

// convert_hf_to_gguf.py's permute: w.reshape(n_head, 2, head_dim / 2, cols).swapaxes(1, 2), so that the
// rotate-half pairs (i, i + head_dim/2) of each head become the adjacent pairs (2i, 2i + 1).
void PermuteRowsForInterleavedRope(std::byte* data, size_t row_bytes, int64_t n_heads, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  std::vector<std::byte> head(static_cast<size_t>(head_dim) * row_bytes);
  for (int64_t h = 0; h < n_heads; ++h) {
    std::byte* base = data + static_cast<size_t>(h * head_dim) * row_bytes;
    std::memcpy(head.data(), base, head.size());
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t t = 0; t < 2; ++t) {
        std::memcpy(base + static_cast<size_t>(2 * j + t) * row_bytes,
                    head.data() + static_cast<size_t>(t * half + j) * row_bytes, row_bytes);
      }
    }
  }
}

// The same permutation as a row order: new row i is old row order[i].
std::vector<int64_t> InterleavedRopeRowOrder(int64_t rows, int64_t n_heads, int64_t head_dim) {
  std::vector<int64_t> order(static_cast<size_t>(rows));
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) order[static_cast<size_t>(r)] = r;
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t j = 0; j < half; ++j) {
      for (int64_t t = 0; t < 2; ++t) order[static_cast<size_t>(h * head_dim + 2 * j + t)] = h * head_dim + t * half + j;
    }
  }
  return order;
}

SparseRows CopySparseRows(const SparseRowsView& s, int64_t rows) {
  SparseRows out;
  out.row_ptr.assign(s.row_ptr, s.row_ptr + rows + 1);
  out.cols.assign(s.cols, s.cols + s.nnz);
  out.values.assign(s.values, s.values + s.nnz);
  return out;
}

// W8A8 tensors' activation mode and static scale; nothing for kFormat.
void WriteActivationKeys(GgufWriter& w, const std::string& name, const TensorEncoding& encoding) {
  if (encoding.activation == ActivationQuant::kFormat) return;
  MIXQ_CHECK(encoding.dtype == DType::kInt8Sym && encoding.group == 0);
  w.SetString(GgufActivationKey(name), ActivationQuantName(encoding.activation));
  if (encoding.activation == ActivationQuant::kInt8Tensor) {
    MIXQ_CHECK(std::isfinite(encoding.activation_scale) && encoding.activation_scale > 0.0f);
    w.SetFloat32(GgufActivationScaleKey(name), encoding.activation_scale);
  }
}

}  // namespace

std::optional<uint32_t> GgufFileType(DType weight_type) {
  switch (weight_type) {
    case DType::kF32:
      return 0;  // LLAMA_FTYPE_ALL_F32
    case DType::kF16:
      return 1;  // LLAMA_FTYPE_MOSTLY_F16
    case DType::kQ4_0:
      return 2;
    case DType::kQ4_1:
      return 3;
    case DType::kQ8_0:
      return 7;
    case DType::kQ5_0:
      return 8;
    case DType::kQ5_1:
      return 9;
    case DType::kQ2_K:
      return 10;
    case DType::kQ3_K:
      return 12;  // Q3_K_M
    case DType::kQ4_K:
      return 15;  // Q4_K_M
    case DType::kQ5_K:
      return 17;  // Q5_K_M
    case DType::kQ6_K:
      return 18;
    case DType::kIQ4_NL:
      return 25;
    case DType::kIQ4_XS:
      return 30;
    case DType::kBF16:
      return 32;  // LLAMA_FTYPE_MOSTLY_BF16
    default:
      return std::nullopt;
  }
}

void WriteGgufModel(const Model& model, const std::string& path, std::optional<uint32_t> file_type,
                    const TensorEncoder& encode) {
  if (SameFile(path, model.path)) Fail("refusing to overwrite the input model '{}' with its own conversion", path);
  for (const auto& mapping : model.mappings) {
    if (mapping && SameFile(path, mapping->path())) {
      Fail("refusing to overwrite '{}': the model being written is read from it", path);
    }
  }
  const LlamaConfig& c = model.config;
  ValidateConfig(c, model.path);

  GgufWriter w;
  w.SetString("general.architecture", "llama");
  const auto name = model.metadata.find("general.name");
  w.SetString("general.name", name != model.metadata.end() ? name->second : std::filesystem::path(path).stem().string());
  w.SetUint32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  w.SetUint32("llama.context_length", static_cast<uint32_t>(c.context_length));
  w.SetUint32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  w.SetUint32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  w.SetUint32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.SetUint32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.SetFloat32("llama.rope.freq_base", c.rope_theta);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", c.rms_eps);
  if (c.n_heads * c.head_dim != c.dim) {
    w.SetUint32("llama.attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.SetUint32("llama.attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  if (file_type) w.SetUint32("general.file_type", *file_type);
  w.SetUint32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  w.SetUint32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  if (model.tokenizer.loaded()) {
    WriteVocabToGguf(model.tokenizer.vocab(), w);
  } else {
    Warn("'{}' is written without a tokenizer: llama.cpp will need one", path);
  }
  for (const auto& [key, value] : model.metadata) {
    // Activation modes belong to tensors: they are written from each tensor's encoding below, never copied.
    if (key.starts_with("mixq.") && !IsGgufActivationKey(key)) w.SetString(key, value);
  }

  if (!c.rope_freq_factors.empty()) {
    if (static_cast<int64_t>(c.rope_freq_factors.size()) != c.head_dim / 2) {
      Fail("cannot write '{}': {} rope frequency factors for head_dim {} (expected {})", path,
           c.rope_freq_factors.size(), c.head_dim, c.head_dim / 2);
    }
    w.AddTensor("rope_freqs.weight", DType::kF32, {c.head_dim / 2}, c.rope_freq_factors.data(),
                c.rope_freq_factors.size() * sizeof(float));
  }
  ForEachTensor(c, model.weights, [&](const TensorSlot& slot) {
    ValidateTensor(slot, model.path);
    const TensorView& src = *slot.view;
    TensorEncoding encoding = encode(slot);
    if (!encoding.produce) {
      encoding.activation = src.activation;
      encoding.activation_scale = src.activation_scale;
    }
    WriteActivationKeys(w, slot.name, encoding);
    const bool is_q = slot.name.ends_with(".attn_q.weight");
    const bool is_k = slot.name.ends_with(".attn_k.weight");
    const bool permute = c.rope_style == RopeStyle::kHalf && (is_q || is_k);
    const int64_t n_heads = is_q ? c.n_heads : c.n_kv_heads;
    if (!encoding.produce) {
      MIXQ_CHECK(encoding.dtype == src.dtype && encoding.group == src.group);
      if (!src.salient.empty()) {
        encoding.salient_nnz = src.salient.nnz;
        encoding.salient = std::make_shared<SparseRows>();
      }
      if (!permute && src.salient.empty()) {
        w.AddTensor(slot.name, src.dtype, src.shape, src.data, src.bytes, src.group);
        return;
      }
      encoding.produce = [src, salient = encoding.salient](std::byte* dst) {
        std::memcpy(dst, src.data, src.bytes);
        if (salient) *salient = CopySparseRows(src.salient, src.rows());
      };
    }
    const std::optional<size_t> bytes = TensorBytes(encoding.dtype, src.shape, encoding.group);
    if (!bytes) {
      Fail("cannot write '{}': tensor '{}' {} cannot be stored as {}", path, slot.name, ShapeString(src.shape),
           DTypeName(encoding.dtype));
    }
    const int64_t rows = src.rows();
    const int64_t nnz = encoding.salient_nnz;
    if (nnz > 0) {
      MIXQ_CHECK(encoding.salient != nullptr);
      if (src.cols() > kMaxSalientCols) {
        Fail("cannot write '{}': tensor '{}' has {} columns; a salient part indexes at most {}", path, slot.name,
             src.cols(), kMaxSalientCols);
      }
      if (nnz >= (int64_t{1} << 31)) Fail("cannot write '{}': tensor '{}' has {} salient weights", path, slot.name, nnz);
    }
    // Encoded tensors are produced one at a time while the file is written, so memory stays at one
    // tensor beyond the mmapped input whatever the model's size. The salient arrays come right after
    // their tensor in the file, from what its `produce` left in encoding.salient.
    const size_t row_bytes = *bytes / static_cast<size_t>(rows);
    w.AddTensor(
        slot.name, encoding.dtype, src.shape, *bytes,
        [produce = std::move(encoding.produce), salient = encoding.salient, nnz, rows, permute, row_bytes, n_heads,
         &c, name = slot.name](std::byte* dst) {
          produce(dst);
          if (nnz > 0) {
            MIXQ_CHECK_EQ(salient->nnz(), nnz);
            MIXQ_CHECK_EQ(static_cast<int64_t>(salient->row_ptr.size()), rows + 1);
            MIXQ_CHECK_EQ(salient->values.size(), salient->cols.size());
          }
          if (!permute) return;
          PermuteRowsForInterleavedRope(dst, row_bytes, n_heads, c.head_dim);
          if (nnz > 0) *salient = PermuteSparseRows(salient->view(), InterleavedRopeRowOrder(rows, n_heads, c.head_dim));
        },
        encoding.group);
    if (nnz == 0) return;
    const std::shared_ptr<SparseRows> salient = encoding.salient;
    w.AddTensor(SalientRowsName(slot.name), DType::kI32, {rows + 1}, static_cast<size_t>(rows + 1) * 4,
                [salient](std::byte* dst) { std::memcpy(dst, salient->row_ptr.data(), salient->row_ptr.size() * 4); });
    w.AddTensor(SalientColsName(slot.name), DType::kI16, {nnz}, static_cast<size_t>(nnz) * 2,
                [salient](std::byte* dst) { std::memcpy(dst, salient->cols.data(), salient->cols.size() * 2); });
    w.AddTensor(SalientValuesName(slot.name), DType::kF16, {nnz}, static_cast<size_t>(nnz) * 2,
                [salient](std::byte* dst) {
                  std::memcpy(dst, salient->values.data(), salient->values.size() * 2);
                  *salient = SparseRows{};  // written: free it
                });
  });
  w.Write(path);
}

void SaveGgufModel(const Model& model, const std::string& path, DType weight_type) {
  if (weight_type != DType::kF32 && weight_type != DType::kF16 && weight_type != DType::kBF16) {
    Fail("cannot write '{}' with weights of type {}: choose f32, f16 or bf16 (or quantize)", path,
         DTypeName(weight_type));
  }
  WriteGgufModel(model, path, GgufFileType(weight_type), [&](const TensorSlot& slot) {
    const TensorView& src = *slot.view;
    const DType dst_type = slot.role == TensorRole::kNorm ? DType::kF32 : weight_type;
    if (src.dtype == dst_type) return TensorEncoding{dst_type, src.group, nullptr};
    return TensorEncoding{dst_type, 0, [src, dst_type, path](std::byte* dst) { ConvertRows(src, dst_type, dst, path); }};
  });
}

}  // namespace mixq
