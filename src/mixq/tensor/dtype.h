// The element types a tensor can hold: one row of a traits table per type, in ggml's numbering.
//
// Ids equal ggml's `ggml_type` values so that GGUF files map without a translation table; the table lists
// every ggml type (so a file's sizes can be validated and its types named in errors) even where mixq has
// no kernel for it yet. Codecs live in formats/, kernels in kernels/: this table holds only layout facts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mixq {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,

  // mixq's own integer formats (tensor/int_layout.h), outside ggml's numbering so no ggml type can collide:
  // 1024 + bits asymmetric (integer zero-point per group), 1040 + bits symmetric. llama.cpp cannot load them.
  kInt2 = 1026,
  kInt3 = 1027,
  kInt4 = 1028,
  kInt5 = 1029,
  kInt6 = 1030,
  kInt7 = 1031,
  kInt8 = 1032,
  kInt2Sym = 1042,
  kInt3Sym = 1043,
  kInt4Sym = 1044,
  kInt5Sym = 1045,
  kInt6Sym = 1046,
  kInt7Sym = 1047,
  kInt8Sym = 1048,

  // mixq's scaled FP8 E4M3 weights (formats/fp8.h): a float32 scale, then one E4M3 code per weight, per row.
  kFp8E4M3 = 1056,
};

struct DTypeTraits {
  DType dtype;
  const char* name;    // llama.cpp's spelling, e.g. "Q4_K"
  int64_t block_size;  // elements per block; 1 for plain scalar types
  size_t block_bytes;  // bytes per block
  bool is_float;       // F32/F16/BF16/F64: stored values are the weights themselves
  int bits = 0;        // mixq INT types: bits per code (their size depends on a group: see RowBytes)
  bool symmetric = false;  // mixq INT types: zero-point fixed at 2^(bits-1)
};

// The traits of a type; aborts for a value outside the enum (a programming error).
const DTypeTraits& Traits(DType dtype);
inline const char* DTypeName(DType dtype) { return Traits(dtype).name; }

// Bad-input-safe lookups: nullopt for an id or name no row carries.
std::optional<DType> DTypeFromGgmlId(uint32_t ggml_type);
std::optional<DType> DTypeFromName(std::string_view name);  // case-insensitive

// Whether `dtype` is one of mixq's grouped integer formats (kInt2..kInt8Sym).
inline bool IsIntFormat(DType dtype) { return Traits(dtype).bits != 0; }
// The mixq INT type of `bits` (2..8) and symmetry; nullopt outside that range.
std::optional<DType> IntDType(int bits, bool symmetric);

// Bytes of `n_elements` consecutive elements; nullopt if n is not a whole number of blocks, overflows, or
// `dtype` is a mixq INT or FP8 type (whose size depends on its rows, and group: use RowBytes).
std::optional<size_t> StorageBytes(DType dtype, int64_t n_elements);

// Bytes of one row of `cols` elements. For mixq INT types `group` consecutive elements share a scale
// (0 or >= cols: the whole row); other types ignore `group`. kFp8E4M3 rows are 4 + cols bytes. nullopt
// where StorageBytes would refuse.
std::optional<size_t> RowBytes(DType dtype, int64_t cols, int64_t group = 0);

}  // namespace mixq
