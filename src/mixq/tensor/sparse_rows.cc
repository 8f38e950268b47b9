// Sparse FP16 parts: names, validation, expansion and row permutation.
#include "mixq/tensor/sparse_rows.h"

#include <cmath>

#include <fmt/format.h>

#include "mixq/base/error.h"
#include "mixq/formats/float16.h"

namespace mixq {

std::string SalientRowsName(std::string_view weight_name) { return fmt::format("{}.salient_rows", weight_name); }
std::string SalientColsName(std::string_view weight_name) { return fmt::format("{}.salient_cols", weight_name); }
std::string SalientValuesName(std::string_view weight_name) { return fmt::format("{}.salient_vals", weight_name); }

void ValidateSparseRows(const SparseRowsView& sparse, int64_t rows, int64_t cols, const std::string& source,
                        std::string_view tensor) {
  if (sparse.empty()) return;
  if (cols > kMaxSalientCols) {
    Fail("'{}': tensor '{}' has {} columns; a salient part indexes at most {}", source, tensor, cols,
         kMaxSalientCols);
  }
  if (sparse.row_ptr[0] != 0) Fail("'{}': salient part of '{}' starts at {} (expected 0)", source, tensor, sparse.row_ptr[0]);
  // Pointers first, so that the column checks below only read inside the arrays.
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t begin = sparse.row_ptr[r];
    const uint32_t end = sparse.row_ptr[r + 1];
    if (end < begin || end > static_cast<uint64_t>(sparse.nnz)) {
      Fail("'{}': salient part of '{}': row {} spans [{}, {}) of {} values", source, tensor, r, begin, end,
           sparse.nnz);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t begin = sparse.row_ptr[r];
    for (uint32_t k = begin; k < sparse.row_ptr[r + 1]; ++k) {
      if (sparse.cols[k] >= cols || (k > begin && sparse.cols[k] <= sparse.cols[k - 1])) {
        Fail("'{}': salient part of '{}': row {} lists column {} (columns must increase and be < {})", source,
             tensor, r, sparse.cols[k], cols);
      }
      if (!std::isfinite(F16ToF32(sparse.values[k]))) {
        Fail("'{}': salient part of '{}': row {} column {} holds a non-finite value", source, tensor, r,
             sparse.cols[k]);
      }
    }
  }
  if (sparse.row_ptr[rows] != static_cast<uint64_t>(sparse.nnz)) {
    Fail("'{}': salient part of '{}' ends at {} but holds {} values", source, tensor, sparse.row_ptr[rows],
         sparse.nnz);
  }
}

void AddSparseRow(const SparseRowsView& sparse, int64_t r, float* dst) {
  if (sparse.empty()) return;
  for (uint32_t k = sparse.row_ptr[r]; k < sparse.row_ptr[r + 1]; ++k) dst[sparse.cols[k]] += F16ToF32(sparse.values[k]);
}

SparseRows PermuteSparseRows(const SparseRowsView& sparse, const std::vector<int64_t>& perm) {
  SparseRows out;
  out.row_ptr.reserve(perm.size() + 1);
  out.row_ptr.push_back(0);
  out.cols.reserve(static_cast<size_t>(sparse.nnz));
  out.values.reserve(static_cast<size_t>(sparse.nnz));
  for (const int64_t r : perm) {
    for (uint32_t k = sparse.row_ptr[r]; k < sparse.row_ptr[r + 1]; ++k) {
      out.cols.push_back(sparse.cols[k]);
      out.values.push_back(sparse.values[k]);
    }
    out.row_ptr.push_back(static_cast<uint32_t>(out.cols.size()));
  }
  return out;
}

}  // namespace mixq
