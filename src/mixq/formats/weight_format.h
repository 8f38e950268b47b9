// What a weight tensor is stored as, named the way users type it: llama.cpp's type names in lower case
// ("q4_k", "q8_0", "f16") and mixq's INT formats ("int4-g128", "int3-g64-sym", "int8-pc", "int4-pt"), and the
// W8A8 formats ("w8a8", "w8a8-token": int8 weights with int8 activations, docs/w8a8.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mixq/tensor/dtype.h"
#include "mixq/tensor/tensor.h"

namespace mixq {

struct WeightFormat {
  DType dtype = DType::kF32;
  int64_t group = 0;        // mixq INT types: weights per scale group; 0 = whole rows (per channel or tensor)
  bool per_tensor = false;  // mixq INT types: one scale (and zero-point) for the whole tensor
  // How MatMul quantizes this tensor's input (W8A8 only; always with dtype kInt8Sym and group 0):
  // w8a8 = per-tensor weights + kInt8Tensor (static, calibrated), w8a8-token = per-channel + kInt8Token.
  ActivationQuant activation = ActivationQuant::kFormat;

  bool operator==(const WeightFormat&) const = default;
};

// Parses a format name (case-insensitive): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k,
// q4_k, q5_k, q6_k, iq4_nl, iq4_xs, int<2..8>-g<N> | int<b>-pc | int<b>-pt with an optional -sym, fp8,
// fp8-pt, w8a8, w8a8-token.
// nullopt for anything else (callers name the option in their error, listing WeightFormatNames()).
std::optional<WeightFormat> ParseWeightFormat(std::string_view name);

// The canonical name ParseWeightFormat reads back: "q4_k", "int4-g128-sym", "int8-pc".
std::string WeightFormatName(const WeightFormat& format);

// The activation mode as stored in GGUF metadata (mixq.activation.<tensor>): "int8-tensor", "int8-token";
// "format" for kFormat (never stored). Parse returns nullopt for any other string (and for "format").
const char* ActivationQuantName(ActivationQuant activation);
std::optional<ActivationQuant> ParseActivationQuantName(std::string_view name);

// The W8A8 format a weight-only tensor takes instead where activation quantization cannot apply (the
// token embedding table is a lookup, not a matmul): the same int8 weights without the activation mode,
// per channel ("int8-pc-sym"). Any other format is returned unchanged.
WeightFormat WithoutActivationQuant(const WeightFormat& format);

// One line listing what ParseWeightFormat accepts, for error messages and --help.
std::string WeightFormatNames();

// Whether llama.cpp can load a tensor in this format (ggml's own types), which mixq's INT types are not.
bool IsLlamaCppCompatible(const WeightFormat& format);

// Empty if rows of `cols` weights can be stored in `format`; otherwise why not ("rows of 172 are not a
// multiple of Q4_K's 256-weight blocks").
std::string WhyCannotStore(const WeightFormat& format, int64_t cols);

}  // namespace mixq
