// The table of quantized weight kernels: ggml's types (ggml_dot.cc) and mixq's INT types (int_dot.cc).
#include "mixq/kernels/quant_kernel.h"

namespace mixq {

const QuantKernel* FindQuantKernel(DType) { return nullptr; }

std::string QuantKernelTypeNames() { return "none yet"; }

}  // namespace mixq
