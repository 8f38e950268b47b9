// The owning form of a sparse FP16 part (salient weights) and the checks every reader applies to one.
//
// A quantizer builds SparseRows beside a dense tensor; TensorView::salient (tensor.h) points into it or
// into a file. In GGUF the three arrays are tensors named after the weight (docs/salient.md):
//   <weight>.salient_rows  I32 [rows + 1]  CSR row pointers (non-negative, read as uint32)
//   <weight>.salient_cols  I16 [nnz]       column of each value (read as uint16)
//   <weight>.salient_vals  F16 [nnz]       the values
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mixq/tensor/tensor.h"

namespace mixq {

struct SparseRows {
  std::vector<uint32_t> row_ptr;  // [rows + 1]
  std::vector<uint16_t> cols;     // [nnz]
  std::vector<uint16_t> values;   // [nnz] FP16 bits

  int64_t nnz() const { return static_cast<int64_t>(cols.size()); }
  SparseRowsView view() const {
    return row_ptr.empty() ? SparseRowsView{}
                           : SparseRowsView{row_ptr.data(), cols.data(), values.data(), nnz()};
  }
};

// The most columns a salient part can index (uint16 column indices).
inline constexpr int64_t kMaxSalientCols = 65536;

// The GGUF names of the three arrays of `weight_name`'s sparse part.
std::string SalientRowsName(std::string_view weight_name);
std::string SalientColsName(std::string_view weight_name);
std::string SalientValuesName(std::string_view weight_name);

// Throws mixq::Error naming `source` and `tensor` unless `sparse` is a valid CSR for a [rows, cols] matrix:
// row_ptr starts at 0, never decreases, ends at nnz; columns < cols and strictly increasing within a row;
// every value finite.
void ValidateSparseRows(const SparseRowsView& sparse, int64_t rows, int64_t cols, const std::string& source,
                        std::string_view tensor);

// dst[0..cols) += the sparse values of row r (the one place a sparse row is expanded).
void AddSparseRow(const SparseRowsView& sparse, int64_t r, float* dst);

// The rows of `sparse` reordered so that new row i is old row perm[i] (GGUF's q/k row permutation).
SparseRows PermuteSparseRows(const SparseRowsView& sparse, const std::vector<int64_t>& perm);

}  // namespace mixq
