// Tensor shapes and owning tensors.
#include "mixq/tensor/tensor.h"

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

Tensor Tensor::Zeros(std::string name, DType dtype, Shape shape) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  const auto bytes = StorageBytes(dtype, ElementCount(t.shape));
  MIXQ_CHECK(bytes.has_value());
  t.storage.Resize(*bytes);
  return t;
}

TensorView Tensor::view() const {
  return TensorView{name, dtype, shape, storage.data(), storage.size()};
}

}  // namespace mixq
