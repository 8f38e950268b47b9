// The benchmarks' copy of a matrix's rows interleaved for decode (QuantKernel::interleaved), made as
// InterleaveForDecode makes it at load, so a GEMV benchmark can run the kernels the model commands run.
#pragma once

#include <cstddef>
#include <memory>

#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

// The rows of `w` interleaved 8 at a time by `kernel`; only the latest copy is kept.
inline const std::byte* InterleavedCopy(const Tensor& w, const QuantKernel& kernel) {
  static std::unique_ptr<Tensor> cached;
  static const Tensor* source = nullptr;
  if (cached && source == &w && cached->dtype == w.dtype && cached->shape == w.shape && cached->group == w.group) {
    return cached->storage.data();
  }
  cached.reset();
  const TensorView v = w.view();
  constexpr int kRows = InterleavedRows::kRows;
  const size_t group_bytes = kernel.interleaved->group_bytes(v.cols(), v.group);
  cached = std::make_unique<Tensor>();
  cached->dtype = w.dtype;
  cached->shape = w.shape;
  cached->group = w.group;
  cached->storage.Resize(group_bytes * static_cast<size_t>(v.rows() / kRows));
  source = &w;
  for (int64_t g = 0; g < v.rows() / kRows; ++g) {
    kernel.interleaved->interleave(v.data + static_cast<size_t>(g) * kRows * v.row_bytes(), v.row_bytes(), v.cols(),
                                   v.group, cached->storage.data() + static_cast<size_t>(g) * group_bytes);
  }
  return cached->storage.data();
}

}  // namespace mixq
