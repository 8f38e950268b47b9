// Which instruction sets this CPU runs, asked once: the quantized kernels pick their level from it.
// F16C is read from CPUID directly because clang's __builtin_cpu_supports does not know "f16c".
#pragma once

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace mixq {

// AVX2 + FMA + F16C: the level of the AVX2 kernels (every AVX2 CPU has the other two in practice).
inline bool CpuHasAvx2() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
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
    return CpuHasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace mixq
