// InterleaveForDecode: the load-time repacking of weight rows for the decode kernels (model.h).
#include <omp.h>

#include <memory>

#include "mixq/base/aligned_buffer.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/model/model.h"

namespace mixq {

int InterleaveForDecode(Model& model) {
  constexpr int kRows = InterleavedRows::kRows;
  int repacked = 0;
  const bool tied = model.config.tied_embeddings;
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
    const size_t group_bytes = kernel->interleaved->group_bytes(w.cols(), w.group);
    const int64_t n_groups = w.rows() / kRows;
    auto copy = std::make_unique<Tensor>();
    copy->name = w.name + " (interleaved)";
    copy->dtype = w.dtype;
    copy->shape = w.shape;
    copy->group = w.group;
    copy->storage.Resize(group_bytes * static_cast<size_t>(n_groups), AlignedBuffer::Pages::kHuge);
    std::byte* dst = copy->storage.data();
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n_groups; ++g) {
      kernel->interleaved->interleave(w.data + static_cast<size_t>(g) * kRows * w.row_bytes(), w.row_bytes(), w.cols(),
                                      w.group, dst + static_cast<size_t>(g) * group_bytes);
    }
    for (const auto& mapping : model.mappings) mapping->Release(w.data, w.bytes);
    w.interleaved = dst;
    model.owned_tensors.push_back(std::move(copy));
    ++repacked;
  });
  // A tied head is token_embd (GGUF loads give `output` a copy of its view, which ForEachTensor skips).
  LlamaWeights& weights = model.weights;
  if (tied && weights.output.data == weights.token_embd.data) weights.output.interleaved = weights.token_embd.interleaved;
  return repacked;
}

}  // namespace mixq
