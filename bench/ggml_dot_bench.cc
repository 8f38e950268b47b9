// GEMV speed of ggml's quantized weight types through MatMulQuantized on LLaMA-2-7B shapes, against the
// read and copy bandwidth measured in the same run; GEMM (64-token prefill) compute rate of the 32-weight
// types; each at the level this CPU picks, and with the AVX2 kernels forced (with and without dot_rows). Run with OMP_NUM_THREADS set (docs/kernels.md).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "interleaved_copy.h"
#include "mixq/base/threads.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/bandwidth.h"
#include "mixq/kernels/ggml_dot.h"
#include "mixq/kernels/ggml_dot_internal.h"
#include "mixq/kernels/packed_gemm.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

double ReadBandwidthGBs() {
  static const double gbs = MeasureReadBandwidthGBs(size_t{1} << 30, 5);
  return gbs;
}
double CopyBandwidthGBs() {
  static const double gbs = MeasureCopyBandwidthGBs(size_t{1} << 30, 3);
  return gbs;
}

// Byte offsets of the F16 super-scales of each block (d, and dmin or m where the type has one): they get
// values in [1e-3, 1e-1] so every product stays finite; all other bytes are random codes and scales.
std::vector<size_t> HalfFields(DType dtype) {
  switch (dtype) {
    case DType::kQ4_1: case DType::kQ5_1: case DType::kQ4_K: case DType::kQ5_K: return {0, 2};
    case DType::kQ2_K: return {80, 82};
    case DType::kQ3_K: return {108};
    case DType::kQ6_K: return {208};
    default: return {0};  // Q4_0, Q5_0, Q8_0, IQ4_NL, IQ4_XS
  }
}

// Random weights for one matrix; only the latest matrix is kept, so the run never holds more than one.
const Tensor& Weights(DType dtype, int64_t rows, int64_t cols) {
  static std::unique_ptr<Tensor> cached;
  if (cached && cached->dtype == dtype && cached->shape == Shape{rows, cols}) return *cached;
  cached.reset();
  cached = std::make_unique<Tensor>(Tensor::Zeros("w", dtype, {rows, cols}));
  uint32_t state = 12345;
  auto next = [&state] { return state = state * 1664525u + 1013904223u; };
  auto* bytes = reinterpret_cast<uint8_t*>(cached->storage.data());
  const size_t size = cached->storage.size();
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(next() >> 24);
  const size_t block_bytes = Traits(dtype).block_bytes;
  for (size_t b = 0; b < size; b += block_bytes) {
    for (const size_t offset : HalfFields(dtype)) {
      const uint16_t h = F32ToF16(1e-3f + 1e-1f * static_cast<float>(next() >> 8) / 16777216.0f);
      std::memcpy(bytes + b + offset, &h, sizeof h);
    }
  }
  return *cached;
}

enum class Level { kBest, kInterleaved, kPacked, kAvx2Rows, kAvx2, kScalar };

// Args: dtype (ggml id), rows, cols. kBest is what MatMul uses on this CPU; kAvx2Rows forces the AVX2
// table; kAvx2 also drops its dot_rows, so MatMul calls the AVX2 `dot` per row: the kernels as they were
// before dot_rows and AVX-512, for a before/after in one run. kScalar runs the references. kBest reads the
// stored rows; kInterleaved the rows interleaved as the model commands run them (types and CPUs that
// have the layout: Q4_0 on AVX2).
void RunGemv(benchmark::State& state, Level level) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2);
  const bool avx2 = level == Level::kAvx2 || level == Level::kAvx2Rows;
  const QuantKernel* chosen = avx2 ? ggml_dot::GgmlQuantKernelAt(dtype, ggml_dot::Isa::kAvx2) : GgmlQuantKernel(dtype);
  if (chosen == nullptr) {
    state.SkipWithError("this CPU lacks AVX2");
    return;
  }
  QuantKernel kernel = *chosen;
  if (level == Level::kAvx2) kernel.dot_rows = nullptr;
  const bool scalar = level == Level::kScalar;
  if (scalar) {
    kernel.dot = kernel.dot_ref;
    kernel.dot_rows = nullptr;
    kernel.quantize_activation = kernel.quantize_activation_ref;
  }
  const Tensor& w = Weights(dtype, rows, cols);
  TensorView view = w.view();
  if (level == Level::kInterleaved) {
    if (kernel.interleaved == nullptr) {
      state.SkipWithError("no interleaved rows for this type on this CPU");
      return;
    }
    view.interleaved = InterleavedCopy(w, kernel);
  }
  std::vector<float> x(static_cast<size_t>(cols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 17) - 8) * 0.1f;
  std::vector<float> y(static_cast<size_t>(rows));
  const double read_gbs = ReadBandwidthGBs();
  const double copy_gbs = CopyBandwidthGBs();
  for (auto _ : state) {
    MatMulQuantized(kernel, view, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double weight_gb = static_cast<double>(w.view().bytes) * 1e-9;
  state.SetLabel(fmt::format("{} {}x{} {}{}", DTypeName(dtype), rows, cols, scalar ? "scalar" : kernel.isa(),
                             view.interleaved != nullptr ? " interleaved" : kernel.dot_rows != nullptr ? " rows" : ""));
  state.counters["threads"] = ThreadCount();
  state.counters["Gweights_s"] =
      benchmark::Counter(static_cast<double>(rows * cols) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GBs"] = benchmark::Counter(weight_gb, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["read_bw_GBs"] = read_gbs;
  state.counters["copy_bw_GBs"] = copy_gbs;
  state.counters["pct_of_read_bw"] =
      benchmark::Counter(100.0 * weight_gb / read_gbs, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_of_copy_bw"] =
      benchmark::Counter(100.0 * weight_gb / copy_gbs, benchmark::Counter::kIsIterationInvariantRate);
}

// Prefill: n_tokens activation rows through the row-block path of MatMulQuantized. Args: dtype, rows,
// cols, n_tokens; counter Gweights_s counts weight x token products (the compute rate).
void RunGemm(benchmark::State& state, Level level) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n_tokens = state.range(3);
  const bool avx2 = level == Level::kAvx2 || level == Level::kAvx2Rows;
  const QuantKernel* chosen = avx2 ? ggml_dot::GgmlQuantKernelAt(dtype, ggml_dot::Isa::kAvx2) : GgmlQuantKernel(dtype);
  if (chosen == nullptr) {
    state.SkipWithError("this CPU lacks AVX2");
    return;
  }
  QuantKernel copy = *chosen;
  if (level == Level::kAvx2) copy.dot_rows = nullptr;
  // The forced AVX2 levels are the per-row kernels; kBest takes the packed GEMM where this CPU has one
  // and the batch reaches PackedGemmMinTokens(); kPacked takes it at any batch.
  if (level == Level::kAvx2 || level == Level::kAvx2Rows) copy.packed = nullptr;
  const QuantKernel* kernel = &copy;
  const Tensor& w = Weights(dtype, rows, cols);
  std::vector<float> x(static_cast<size_t>(cols * n_tokens));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 17) - 8) * 0.1f;
  std::vector<float> y(static_cast<size_t>(rows * n_tokens));
  const bool packed = level == Level::kPacked || UsePackedGemm(*kernel, n_tokens);
  if (level == Level::kPacked && (kernel->packed == nullptr || std::string(PackedGemmIsa()) == "none")) {
    state.SkipWithError("no packed GEMM on this CPU");
    return;
  }
  for (auto _ : state) {
    if (level == Level::kPacked) {
      PackedGemm(*kernel, w.view(), x.data(), n_tokens, y.data());
    } else {
      MatMulQuantized(*kernel, w.view(), x.data(), n_tokens, y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(fmt::format("{} {}x{} x {} tokens {}", DTypeName(dtype), rows, cols, n_tokens,
                             packed ? fmt::format("packed {}", PackedGemmIsa())
                                    : fmt::format("{}{}", kernel->isa(), kernel->dot_rows != nullptr ? " rows" : "")));
  state.counters["threads"] = ThreadCount();
  state.counters["Gweights_s"] = benchmark::Counter(static_cast<double>(rows * cols * n_tokens) * 1e-9,
                                                    benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Gemv(benchmark::State& state) { RunGemv(state, Level::kBest); }
void BM_GemvInterleaved(benchmark::State& state) { RunGemv(state, Level::kInterleaved); }
void BM_Gemm(benchmark::State& state) { RunGemm(state, Level::kBest); }
void BM_GemmPacked(benchmark::State& state) { RunGemm(state, Level::kPacked); }
void BM_GemmAvx2(benchmark::State& state) { RunGemm(state, Level::kAvx2); }
void BM_GemmAvx2Rows(benchmark::State& state) { RunGemm(state, Level::kAvx2Rows); }
void BM_GemvAvx2(benchmark::State& state) { RunGemv(state, Level::kAvx2); }
void BM_GemvAvx2Rows(benchmark::State& state) { RunGemv(state, Level::kAvx2Rows); }
void BM_GemvScalar(benchmark::State& state) { RunGemv(state, Level::kScalar); }

constexpr DType kTypes[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kIQ4_NL,
                            DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_XS};

// LLaMA-2-7B FFN down (4096 x 11008) and gate/up (11008 x 4096), [rows, cols] = [out, in].
void GemvArgs(benchmark::internal::Benchmark* b) {
  for (const DType dtype : kTypes) {
    b->Args({static_cast<int64_t>(dtype), 4096, 11008});
    b->Args({static_cast<int64_t>(dtype), 11008, 4096});
  }
}
// 256 x 4096: 0.3-1.1 MB of weights, resident in L2/L3 while the benchmark repeats it, so this shows the
// kernel's compute rate (weights/s), the ceiling it brings to the memory-bound shapes above.
void CachedArgs(benchmark::internal::Benchmark* b) {
  for (const DType dtype : kTypes) b->Args({static_cast<int64_t>(dtype), 256, 4096});
}
void ScalarArgs(benchmark::internal::Benchmark* b) {
  for (const DType dtype : kTypes) b->Args({static_cast<int64_t>(dtype), 4096, 11008});
}

// 4..64 tokens through a 4096 x 4096 matrix (attention projections): the 32-weight types, Q4_K and Q6_K.
// BM_GemmPacked against BM_GemmAvx2Rows shows where the packed GEMM overtakes the per-row kernels.
void GemmArgs(benchmark::internal::Benchmark* b) {
  for (const DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kIQ4_NL,
                            DType::kQ4_K, DType::kQ6_K}) {
    for (int64_t t : {4, 8, 16, 32, 64}) b->Args({static_cast<int64_t>(dtype), 4096, 4096, t});
  }
}

BENCHMARK(BM_Gemv)->Apply(GemvArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemv)->Name("BM_GemvCached")->Apply(CachedArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemvInterleaved)->Apply(GemvArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemvInterleaved)->Name("BM_GemvInterleavedCached")->Apply(CachedArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemvAvx2)->Apply(GemvArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemvAvx2)->Name("BM_GemvAvx2Cached")->Apply(CachedArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemvAvx2Rows)->Apply(GemvArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemvAvx2Rows)->Name("BM_GemvAvx2RowsCached")->Apply(CachedArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Gemm)->Apply(GemmArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmPacked)->Apply(GemmArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmAvx2)->Apply(GemmArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmAvx2Rows)->Apply(GemmArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemvScalar)->Apply(ScalarArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq
