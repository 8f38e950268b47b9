// InterleaveForDecode: the load-time repacking of weight rows for the decode kernels (model.h).
#include <omp.h>

#include <memory>
#include <vector>

#include "mixq/base/aligned_buffer.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/model/model.h"

namespace mixq {

namespace {

// Each copy starts on a page of its own within the shared buffer.
constexpr size_t kCopyAlignment = 4096;

size_t AlignedOffset(size_t bytes) { return (bytes + kCopyAlignment - 1) / kCopyAlignment * kCopyAlignment; }

// The size of w's interleaved copy.
size_t InterleavedBytes(const TensorView& w, const QuantKernel& kernel) {
  return kernel.interleaved->group_bytes(w.cols(), w.group) * static_cast<size_t>(w.rows() / InterleavedRows::kRows);
}

}  // namespace

int InterleaveForDecode(Model& model) {
  constexpr int kRows = InterleavedRows::kRows;
  const bool tied = model.config.tied_embeddings;
  // The matrices to repack and where each copy goes. One buffer for all of them: huge pages back only whole
  // aligned 2 MiB pieces, so one buffer per matrix left each one's last piece on 4 KiB pages.
  struct Copy {
    TensorView* view;
    const QuantKernel* kernel;
    size_t offset;
  };
  std::vector<Copy> copies;
  size_t total = 0;
  ForEachTensor(model.config, model.weights, [&](TensorSlot& slot) {
    TensorView& w = *slot.view;
    // The embedding table is a matrix of the forward pass only when it is also the output head.
    const bool matrix = slot.role == TensorRole::kLinear || slot.role == TensorRole::kOutput ||
                        (slot.role == TensorRole::kEmbedding && tied);
    if (!matrix || w.empty() || w.interleaved != nullptr || w.activation != ActivationQuant::kFormat) return;
    const QuantKernel* kernel = FindQuantKernel(w.dtype);
    if (kernel == nullptr || kernel->interleaved == nullptr || w.rows() % kRows != 0 ||
        !kernel->interleaved->accepts(w.cols(), w.group)) {
      return;
    }
    copies.push_back({&w, kernel, total});
    total += AlignedOffset(InterleavedBytes(w, *kernel));
  });
  if (copies.empty()) return 0;
  AlignedBuffer& buffer = model.decode_copies.emplace_back();
  buffer.Resize(total, AlignedBuffer::Pages::kHuge);
  for (const Copy& c : copies) {
    TensorView& w = *c.view;
    const size_t group_bytes = c.kernel->interleaved->group_bytes(w.cols(), w.group);
    const int64_t n_groups = w.rows() / kRows;
    std::byte* dst = buffer.data() + c.offset;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n_groups; ++g) {
      c.kernel->interleaved->interleave(w.data + static_cast<size_t>(g) * kRows * w.row_bytes(), w.row_bytes(),
                                        w.cols(), w.group, dst + static_cast<size_t>(g) * group_bytes);
    }
    // Released as each copy is made, so memory holds about one copy of the weights throughout.
    for (const auto& mapping : model.mappings) mapping->Release(w.data, w.bytes);
    w.interleaved = dst;
  }
  // A tied head is token_embd (GGUF loads give `output` a copy of its view, which ForEachTensor skips).
  LlamaWeights& weights = model.weights;
  if (tied && weights.output.data == weights.token_embd.data) weights.output.interleaved = weights.token_embd.interleaved;
  return static_cast<int>(copies.size());
}

std::vector<std::span<const std::byte>> DecodeReadSpans(const Model& model) {
  std::vector<std::span<const std::byte>> spans;
  const auto add = [&](const TensorView& w) {
    if (w.interleaved != nullptr) {
      spans.emplace_back(w.interleaved, InterleavedBytes(w, *FindQuantKernel(w.dtype)));
    } else {
      spans.emplace_back(w.data, w.bytes);
    }
  };
  ForEachTensor(model.config, model.weights, [&](const TensorSlot& slot) {
    if (slot.role == TensorRole::kLinear || slot.role == TensorRole::kOutput) add(*slot.view);
  });
  if (model.config.tied_embeddings) add(model.weights.token_embd);
  return spans;
}

}  // namespace mixq
