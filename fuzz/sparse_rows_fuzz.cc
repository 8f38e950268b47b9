// libFuzzer target: any salient part a file can declare is either refused by ValidateSparseRows with a
// mixq::Error or safe for the kernel: AddSparseProducts then reads only inside its arrays and x.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mixq/base/error.h"
#include "mixq/kernels/sparse_dot.h"
#include "mixq/tensor/sparse_rows.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  // Header: rows (1..16), cols (1..1024), nnz (0..255); then row pointers, columns, values as raw bytes.
  const int64_t rows = 1 + data[0] % 16;
  const int64_t cols = 1 + ((data[1] | (data[2] << 8)) % 1024);
  const int64_t nnz = data[3];
  data += 4;
  size -= 4;
  const size_t need = static_cast<size_t>(rows + 1) * 4 + static_cast<size_t>(nnz) * 4;
  if (size < need) return 0;
  // Exactly-sized copies, so AddressSanitizer sees any read past an array's end.
  std::vector<uint32_t> row_ptr(static_cast<size_t>(rows + 1));
  std::vector<uint16_t> columns(static_cast<size_t>(nnz)), values(static_cast<size_t>(nnz));
  std::memcpy(row_ptr.data(), data, row_ptr.size() * 4);
  std::memcpy(columns.data(), data + row_ptr.size() * 4, columns.size() * 2);
  std::memcpy(values.data(), data + row_ptr.size() * 4 + columns.size() * 2, values.size() * 2);
  const mixq::SparseRowsView sparse{row_ptr.data(), columns.data(), values.data(), nnz};
  try {
    mixq::ValidateSparseRows(sparse, rows, cols, "fuzz.gguf", "w");
  } catch (const mixq::Error&) {
    return 0;
  }
  std::vector<float> x(static_cast<size_t>(cols), 1.0f), y(static_cast<size_t>(rows), 0.0f);
  mixq::AddSparseProducts(sparse, 0, rows, x.data(), cols, 1, y.data(), rows);
  mixq::AddSparseProductsRef(sparse, 0, rows, x.data(), cols, 1, y.data(), rows);
  return 0;
}
