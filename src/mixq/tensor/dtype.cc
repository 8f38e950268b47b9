// The element-type traits table.
#include "mixq/tensor/dtype.h"

#include <array>
#include <cctype>
#include <limits>

#include "mixq/base/check.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

constexpr std::array kTraits = {
    DTypeTraits{DType::kF32, "F32", 1, 4, true},
    DTypeTraits{DType::kF16, "F16", 1, 2, true},
    DTypeTraits{DType::kQ4_0, "Q4_0", 32, 18, false},
    DTypeTraits{DType::kQ4_1, "Q4_1", 32, 20, false},
    DTypeTraits{DType::kQ5_0, "Q5_0", 32, 22, false},
    DTypeTraits{DType::kQ5_1, "Q5_1", 32, 24, false},
    DTypeTraits{DType::kQ8_0, "Q8_0", 32, 34, false},
    DTypeTraits{DType::kQ8_1, "Q8_1", 32, 36, false},
    DTypeTraits{DType::kQ2_K, "Q2_K", 256, 84, false},
    DTypeTraits{DType::kQ3_K, "Q3_K", 256, 110, false},
    DTypeTraits{DType::kQ4_K, "Q4_K", 256, 144, false},
    DTypeTraits{DType::kQ5_K, "Q5_K", 256, 176, false},
    DTypeTraits{DType::kQ6_K, "Q6_K", 256, 210, false},
    DTypeTraits{DType::kQ8_K, "Q8_K", 256, 292, false},
    DTypeTraits{DType::kIQ2_XXS, "IQ2_XXS", 256, 66, false},
    DTypeTraits{DType::kIQ2_XS, "IQ2_XS", 256, 74, false},
    DTypeTraits{DType::kIQ3_XXS, "IQ3_XXS", 256, 98, false},
    DTypeTraits{DType::kIQ1_S, "IQ1_S", 256, 50, false},
    DTypeTraits{DType::kIQ4_NL, "IQ4_NL", 32, 18, false},
    DTypeTraits{DType::kIQ3_S, "IQ3_S", 256, 110, false},
    DTypeTraits{DType::kIQ2_S, "IQ2_S", 256, 82, false},
    DTypeTraits{DType::kIQ4_XS, "IQ4_XS", 256, 136, false},
    DTypeTraits{DType::kI8, "I8", 1, 1, false},
    DTypeTraits{DType::kI16, "I16", 1, 2, false},
    DTypeTraits{DType::kI32, "I32", 1, 4, false},
    DTypeTraits{DType::kI64, "I64", 1, 8, false},
    DTypeTraits{DType::kF64, "F64", 1, 8, true},
    DTypeTraits{DType::kIQ1_M, "IQ1_M", 256, 56, false},
    DTypeTraits{DType::kBF16, "BF16", 1, 2, true},
    DTypeTraits{DType::kTQ1_0, "TQ1_0", 256, 54, false},
    DTypeTraits{DType::kTQ2_0, "TQ2_0", 256, 66, false},
    DTypeTraits{DType::kMXFP4, "MXFP4", 32, 17, false},
    DTypeTraits{DType::kInt2, "INT2", 1, 0, false, 2, false},
    DTypeTraits{DType::kInt3, "INT3", 1, 0, false, 3, false},
    DTypeTraits{DType::kInt4, "INT4", 1, 0, false, 4, false},
    DTypeTraits{DType::kInt5, "INT5", 1, 0, false, 5, false},
    DTypeTraits{DType::kInt6, "INT6", 1, 0, false, 6, false},
    DTypeTraits{DType::kInt7, "INT7", 1, 0, false, 7, false},
    DTypeTraits{DType::kInt8, "INT8", 1, 0, false, 8, false},
    DTypeTraits{DType::kInt2Sym, "INT2_SYM", 1, 0, false, 2, true},
    DTypeTraits{DType::kInt3Sym, "INT3_SYM", 1, 0, false, 3, true},
    DTypeTraits{DType::kInt4Sym, "INT4_SYM", 1, 0, false, 4, true},
    DTypeTraits{DType::kInt5Sym, "INT5_SYM", 1, 0, false, 5, true},
    DTypeTraits{DType::kInt6Sym, "INT6_SYM", 1, 0, false, 6, true},
    DTypeTraits{DType::kInt7Sym, "INT7_SYM", 1, 0, false, 7, true},
    DTypeTraits{DType::kInt8Sym, "INT8_SYM", 1, 0, false, 8, true},
    // Sized per row (a float32 scale heads each row): block_bytes 0, RowBytes special-cases it.
    DTypeTraits{DType::kFp8E4M3, "FP8_E4M3", 1, 0, false},
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// Index of each id's row, built once: kernels ask for traits per row, so the lookup must not scan.
constexpr uint32_t kMaxId = 1056;
const std::array<int16_t, kMaxId + 1>& RowOfId() {
  static const std::array<int16_t, kMaxId + 1> rows = [] {
    std::array<int16_t, kMaxId + 1> r;
    r.fill(-1);
    for (size_t i = 0; i < kTraits.size(); ++i) {
      const uint32_t id = static_cast<uint32_t>(kTraits[i].dtype);
      MIXQ_CHECK(id <= kMaxId);
      r[id] = static_cast<int16_t>(i);
    }
    return r;
  }();
  return rows;
}

}  // namespace

const DTypeTraits& Traits(DType dtype) {
  const uint32_t id = static_cast<uint32_t>(dtype);
  MIXQ_CHECK(id <= kMaxId && RowOfId()[id] >= 0 && "DType outside the traits table");
  return kTraits[static_cast<size_t>(RowOfId()[id])];
}

std::optional<DType> DTypeFromGgmlId(uint32_t ggml_type) {
  if (ggml_type > kMaxId || RowOfId()[ggml_type] < 0) return std::nullopt;
  return kTraits[static_cast<size_t>(RowOfId()[ggml_type])].dtype;
}

std::optional<DType> DTypeFromName(std::string_view name) {
  for (const DTypeTraits& t : kTraits) {
    if (EqualsIgnoreCase(t.name, name)) return t.dtype;
  }
  return std::nullopt;
}

std::optional<DType> IntDType(int bits, bool symmetric) {
  for (const DTypeTraits& t : kTraits) {
    if (t.bits != 0 && t.bits == bits && t.symmetric == symmetric) return t.dtype;
  }
  return std::nullopt;
}

std::optional<size_t> StorageBytes(DType dtype, int64_t n_elements) {
  const DTypeTraits& t = Traits(dtype);
  if (t.bits != 0 || dtype == DType::kFp8E4M3) return std::nullopt;
  if (n_elements < 0 || n_elements % t.block_size != 0) return std::nullopt;
  const uint64_t blocks = static_cast<uint64_t>(n_elements / t.block_size);
  if (blocks > std::numeric_limits<uint64_t>::max() / t.block_bytes) return std::nullopt;
  return static_cast<size_t>(blocks * t.block_bytes);
}

}  // namespace mixq

namespace mixq {

std::optional<size_t> RowBytes(DType dtype, int64_t cols, int64_t group) {
  if (dtype == DType::kFp8E4M3) {
    // formats/fp8.h's layout: float32 scale, then one byte per weight.
    if (cols < 0 || cols > (int64_t{1} << 40)) return std::nullopt;
    return sizeof(float) + static_cast<size_t>(cols);
  }
  if (!IsIntFormat(dtype)) return StorageBytes(dtype, cols);
  // A row this long could not be held in memory anyway; the bound keeps the layout arithmetic exact.
  if (cols < 0 || cols > (int64_t{1} << 40) || group < 0) return std::nullopt;
  return IntRowLayout(dtype, cols, group).row_bytes;
}

}  // namespace mixq
