// GEMV/GEMM speed on LLaMA-2-7B shapes for F32/F16/BF16 weights, next to the portable loop it replaced and
// the read bandwidth measured in the same run. Run with OMP_NUM_THREADS set (docs/kernels.md).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "mixq/base/threads.h"
#include "mixq/formats/convert.h"
#include "mixq/kernels/bandwidth.h"
#include "mixq/kernels/matmul.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

// The first portable MatMul (before the Highway kernels), kept verbatim as the speedup baseline: widen a
// row into a buffer, then one scalar-order float dot product per token.
void PortableMatMul(const TensorView& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t rows = w.rows();
  const int64_t cols = w.cols();
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      RowToFloat(w.dtype, w.row(r), row.data(), cols);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* xt = x + t * cols;
        float sum = 0.0f;
        for (int64_t c = 0; c < cols; ++c) sum += row[c] * xt[c];
        y[t * rows + r] = sum;
      }
    }
  }
}

// Read bandwidth of this machine, measured once per run (1 GiB, best of 5) with the same thread count.
double ReadBandwidthGBs() {
  static const double gbs = MeasureReadBandwidthGBs(size_t{1} << 30, 5);
  return gbs;
}

// Random weights, cached per (dtype, rows, cols) so the benchmarks of one matrix share them.
const Tensor& Weights(DType dtype, int64_t rows, int64_t cols) {
  static std::map<std::tuple<DType, int64_t, int64_t>, std::unique_ptr<Tensor>> cache;
  auto& slot = cache[{dtype, rows, cols}];
  if (!slot) {
    std::vector<float> values(static_cast<size_t>(rows * cols));
    uint32_t state = 12345;
    for (float& v : values) {
      state = state * 1664525u + 1013904223u;
      v = static_cast<float>(static_cast<int32_t>(state)) * (1.0f / 2147483648.0f);
    }
    slot = std::make_unique<Tensor>(Tensor::Zeros("w", dtype, {rows, cols}));
    RowFromFloat(dtype, values.data(), slot->storage.data(), rows * cols);
  }
  return *slot;
}

using MatMulFn = void (*)(const TensorView&, const float*, int64_t, float*);

// Args: dtype (ggml id), rows, cols, n_tokens.
void RunMatMul(benchmark::State& state, MatMulFn matmul) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n_tokens = state.range(3);
  const Tensor& w = Weights(dtype, rows, cols);
  std::vector<float> x(static_cast<size_t>(n_tokens * cols), 0.5f);
  std::vector<float> y(static_cast<size_t>(n_tokens * rows));
  const double read_gbs = n_tokens == 1 ? ReadBandwidthGBs() : 0.0;
  for (auto _ : state) {
    matmul(w.view(), x.data(), n_tokens, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(fmt::format("{} {}x{} t={} {}", DTypeName(dtype), rows, cols, n_tokens, MatMulTargetName()));
  state.counters["threads"] = ThreadCount();
  const double flops = 2.0 * static_cast<double>(rows * cols * n_tokens);
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (n_tokens == 1) {
    const double weight_bytes = static_cast<double>(w.view().bytes);
    state.SetBytesProcessed(static_cast<int64_t>(weight_bytes) * state.iterations());
    state.counters["read_bw_GBs"] = read_gbs;
    state.counters["pct_of_read_bw"] =
        benchmark::Counter(100.0 * weight_bytes * 1e-9 / read_gbs, benchmark::Counter::kIsIterationInvariantRate);
  }
}

void BM_MatMul(benchmark::State& state) { RunMatMul(state, &MatMul); }
void BM_Portable(benchmark::State& state) { RunMatMul(state, &PortableMatMul); }

constexpr int64_t kDTypes[] = {static_cast<int64_t>(DType::kF32), static_cast<int64_t>(DType::kF16),
                               static_cast<int64_t>(DType::kBF16)};
// LLaMA-2-7B: attention projections, FFN gate/up, FFN down ([rows, cols] = [out, in]).
constexpr int64_t kShapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};

void MatMulArgs(benchmark::internal::Benchmark* b) {
  for (const int64_t n_tokens : {1, 64, 512}) {
    for (const int64_t dtype : kDTypes) {
      for (const auto& shape : kShapes) b->Args({dtype, shape[0], shape[1], n_tokens});
    }
  }
}

// The portable loop is slow enough at 512 tokens (tens of seconds) that only GEMV and one GEMM size run.
void PortableArgs(benchmark::internal::Benchmark* b) {
  for (const int64_t dtype : kDTypes) {
    for (const auto& shape : kShapes) b->Args({dtype, shape[0], shape[1], 1});
    b->Args({dtype, 4096, 4096, 64});
  }
}

void BM_ReadBandwidth(benchmark::State& state) {
  for (auto _ : state) state.counters["GBs"] = ReadBandwidthGBs();
}
void BM_CopyBandwidth(benchmark::State& state) {
  for (auto _ : state) state.counters["GBs"] = MeasureCopyBandwidthGBs(size_t{1} << 30, 3);
}

BENCHMARK(BM_ReadBandwidth)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CopyBandwidth)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Portable)->Apply(PortableArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq
