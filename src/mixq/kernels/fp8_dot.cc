// The FP8 kernel's table entry, activation copy and scalar reference (the oracle for the AVX2 path).
#include "mixq/kernels/fp8_dot.h"

#include <cstring>

#include "mixq/formats/fp8.h"
#include "mixq/kernels/cpu_features.h"
#include "mixq/kernels/fp8_dot_avx2.h"

namespace mixq {
namespace {

size_t ActivationBytes(int64_t n, int64_t /*group*/) { return static_cast<size_t>(n) * sizeof(float); }

void CopyActivation(const float* x, void* dst, int64_t n, int64_t /*group*/) {
  std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
}

float DotRef(const void* w_row, const void* activation, int64_t n, int64_t /*group*/) {
  const auto* codes = static_cast<const uint8_t*>(w_row) + sizeof(float);
  const auto* a = static_cast<const float*>(activation);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(Fp8E4M3ToFloat(codes[i])) * a[i];
  return static_cast<float>(static_cast<double>(Fp8RowScale(w_row)) * sum);
}

const char* IsaName() { return Fp8DotHasAvx2() ? "AVX2" : "scalar"; }

}  // namespace

bool Fp8DotHasAvx2() { return CpuHasAvx2(); }

const QuantKernel* Fp8QuantKernel(DType dtype) {
  static const QuantKernel kernel = [] {
    QuantKernel k{};
    k.weight_type = DType::kFp8E4M3;
    k.activation_bytes = &ActivationBytes;
    k.quantize_activation = &CopyActivation;
    k.quantize_activation_ref = &CopyActivation;
    k.dot_ref = &DotRef;
    k.dot = Fp8DotHasAvx2() ? &fp8_dot_avx2::Dot : &DotRef;
    k.dot_rows = Fp8DotHasAvx2() ? &fp8_dot_avx2::DotRows : nullptr;
    k.isa = &IsaName;
    return k;
  }();
  return dtype == DType::kFp8E4M3 ? &kernel : nullptr;
}

}  // namespace mixq
