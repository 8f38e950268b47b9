// Speed of the INT quantizer's scale search (QuantizeIntMatrix) on LLaMA-2-7B-shaped matrices, in ns per
// weight. Run with OMP_NUM_THREADS=1 for the cost on one core (the search is what AWQ's grid, GPTQ's group
// searches and --target-bpw sensitivity call over and over). Weights are heavy-tailed (Student-t(3), as
// real weights are) with a per-row spread, so the search sees realistic outliers; the importance vector
// spans six decades, as real mean squared activations do.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "mixq/base/threads.h"
#include "mixq/formats/int_quant.h"
#include "mixq/tensor/dtype.h"

namespace mixq {
namespace {

constexpr int64_t kCols = 4096;

const std::vector<float>& Weights(int64_t rows) {
  static std::map<int64_t, std::vector<float>> cache;
  std::vector<float>& w = cache[rows];
  if (w.empty()) {
    std::mt19937 rng(static_cast<uint32_t>(rows));
    std::student_t_distribution<float> t3(3.0f);
    std::uniform_real_distribution<float> row_scale(0.5f, 2.0f);
    w.resize(static_cast<size_t>(rows * kCols));
    for (int64_t r = 0; r < rows; ++r) {
      const float s = 0.02f * row_scale(rng);
      for (int64_t c = 0; c < kCols; ++c) w[static_cast<size_t>(r * kCols + c)] = s * t3(rng);
    }
  }
  return w;
}

const std::vector<float>& Importance() {
  static const std::vector<float> imp = [] {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> log_imp(-3.0f, 3.0f);
    std::vector<float> v(kCols);
    for (float& f : v) f = std::pow(10.0f, log_imp(rng));
    return v;
  }();
  return imp;
}

// Args: rows, dtype id, group (0: per channel), importance (1: with the importance vector).
void BM_QuantizeInt(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const auto dtype = static_cast<DType>(state.range(1));
  const int64_t group = state.range(2);
  const bool with_importance = state.range(3) != 0;
  const std::vector<float>& w = Weights(rows);
  const float* importance = with_importance ? Importance().data() : nullptr;
  std::vector<std::byte> out(static_cast<size_t>(rows) * *RowBytes(dtype, kCols, group));
  for (auto _ : state) {
    QuantizeIntMatrix(dtype, w.data(), rows, kCols, group, false, out.data(), importance);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(fmt::format("{}-{} {}x{}{}", DTypeName(dtype), group == 0 ? "pc" : fmt::format("g{}", group), rows,
                             kCols, with_importance ? " imp" : ""));
  state.counters["threads"] = ThreadCount();
  state.counters["ns_per_weight"] = benchmark::Counter(static_cast<double>(rows * kCols) * 1e-9,
                                                       benchmark::Counter::kIsIterationInvariantRate |
                                                           benchmark::Counter::kInvert);
}

void QuantizeArgs(benchmark::internal::Benchmark* b) {
  auto id = [](DType t) { return static_cast<int64_t>(t); };
  const std::pair<DType, int64_t> formats[] = {
      {DType::kInt4, 128}, {DType::kInt3, 64}, {DType::kInt2, 32}, {DType::kInt8, 0}, {DType::kInt4Sym, 128}};
  for (const int64_t rows : {int64_t{4096}, int64_t{11008}}) {
    for (const auto& [dtype, group] : formats) {
      for (const int64_t imp : {0, 1}) b->Args({rows, id(dtype), group, imp});
    }
  }
}

BENCHMARK(BM_QuantizeInt)->Apply(QuantizeArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq
