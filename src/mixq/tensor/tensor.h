// Tensors: TensorView (non-owning, usually into an mmapped file) and Tensor (owning, aligned storage).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mixq/base/aligned_buffer.h"
#include "mixq/tensor/dtype.h"

namespace mixq {

// Shapes are row-major, outermost first: a weight matrix is [rows, cols] = [out_features, in_features],
// with each row contiguous (GGUF lists the same dims innermost first as `ne`).
using Shape = std::vector<int64_t>;

std::string ShapeString(const Shape& shape);  // "[4096, 11008]"
int64_t ElementCount(const Shape& shape);

// Bytes of a tensor of `shape` in `dtype` (rows of shape.back() elements; `group` as in RowBytes);
// nullopt if a row is not whole blocks or the size overflows.
std::optional<size_t> TensorBytes(DType dtype, const Shape& shape, int64_t group = 0);

// The sparse FP16 part of a dense-and-sparse weight matrix (salient weights, docs/salient.md): CSR over
// the rows. At a listed position the dense part stores an exact zero, so W = dense + sparse holds exactly.
// Non-owning: the arrays live in the mmapped file or in tensors the model owns.
struct SparseRowsView {
  const uint32_t* row_ptr = nullptr;  // [rows + 1], row_ptr[0] == 0, non-decreasing, row_ptr[rows] == nnz
  const uint16_t* cols = nullptr;     // [nnz] column of each value, increasing within a row (cols < 65536)
  const uint16_t* values = nullptr;   // [nnz] IEEE FP16 bits
  int64_t nnz = 0;

  bool empty() const { return row_ptr == nullptr; }
  // Bytes the sparse part occupies (row pointers + columns + values), counted in bits per weight.
  size_t bytes(int64_t rows) const {
    return empty() ? 0 : static_cast<size_t>(rows + 1) * 4 + static_cast<size_t>(nnz) * 4;
  }
};

// How MatMul treats the activations of a linear layer (docs/w8a8.md). kFormat: whatever the weight format's
// kernel does (float for float weights; int8 blocks of 32 with their own scales for quantized weights, which
// is nearly lossless). kInt8Tensor: W8A8 with one static int8 scale for the whole input tensor, from
// calibration. kInt8Token: W8A8 with a dynamic int8 scale per token (row of the input).
enum class ActivationQuant : uint8_t { kFormat = 0, kInt8Tensor = 1, kInt8Token = 2 };

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const std::byte* data = nullptr;
  size_t bytes = 0;
  int64_t group = 0;  // mixq INT types: weights per scale group (0: the whole row); see int_layout.h
  SparseRowsView salient;                                // empty unless salient weights were split off
  ActivationQuant activation = ActivationQuant::kFormat;
  float activation_scale = 0.0f;                         // kInt8Tensor: the static scale (max|x| / 127)
  // The same rows repacked 8 at a time for decode (QuantKernel::interleaved), or nullptr; `data` stays the
  // stored layout, which every reader but the matrix kernels uses.
  const std::byte* interleaved = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t elements() const { return ElementCount(shape); }
  int64_t cols() const { return shape.empty() ? 0 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : elements() / cols(); }
  size_t row_bytes() const { return rows() == 0 ? 0 : bytes / static_cast<size_t>(rows()); }
  const std::byte* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes(); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data); }
};

struct Tensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  AlignedBuffer storage;
  int64_t group = 0;  // as TensorView::group

  // Allocates zeroed storage for `shape` in `dtype`; aborts if the shape is not whole blocks.
  static Tensor Zeros(std::string name, DType dtype, Shape shape, int64_t group = 0);
  TensorView view() const;
  template <typename T>
  T* as() { return storage.as<T>(); }
};

}  // namespace mixq
