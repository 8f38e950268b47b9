// NaN/Inf scans per storage type: which bytes of a block are floating-point is a layout fact of each type.
#include "mixq/formats/nonfinite.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <initializer_list>

#include "mixq/formats/fp8.h"
#include "mixq/formats/ggml_blocks.h"
#include "mixq/tensor/int_layout.h"

namespace mixq {
namespace {

bool F16NonFinite(uint16_t h) { return (h & 0x7c00u) == 0x7c00u; }
bool BF16NonFinite(uint16_t b) { return (b & 0x7f80u) == 0x7f80u; }

uint16_t LoadU16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Counts non-finite F16 fields at `offsets` inside every block of `block_bytes`.
int64_t CountInBlocks(const TensorView& t, size_t block_bytes, std::initializer_list<size_t> offsets) {
  int64_t bad = 0;
  for (size_t b = 0; b + block_bytes <= t.bytes; b += block_bytes) {
    for (size_t off : offsets) bad += F16NonFinite(LoadU16(t.data + b + off)) ? 1 : 0;
  }
  return bad;
}

// Counts the elements of p[0..n) for which `bad` holds. The bound and pointer are locals so the loop
// vectorizes: with t.elements() and t.as<>() in the loop, the shape's product was recomputed per element
// and a 2 GiB F16 model took 3 s to load, 2.6 of them here.
template <typename T, typename Pred>
int64_t CountWhere(const T* __restrict p, int64_t n, Pred bad) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += bad(p[i]) ? 1 : 0;
  return count;
}

}  // namespace

int64_t CountNonFinite(const TensorView& t) {
  using namespace ggml;
  int64_t bad = 0;
  switch (t.dtype) {
    case DType::kF32:
      // Exponent bits all set: Inf or NaN (as std::isfinite, but on the bits, which vectorizes).
      return CountWhere(t.as<uint32_t>(), t.elements(), [](uint32_t f) { return (f & 0x7f800000u) == 0x7f800000u; });
    case DType::kF16:
      return CountWhere(t.as<uint16_t>(), t.elements(), F16NonFinite);
    case DType::kBF16:
      return CountWhere(t.as<uint16_t>(), t.elements(), BF16NonFinite);
    case DType::kQ4_0:
      return CountInBlocks(t, sizeof(BlockQ4_0), {offsetof(BlockQ4_0, d)});
    case DType::kQ4_1:
      return CountInBlocks(t, sizeof(BlockQ4_1), {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)});
    case DType::kQ5_0:
      return CountInBlocks(t, sizeof(BlockQ5_0), {offsetof(BlockQ5_0, d)});
    case DType::kQ5_1:
      return CountInBlocks(t, sizeof(BlockQ5_1), {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)});
    case DType::kQ8_0:
      return CountInBlocks(t, sizeof(BlockQ8_0), {offsetof(BlockQ8_0, d)});
    case DType::kQ2_K:
      return CountInBlocks(t, sizeof(BlockQ2_K), {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)});
    case DType::kQ3_K:
      return CountInBlocks(t, sizeof(BlockQ3_K), {offsetof(BlockQ3_K, d)});
    case DType::kQ4_K:
      return CountInBlocks(t, sizeof(BlockQ4_K), {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)});
    case DType::kQ5_K:
      return CountInBlocks(t, sizeof(BlockQ5_K), {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)});
    case DType::kQ6_K:
      return CountInBlocks(t, sizeof(BlockQ6_K), {offsetof(BlockQ6_K, d)});
    case DType::kIQ4_NL:
      return CountInBlocks(t, sizeof(BlockIQ4_NL), {offsetof(BlockIQ4_NL, d)});
    case DType::kIQ4_XS:
      return CountInBlocks(t, sizeof(BlockIQ4_XS), {offsetof(BlockIQ4_XS, d)});
    case DType::kFp8E4M3:
      // Each row's float32 scale, and its codes: FP8's NaN codes (0x7F, 0xFF) are values, not just scales.
      for (int64_t r = 0; r < t.rows(); ++r) {
        const auto* row = reinterpret_cast<const uint8_t*>(t.row(r));
        bad += std::isfinite(Fp8RowScale(row)) ? 0 : 1;
        for (int64_t c = 0; c < t.cols(); ++c) bad += (row[sizeof(float) + c] & 0x7Fu) == kFp8E4M3NaN ? 1 : 0;
      }
      return bad;
    default:
      break;
  }
  if (IsIntFormat(t.dtype)) {
    const IntRowLayout layout(t.dtype, t.cols(), t.group);
    for (int64_t r = 0; r < t.rows(); ++r) {
      const std::byte* row = t.row(r);
      for (int64_t k = 0; k < layout.n_groups; ++k) bad += F16NonFinite(LoadU16(row + 2 * k)) ? 1 : 0;
    }
  }
  return bad;
}

}  // namespace mixq
