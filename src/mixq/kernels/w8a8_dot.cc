// W8A8 kernels: activation layout, scalar references (the oracle of the SIMD paths), run-time dispatch and
// the MatMul driver over rows and tokens.
#include "mixq/kernels/w8a8_dot.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string_view>

#include "mixq/kernels/quant_kernel.h"
#include "mixq/base/check.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/cpu_features.h"
#include "mixq/kernels/w8a8_dot_avx2.h"

namespace mixq {
namespace {

// 0 scalar, 1 AVX2, 2 AVX-512 VNNI (256-bit vpdpbusd).
int DetectedLevel() {
  static const int level = CpuHasAvx512Vnni() ? 2 : CpuHasAvx2() ? 1 : 0;
  return level;
}

std::atomic<int>& Level() {
  static std::atomic<int> level{DetectedLevel()};
  return level;
}

// Below this many multiply-adds one thread is faster than waking the others (as in matmul.cc).
constexpr int64_t kMinParallelMacs = int64_t{1} << 17;
// Rows per unit of work: 16 rows of a 4096-wide matrix are 64 KiB, which stay in L2 while every token of a
// prefill batch passes by.
constexpr int64_t kRowBlock = 16;

float RowScale(const void* w_row) {
  uint16_t bits;
  std::memcpy(&bits, w_row, sizeof(bits));
  return F16ToF32(bits);
}

const W8A8ActivationHeader& Header(const void* activation) {
  return *static_cast<const W8A8ActivationHeader*>(activation);
}

}  // namespace

size_t W8A8ActivationBytes(int64_t n) {
  const int64_t padded = (std::max<int64_t>(n, 0) + kW8A8Pad - 1) / kW8A8Pad * kW8A8Pad;
  return sizeof(W8A8ActivationHeader) + static_cast<size_t>(padded);
}

void QuantizeW8A8ActivationRef(const float* x, int64_t n, float static_scale, void* dst) {
  auto* header = static_cast<W8A8ActivationHeader*>(dst);
  auto* q = reinterpret_cast<int8_t*>(header + 1);
  std::memset(dst, 0, W8A8ActivationBytes(n));
  float d = static_scale;
  if (static_scale == 0.0f) {
    // fmax ignores a NaN, as the SIMD path's max does.
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    d = amax / 127.0f;
  }
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int32_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::fmin(std::fmax(std::nearbyint(x[i] * id), -127.0f), 127.0f);
    q[i] = static_cast<int8_t>(r);
    sum += q[i];
  }
  header->scale = d;
  header->sum = sum;
}

void QuantizeW8A8Activation(const float* x, int64_t n, float static_scale, void* dst) {
  if (Level().load(std::memory_order_relaxed) >= 1) {
    w8a8_avx2::QuantizeActivation(x, n, static_scale, dst);
  } else {
    QuantizeW8A8ActivationRef(x, n, static_scale, dst);
  }
}

int64_t W8A8DotIntRef(const uint8_t* codes, const void* activation, int64_t n) {
  const auto* q = reinterpret_cast<const int8_t*>(static_cast<const W8A8ActivationHeader*>(activation) + 1);
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (static_cast<int32_t>(codes[i]) - 128) * q[i];
  return sum;
}

int64_t W8A8DotInt(const uint8_t* codes, const void* activation, int64_t n) {
  switch (Level().load(std::memory_order_relaxed)) {
    case 2:
      return w8a8_avx2::DotIntVnni(codes, activation, n);
    case 1:
      return w8a8_avx2::DotInt(codes, activation, n);
    default:
      return W8A8DotIntRef(codes, activation, n);
  }
}

float W8A8DotRef(const void* w_row, const void* activation, int64_t n) {
  const auto* codes = static_cast<const uint8_t*>(w_row) + 2;
  return RowScale(w_row) * Header(activation).scale * static_cast<float>(W8A8DotIntRef(codes, activation, n));
}

float W8A8Dot(const void* w_row, const void* activation, int64_t n) {
  const auto* codes = static_cast<const uint8_t*>(w_row) + 2;
  return RowScale(w_row) * Header(activation).scale * static_cast<float>(W8A8DotInt(codes, activation, n));
}

void W8A8DotRows(const void* w, size_t row_bytes, int64_t n_rows, const void* activations, size_t activation_bytes,
                 int64_t n_tokens, int64_t n, float* out, int64_t out_stride) {
  switch (Level().load(std::memory_order_relaxed)) {
    case 2:
      return w8a8_avx2::DotRowsVnni(w, row_bytes, n_rows, activations, activation_bytes, n_tokens, n, out,
                                    out_stride);
    case 1:
      return w8a8_avx2::DotRows(w, row_bytes, n_rows, activations, activation_bytes, n_tokens, n, out, out_stride);
    default:
      break;
  }
  const auto* wb = static_cast<const std::byte*>(w);
  const auto* ab = static_cast<const std::byte*>(activations);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < n_rows; ++r) {
      out[t * out_stride + r] = W8A8DotRef(wb + static_cast<size_t>(r) * row_bytes,
                                           ab + static_cast<size_t>(t) * activation_bytes, n);
    }
  }
}

const char* W8A8Isa() {
  switch (Level().load(std::memory_order_relaxed)) {
    case 2:
      return "AVX512-VNNI";
    case 1:
      return "AVX2";
    default:
      return "scalar";
  }
}

const char* ForceW8A8Isa(const char* isa) {
  const std::string_view s(isa);
  const int wanted = s == "scalar" ? 0 : s == "AVX2" ? 1 : 2;
  Level().store(std::min(wanted, DetectedLevel()));
  return W8A8Isa();
}

void MatMulW8A8(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  MIXQ_CHECK(w.activation != ActivationQuant::kFormat);
  MIXQ_CHECK(w.dtype == DType::kInt8Sym && w.group == 0);
  // The salient sparse part (SparseRowsView) is not applied by this kernel; the loader never pairs them.
  MIXQ_CHECK(w.salient.empty());
  const int64_t rows = w.rows();
  const int64_t cols = w.cols();
  if (rows == 0 || n_tokens <= 0) return;
  const size_t row_bytes = w.row_bytes();
  MIXQ_CHECK_EQ(row_bytes, static_cast<size_t>(cols) + 2);
  float static_scale = 0.0f;
  if (w.activation == ActivationQuant::kInt8Tensor) {
    MIXQ_CHECK(std::isfinite(w.activation_scale) && w.activation_scale > 0.0f);
    static_scale = w.activation_scale;
  }
  const size_t act_bytes = W8A8ActivationBytes(cols);
  std::byte* act = ActivationScratch(act_bytes * static_cast<size_t>(n_tokens));
  const bool parallel = rows * cols * n_tokens >= kMinParallelMacs;
#pragma omp parallel for schedule(static) if (parallel && n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) {
    QuantizeW8A8Activation(x + t * cols, cols, static_scale, act + static_cast<size_t>(t) * act_bytes);
  }
  const int64_t n_blocks = (rows + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t r0 = b * kRowBlock;
    const int64_t r1 = std::min(rows, r0 + kRowBlock);
    W8A8DotRows(w.data + static_cast<size_t>(r0) * row_bytes, row_bytes, r1 - r0, act, act_bytes, n_tokens, cols,
                y + r0, rows);
  }
}

}  // namespace mixq
