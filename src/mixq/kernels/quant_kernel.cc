// The table of quantized weight kernels: ggml's types (ggml_dot.cc), mixq's INT types (int_dot.cc) and
// FP8 E4M3 (fp8_dot.cc).
#include "mixq/kernels/quant_kernel.h"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mixq/kernels/fp8_dot.h"
#include "mixq/kernels/ggml_dot.h"
#include "mixq/kernels/int_dot.h"

namespace mixq {

const QuantKernel* FindQuantKernel(DType dtype) {
  if (const QuantKernel* k = GgmlQuantKernel(dtype)) return k;
  if (const QuantKernel* k = Fp8QuantKernel(dtype)) return k;
  return IntQuantKernel(dtype);
}

std::string QuantKernelTypeNames() {
  std::vector<std::string> names;
  for (uint32_t id = 0; id < 64; ++id) {
    const std::optional<DType> dtype = DTypeFromGgmlId(id);
    if (dtype && GgmlQuantKernel(*dtype) != nullptr) names.push_back(DTypeName(*dtype));
  }
  names.push_back("mixq INT2..INT8");
  names.push_back(DTypeName(DType::kFp8E4M3));
  return fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace mixq
