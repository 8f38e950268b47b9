// What a weight tensor is stored as, named the way users type it: llama.cpp's type names in lower case
// ("q4_k", "q8_0", "f16") and mixq's INT formats ("int4-g128", "int3-g64-sym", "int8-pc", "int4-pt").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mixq/tensor/dtype.h"

namespace mixq {

struct WeightFormat {
  DType dtype = DType::kF32;
  int64_t group = 0;        // mixq INT types: weights per scale group; 0 = whole rows (per channel or tensor)
  bool per_tensor = false;  // mixq INT types: one scale (and zero-point) for the whole tensor

  bool operator==(const WeightFormat&) const = default;
};

// Parses a format name (case-insensitive): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k,
// q4_k, q5_k, q6_k, iq4_nl, iq4_xs, and int<2..8>-g<N> | int<b>-pc | int<b>-pt with an optional -sym.
// nullopt for anything else (callers name the option in their error, listing WeightFormatNames()).
std::optional<WeightFormat> ParseWeightFormat(std::string_view name);

// The canonical name ParseWeightFormat reads back: "q4_k", "int4-g128-sym", "int8-pc".
std::string WeightFormatName(const WeightFormat& format);

// One line listing what ParseWeightFormat accepts, for error messages and --help.
std::string WeightFormatNames();

// Whether llama.cpp can load a tensor in this format (ggml's own types), which mixq's INT types are not.
bool IsLlamaCppCompatible(const WeightFormat& format);

// Empty if rows of `cols` weights can be stored in `format`; otherwise why not ("rows of 172 are not a
// multiple of Q4_K's 256-weight blocks").
std::string WhyCannotStore(const WeightFormat& format, int64_t cols);

}  // namespace mixq
