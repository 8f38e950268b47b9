// W8A8 MatMul speed on LLaMA-2-7B shapes against weight-only int8 (int8-pc-sym, the same weight bytes):
// GEMV (decode) on the FFN-down matrix (4096 x 11008) in GB/s of weights streamed, and GEMM (prefill, 64
// tokens) on a 4096 x 4096 matrix in multiply-adds per second, for each SIMD level of the W8A8 kernel.
// Run with OMP_NUM_THREADS set (docs/w8a8.md); rows are random bytes with sane FP16 scales, since the speed
// does not depend on the values.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mixq/formats/float16.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/kernels/w8a8_dot.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

const char* const kIsas[] = {"scalar", "AVX2", "AVX512-VNNI", "int8-pc-sym"};

const Tensor& Weights(int64_t rows, int64_t cols) {
  static std::map<int64_t, std::unique_ptr<Tensor>> cache;
  auto& slot = cache[rows * 1000003 + cols];
  if (!slot) {
    slot = std::make_unique<Tensor>(Tensor::Zeros("w", DType::kInt8Sym, {rows, cols}));
    std::mt19937 rng(1);
    auto* bytes = slot->as<uint8_t>();
    const size_t row_bytes = static_cast<size_t>(cols) + 2;
    for (int64_t r = 0; r < rows; ++r) {
      uint8_t* row = bytes + r * row_bytes;
      for (size_t i = 0; i < row_bytes; ++i) row[i] = static_cast<uint8_t>(rng());
      const uint16_t scale = F32ToF16(0.01f);
      std::memcpy(row, &scale, sizeof(scale));
    }
  }
  return *slot;
}

// Args: rows, cols, tokens, kIsas index (3: the weight-only int8 kernel on the same bytes).
void BM_W8A8MatMul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const std::string isa = kIsas[state.range(3)];
  TensorView w = Weights(rows, cols).view();
  std::vector<float> x(static_cast<size_t>(cols * tokens)), y(static_cast<size_t>(rows * tokens));
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  const QuantKernel& int8 = *FindQuantKernel(DType::kInt8Sym);
  if (isa == "int8-pc-sym") {
    ForceW8A8Isa("");
  } else if (ForceW8A8Isa(isa.c_str()) != isa) {
    state.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  w.activation = isa == "int8-pc-sym" ? ActivationQuant::kFormat : ActivationQuant::kInt8Token;
  for (auto _ : state) {
    if (w.activation == ActivationQuant::kFormat) {
      MatMulQuantized(int8, w, x.data(), tokens, y.data());
    } else {
      MatMulW8A8(w, x.data(), tokens, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  ForceW8A8Isa("");
  state.SetLabel(isa);
  if (tokens == 1) {
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.bytes));
  } else {
    state.counters["MAC/s"] =
        benchmark::Counter(static_cast<double>(rows * cols * tokens), benchmark::Counter::kIsIterationInvariantRate);
  }
}

BENCHMARK(BM_W8A8MatMul)
    ->ArgsProduct({{4096}, {11008}, {1}, {0, 1, 2, 3}})
    ->ArgsProduct({{4096}, {4096}, {64}, {1, 2, 3}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace mixq
