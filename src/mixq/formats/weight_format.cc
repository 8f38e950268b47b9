// Weight format names: parsing, printing, and which shapes each format can hold.
#include "mixq/formats/weight_format.h"

#include <array>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace mixq {
namespace {

// The non-INT types a tensor may be quantized or converted to (ggml's types mixq writes and runs).
constexpr std::array kNamedTypes = {
    DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0, DType::kQ4_0,   DType::kQ4_1,   DType::kQ5_0, DType::kQ5_1,
    DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS,
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<int64_t> ParsePositive(std::string_view s) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// "int<bits>-<grouping>[-sym]".
std::optional<WeightFormat> ParseIntFormat(std::string_view name) {
  if (!name.starts_with("int") || name.size() < 5) return std::nullopt;
  const int bits = name[3] - '0';
  if (name[4] != '-') return std::nullopt;
  std::string_view rest = name.substr(5);
  bool symmetric = false;
  if (rest.ends_with("-sym")) {
    symmetric = true;
    rest.remove_suffix(4);
  }
  const std::optional<DType> dtype = IntDType(bits, symmetric);
  if (!dtype) return std::nullopt;
  WeightFormat f{*dtype, 0, false};
  if (rest == "pc") return f;
  if (rest == "pt") {
    f.per_tensor = true;
    return f;
  }
  if (!rest.starts_with("g")) return std::nullopt;
  const std::optional<int64_t> group = ParsePositive(rest.substr(1));
  if (!group || *group > (int64_t{1} << 24)) return std::nullopt;
  f.group = *group;
  return f;
}

}  // namespace

std::optional<WeightFormat> ParseWeightFormat(std::string_view name) {
  const std::string lower = Lower(name);
  for (DType t : kNamedTypes) {
    if (lower == Lower(DTypeName(t))) return WeightFormat{t, 0, false};
  }
  // FP8 E4M3 (formats/fp8.h): a scale per row ("fp8", "fp8-pc") or per tensor ("fp8-pt"), never grouped.
  if (lower == "fp8" || lower == "fp8-pc") return WeightFormat{DType::kFp8E4M3, 0, false};
  if (lower == "fp8-pt") return WeightFormat{DType::kFp8E4M3, 0, true};
  // W8A8 (docs/w8a8.md): symmetric int8 weights stored as kInt8Sym rows, plus the activation mode.
  if (lower == "w8a8") return WeightFormat{DType::kInt8Sym, 0, true, ActivationQuant::kInt8Tensor};
  if (lower == "w8a8-token") return WeightFormat{DType::kInt8Sym, 0, false, ActivationQuant::kInt8Token};
  return ParseIntFormat(lower);
}

std::string WeightFormatName(const WeightFormat& f) {
  if (f.dtype == DType::kFp8E4M3) return f.per_tensor ? "fp8-pt" : "fp8";
  if (f.activation != ActivationQuant::kFormat) {
    const WeightFormat w8a8 = *ParseWeightFormat("w8a8");
    const WeightFormat token = *ParseWeightFormat("w8a8-token");
    if (f == w8a8) return "w8a8";
    if (f == token) return "w8a8-token";
    // Not a named combination (no parser makes one): say what it is, readably.
    WeightFormat weights = f;
    weights.activation = ActivationQuant::kFormat;
    return fmt::format("{}+a8-{}", WeightFormatName(weights), ActivationQuantName(f.activation));
  }
  const DTypeTraits& t = Traits(f.dtype);
  if (t.bits == 0) return Lower(t.name);
  const std::string grouping = f.per_tensor ? "pt" : f.group == 0 ? "pc" : fmt::format("g{}", f.group);
  return fmt::format("int{}-{}{}", t.bits, grouping, t.symmetric ? "-sym" : "");
}

std::string WeightFormatNames() {
  std::string names;
  for (DType t : kNamedTypes) names += Lower(DTypeName(t)) + ", ";
  return names + "int<2..8>-g<group>, int<2..8>-pc, int<2..8>-pt (each with an optional -sym), fp8, fp8-pt, w8a8, w8a8-token";
}

const char* ActivationQuantName(ActivationQuant activation) {
  switch (activation) {
    case ActivationQuant::kInt8Tensor:
      return "int8-tensor";
    case ActivationQuant::kInt8Token:
      return "int8-token";
    case ActivationQuant::kFormat:
      break;
  }
  return "format";
}

std::optional<ActivationQuant> ParseActivationQuantName(std::string_view name) {
  if (name == "int8-tensor") return ActivationQuant::kInt8Tensor;
  if (name == "int8-token") return ActivationQuant::kInt8Token;
  return std::nullopt;
}

WeightFormat WithoutActivationQuant(const WeightFormat& format) {
  if (format.activation == ActivationQuant::kFormat) return format;
  return WeightFormat{format.dtype, 0, false, ActivationQuant::kFormat};
}

bool IsLlamaCppCompatible(const WeightFormat& f) { return !IsIntFormat(f.dtype) && f.dtype != DType::kFp8E4M3; }

std::string WhyCannotStore(const WeightFormat& f, int64_t cols) {
  const DTypeTraits& t = Traits(f.dtype);
  if (cols <= 0) return fmt::format("rows of {} weights cannot be stored", cols);
  if (cols % t.block_size != 0) {
    return fmt::format("rows of {} weights are not a multiple of {}'s {}-weight blocks", cols, t.name, t.block_size);
  }
  return {};
}

}  // namespace mixq
