// GEMV and small-batch GEMM speed of the FP8 E4M3 kernel on a LLaMA-2-7B FFN-down-shaped matrix
// (4096 x 11008), in GB/s of weight bytes streamed, next to INT8 per channel (the other 8-bit format) and
// F16. Run with OMP_NUM_THREADS set (docs/kernels.md). The speed does not depend on the weight values, so
// rows are random finite codes with a sane scale rather than quantized data.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "mixq/base/threads.h"
#include "mixq/formats/float16.h"
#include "mixq/formats/fp8.h"
#include "mixq/kernels/fp8_dot.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

constexpr int64_t kRows = 4096, kCols = 11008;

// Random bytes (NaN codes replaced, every scale field a sane float) in `dtype`'s layout.
const Tensor& Weights(DType dtype) {
  static std::map<DType, std::unique_ptr<Tensor>> cache;
  auto& slot = cache[dtype];
  if (!slot) {
    slot = std::make_unique<Tensor>(Tensor::Zeros("w", dtype, {kRows, kCols}));
    std::mt19937 rng(1);
    const TensorView v = slot->view();
    auto* bytes = slot->as<uint8_t>();
    for (int64_t r = 0; r < kRows; ++r) {
      uint8_t* row = bytes + r * v.row_bytes();
      for (size_t i = 0; i < v.row_bytes(); ++i) row[i] = static_cast<uint8_t>(rng());
      if (dtype == DType::kFp8E4M3) {
        for (size_t i = 4; i < v.row_bytes(); ++i) row[i] = (row[i] & 0x7F) == 0x7F ? 0x38 : row[i];
        const float scale = 1e-3f;
        std::memcpy(row, &scale, sizeof(scale));
      } else if (dtype == DType::kInt8) {
        const uint16_t scale = F32ToF16(0.01f);
        std::memcpy(row, &scale, sizeof(scale));
      } else if (dtype == DType::kF16) {
        auto* h = reinterpret_cast<uint16_t*>(row);
        for (int64_t c = 0; c < kCols; ++c) h[c] = F32ToF16(static_cast<float>(static_cast<int8_t>(rng())) / 1000);
      }
    }
  }
  return *slot;
}

// Args: dtype id, tokens, variant (0: MatMul as shipped; 1: FP8 scalar reference dot; 2: FP8 without dot_rows).
void BM_Gemm8(benchmark::State& state) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t n_tokens = state.range(1);
  const int64_t variant = state.range(2);
  const Tensor& w = Weights(dtype);
  std::vector<float> x(static_cast<size_t>(kCols * n_tokens));
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  std::vector<float> y(static_cast<size_t>(kRows * n_tokens));
  QuantKernel kernel = *Fp8QuantKernel(DType::kFp8E4M3);
  if (variant == 1) {
    kernel.dot = kernel.dot_ref;
    kernel.dot_rows = nullptr;
  }
  if (variant == 2) kernel.dot_rows = nullptr;
  for (auto _ : state) {
    if (variant == 0) {
      MatMul(w.view(), x.data(), n_tokens, y.data());
    } else {
      MatMulQuantized(kernel, w.view(), x.data(), n_tokens, y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const char* how = variant == 1 ? "scalar" : variant == 2 ? "AVX2 dot only" : "MatMul";
  state.SetLabel(fmt::format("{} {}x{} tokens {} {}", DTypeName(dtype), kRows, kCols, n_tokens, how));
  state.counters["threads"] = ThreadCount();
  state.SetBytesProcessed(static_cast<int64_t>(w.view().bytes) * state.iterations());
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * kRows * kCols * n_tokens * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void Args(benchmark::internal::Benchmark* b) {
  auto id = [](DType t) { return static_cast<int64_t>(t); };
  for (const int64_t tokens : {1, 16}) {
    b->Args({id(DType::kFp8E4M3), tokens, 0});
    b->Args({id(DType::kInt8), tokens, 0});
    b->Args({id(DType::kF16), tokens, 0});
  }
  b->Args({id(DType::kFp8E4M3), 16, 2});
  b->Args({id(DType::kFp8E4M3), 1, 1});
}

BENCHMARK(BM_Gemm8)->Apply(Args)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq
