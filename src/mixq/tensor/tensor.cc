// Tensor shapes and owning tensors.
#include "mixq/tensor/tensor.h"

#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mixq/base/check.h"

namespace mixq {

std::string ShapeString(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

int64_t ElementCount(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::optional<size_t> TensorBytes(DType dtype, const Shape& shape, int64_t group) {
  const int64_t cols = shape.empty() ? 1 : shape.back();
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < shape.size(); ++d) {
    if (shape[d] < 0 || (shape[d] != 0 && rows > std::numeric_limits<int64_t>::max() / shape[d])) return std::nullopt;
    rows *= shape[d];
  }
  const std::optional<size_t> row = RowBytes(dtype, cols, group);
  if (!row) return std::nullopt;
  if (rows != 0 && *row > std::numeric_limits<size_t>::max() / static_cast<size_t>(rows)) return std::nullopt;
  return *row * static_cast<size_t>(rows);
}

Tensor Tensor::Zeros(std::string name, DType dtype, Shape shape, int64_t group) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.group = group;
  const auto bytes = TensorBytes(dtype, t.shape, group);
  MIXQ_CHECK(bytes.has_value());
  t.storage.Resize(*bytes);
  return t;
}

TensorView Tensor::view() const {
  return TensorView{name, dtype, shape, storage.data(), storage.size(), group};
}

}  // namespace mixq
