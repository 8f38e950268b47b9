// Invariant checks: a broken invariant is a programming error, so it aborts and prints the values.
#pragma once

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace mixq::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* expr, const std::string& detail) {
  std::fprintf(stderr, "mixq: internal check failed at %s:%d: %s %s\n", file, line, expr, detail.c_str());
  std::abort();
}
}  // namespace mixq::internal

#define MIXQ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) ::mixq::internal::CheckFailed(__FILE__, __LINE__, #cond, ""); \
  } while (0)

// Compares two values and prints both when the comparison fails.
#define MIXQ_CHECK_OP(a, op, b)                                                              \
  do {                                                                                       \
    const auto& mixq_a_ = (a);                                                               \
    const auto& mixq_b_ = (b);                                                               \
    if (!(mixq_a_ op mixq_b_))                                                               \
      ::mixq::internal::CheckFailed(__FILE__, __LINE__, #a " " #op " " #b,                   \
                                    fmt::format("({} vs {})", mixq_a_, mixq_b_));            \
  } while (0)

#define MIXQ_CHECK_EQ(a, b) MIXQ_CHECK_OP(a, ==, b)
#define MIXQ_CHECK_LT(a, b) MIXQ_CHECK_OP(a, <, b)
#define MIXQ_CHECK_LE(a, b) MIXQ_CHECK_OP(a, <=, b)
#define MIXQ_CHECK_GE(a, b) MIXQ_CHECK_OP(a, >=, b)
