// Declarations shared by ggml_dot.cc (table, scalar references) and ggml_dot_avx2.cc (AVX2 kernels).
#pragma once

#include <cstdint>

namespace mixq::ggml_dot {

// One line per kernel: (weights, activations, n, group) -> dot, and (x, dst, n, group) quantizers.
#define MIXQ_GGML_DOT_DECLARE(suffix)                                                       \
  void QuantizeQ8_0##suffix(const float* x, void* dst, int64_t n, int64_t group);           \
  void QuantizeQ8_1##suffix(const float* x, void* dst, int64_t n, int64_t group);           \
  void QuantizeQ8_K##suffix(const float* x, void* dst, int64_t n, int64_t group);           \
  float DotQ8_0##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ4_0##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ4_1##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ5_0##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ5_1##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotIQ4_NL##suffix(const void* w, const void* a, int64_t n, int64_t group);          \
  float DotQ2_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ3_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ4_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ5_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotQ6_K##suffix(const void* w, const void* a, int64_t n, int64_t group);            \
  float DotIQ4_XS##suffix(const void* w, const void* a, int64_t n, int64_t group);

MIXQ_GGML_DOT_DECLARE(Ref)
// Defined only on x86-64 builds; callable only where CpuHasAvx2() is true.
MIXQ_GGML_DOT_DECLARE(Avx2)

#undef MIXQ_GGML_DOT_DECLARE

// Whether this CPU runs the AVX2 kernels (AVX2, FMA and F16C), detected once.
bool CpuHasAvx2();

}  // namespace mixq::ggml_dot
