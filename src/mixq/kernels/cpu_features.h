// Which instruction sets this CPU runs, asked once: the quantized kernels pick their level from it.
// F16C is read from CPUID directly because clang's __builtin_cpu_supports does not know "f16c".
// MIXQ_MAX_ISA=scalar|avx2 in the environment caps the level (as oneDNN's ONEDNN_MAX_CPU_ISA does), so
// one machine can measure and test the kernels a CPU without AVX-512 (or without AVX2) would run. It
// covers mixq's own quantized kernels; the Highway float kernels dispatch on their own.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace mixq {

// The levels MIXQ_MAX_ISA names: 0 scalar, 1 AVX2, 2 everything this CPU has; -1 for any other text.
inline int IsaCapFromString(const char* value) {
  if (std::strcmp(value, "scalar") == 0) return 0;
  if (std::strcmp(value, "avx2") == 0) return 1;
  if (std::strcmp(value, "avx512") == 0 || std::strcmp(value, "native") == 0) return 2;
  return -1;
}

// MIXQ_MAX_ISA's level, read once. An unknown value is reported on stderr and caps nothing.
inline int CpuIsaCap() {
  static const int cap = [] {
    const char* value = std::getenv("MIXQ_MAX_ISA");
    if (value == nullptr) return 2;
    const int parsed = IsaCapFromString(value);
    if (parsed < 0) {
      std::fprintf(stderr, "mixq: MIXQ_MAX_ISA=%s is not scalar, avx2, avx512 or native; ignored\n", value);
      return 2;
    }
    return parsed;
  }();
  return cap;
}

// AVX2 + FMA + F16C: the level of the AVX2 kernels (every AVX2 CPU has the other two in practice).
inline bool CpuHasAvx2() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
    return CpuIsaCap() >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return has;
#else
  return false;
#endif
}

// AVX-512 F/BW/VL with VNNI (vpdpbusd), on top of the AVX2 level.
inline bool CpuHasAvx512Vnni() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return CpuHasAvx2() && CpuIsaCap() >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace mixq
