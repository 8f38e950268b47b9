// GEMV speed of the mixq INT kernels on a LLaMA-2-7B FFN-down-shaped matrix (4096 x 11008), its stored
// rows and its rows interleaved for decode, in GB/s of weight bytes streamed, next to the read and copy
// bandwidth measured in the same run. Run with OMP_NUM_THREADS set (docs/kernels.md); the speed does not
// depend on the weight values, so rows are random bytes with sane FP16 scales rather than quantized data.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "interleaved_copy.h"
#include "mixq/base/threads.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/bandwidth.h"
#include "mixq/kernels/int_dot.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/int_layout.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

constexpr int64_t kRows = 4096, kCols = 11008;

double ReadBandwidthGBs() {
  static const double gbs = MeasureReadBandwidthGBs(size_t{1} << 30, 5);
  return gbs;
}
double CopyBandwidthGBs() {
  static const double gbs = MeasureCopyBandwidthGBs(size_t{1} << 30, 3);
  return gbs;
}

const Tensor& Weights(DType dtype, int64_t group) {
  static std::map<std::tuple<DType, int64_t>, std::unique_ptr<Tensor>> cache;
  auto& slot = cache[{dtype, group}];
  if (!slot) {
    slot = std::make_unique<Tensor>(Tensor::Zeros("w", dtype, {kRows, kCols}, group));
    const IntRowLayout layout(dtype, kCols, group);
    std::mt19937 rng(1);
    auto* bytes = slot->as<uint8_t>();
    for (int64_t r = 0; r < kRows; ++r) {
      uint8_t* row = bytes + r * layout.row_bytes;
      for (size_t i = 0; i < layout.row_bytes; ++i) row[i] = static_cast<uint8_t>(rng());
      const uint16_t scale = F32ToF16(0.01f);
      for (int64_t k = 0; k < layout.n_groups; ++k) std::memcpy(row + 2 * k, &scale, sizeof(scale));
    }
  }
  return *slot;
}

// Args: dtype id, group, scalar (1: the reference dot instead of the fast one). BM_IntGemv walks the stored
// rows; BM_IntGemvInterleaved the rows interleaved for decode, as the model commands run them.
void RunIntGemv(benchmark::State& state, bool interleaved) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t group = state.range(1);
  QuantKernel kernel = *IntQuantKernel(dtype);
  if (state.range(2) != 0) kernel.dot = kernel.dot_ref;
  const Tensor& w = Weights(dtype, group);
  TensorView view = w.view();
  if (interleaved) {
    // The interleaved path has no scalar variant to compare (it never calls `dot`).
    if (state.range(2) != 0 || kernel.interleaved == nullptr || !kernel.interleaved->accepts(view.cols(), view.group)) {
      state.SkipWithError("no interleaved rows for this type, group and CPU (or a scalar run)");
      return;
    }
    view.interleaved = InterleavedCopy(w, kernel);
  }
  std::vector<float> x(kCols);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  std::vector<float> y(kRows);
  const double read_gbs = ReadBandwidthGBs(), copy_gbs = CopyBandwidthGBs();
  for (auto _ : state) {
    MatMulQuantized(kernel, view, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double weight_bytes = static_cast<double>(w.view().bytes);
  state.SetLabel(fmt::format("{} g{} {}x{} {}{}", DTypeName(dtype), group, kRows, kCols,
                             state.range(2) != 0 ? "scalar" : kernel.isa(), interleaved ? " interleaved" : ""));
  state.counters["threads"] = ThreadCount();
  state.counters["bits_per_weight"] = 8.0 * weight_bytes / (kRows * kCols);
  state.SetBytesProcessed(static_cast<int64_t>(weight_bytes) * state.iterations());
  state.counters["read_bw_GBs"] = read_gbs;
  state.counters["copy_bw_GBs"] = copy_gbs;
  state.counters["pct_of_read_bw"] =
      benchmark::Counter(100.0 * weight_bytes * 1e-9 / read_gbs, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_of_copy_bw"] =
      benchmark::Counter(100.0 * weight_bytes * 1e-9 / copy_gbs, benchmark::Counter::kIsIterationInvariantRate);
}

void GemvArgs(benchmark::internal::Benchmark* b) {
  auto id = [](DType t) { return static_cast<int64_t>(t); };
  b->Args({id(DType::kInt4), 128, 0});
  b->Args({id(DType::kInt4Sym), 128, 0});
  b->Args({id(DType::kInt8), 0, 0});
  b->Args({id(DType::kInt8Sym), 0, 0});
  b->Args({id(DType::kInt3), 64, 0});
  b->Args({id(DType::kInt2), 64, 0});
  b->Args({id(DType::kInt4), 128, 1});
}

void BM_IntGemv(benchmark::State& state) { RunIntGemv(state, false); }
void BM_IntGemvInterleaved(benchmark::State& state) { RunIntGemv(state, true); }

BENCHMARK(BM_IntGemv)->Apply(GemvArgs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_IntGemvInterleaved)->Apply(GemvArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

// The kernel's own cost, without memory: 32 rows of 11008 (at most 352 KiB, inside L2) multiplied again
// and again on one thread; ns per 32-weight block. Args as BM_IntGemv. BM_IntDotCached walks the stored
// rows, BM_IntGemvInterleavedCached their interleaved copy (the first 4 groups of 8 rows), as decode does.
void RunIntDotCached(benchmark::State& state, bool interleaved) {
  constexpr int64_t kCachedRows = 32;
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t group = state.range(1);
  QuantKernel kernel = *IntQuantKernel(dtype);
  if (state.range(2) != 0) kernel.dot = kernel.dot_ref;
  const Tensor& weights = Weights(dtype, group);
  const TensorView all = weights.view();
  TensorView w = all;
  w.shape = Shape{kCachedRows, kCols};
  w.bytes = static_cast<size_t>(kCachedRows) * all.row_bytes();
  if (interleaved) {
    if (state.range(2) != 0 || kernel.interleaved == nullptr || !kernel.interleaved->accepts(w.cols(), w.group)) {
      state.SkipWithError("no interleaved rows for this type, group and CPU (or a scalar run)");
      return;
    }
    w.interleaved = InterleavedCopy(weights, kernel);
  }
  std::vector<float> x(kCols, 0.5f), y(kCachedRows);
  const int threads = ThreadCount();
  SetThreadCount(1);
  for (auto _ : state) {
    MatMulQuantized(kernel, w, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  SetThreadCount(threads);
  state.SetLabel(fmt::format("{} g{} {}x{} {}{}", DTypeName(dtype), group, kCachedRows, kCols,
                             state.range(2) != 0 ? "scalar" : kernel.isa(), interleaved ? " interleaved" : ""));
  state.counters["ns_per_block"] = benchmark::Counter(
      static_cast<double>(kCachedRows * kCols / kIntActivationBlockSize),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void CachedArgs(benchmark::internal::Benchmark* b) {
  GemvArgs(b);
  auto id = [](DType t) { return static_cast<int64_t>(t); };
  b->Args({id(DType::kInt4), 0, 0});
  b->Args({id(DType::kInt4), 64, 0});
  b->Args({id(DType::kInt4), 32, 0});
}

void BM_IntDotCached(benchmark::State& state) { RunIntDotCached(state, false); }
void BM_IntGemvInterleavedCached(benchmark::State& state) { RunIntDotCached(state, true); }

BENCHMARK(BM_IntDotCached)->Apply(CachedArgs)->UseRealTime();
BENCHMARK(BM_IntGemvInterleavedCached)->Apply(CachedArgs)->UseRealTime();

}  // namespace
}  // namespace mixq
