// Decode and prefill speed of INT4-g128 weights with a salient FP16 part (0, 0.5%, 1% of each row) beside
// the same matrix without one, on LLaMA-2-7B-shaped matrices, in the same run: the salient part's cost
// is the ratio of the rows' times (docs/salient.md). Speed does not depend on the values, so the dense rows
// are random bytes with sane FP16 scales and the salient columns random sorted positions.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "mixq/base/threads.h"
#include "mixq/formats/float16.h"
#include "mixq/kernels/matmul.h"
#include "mixq/tensor/int_layout.h"
#include "mixq/tensor/sparse_rows.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

constexpr int64_t kGroup = 128;

// One dense matrix per shape, shared by every salient fraction: the rows compared differ only in their
// sparse part, not in where the dense bytes happen to live (page placement alone moved timings by 20%).
const Tensor& Dense(int64_t rows, int64_t cols) {
  static std::map<std::tuple<int64_t, int64_t>, std::unique_ptr<Tensor>> cache;
  auto& slot = cache[{rows, cols}];
  if (slot) return *slot;
  slot = std::make_unique<Tensor>(Tensor::Zeros("w", DType::kInt4, {rows, cols}, kGroup));
  const IntRowLayout layout(DType::kInt4, cols, kGroup);
  std::mt19937 rng(1);
  auto* bytes = slot->as<uint8_t>();
  const uint16_t scale = F32ToF16(0.01f);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = bytes + r * layout.row_bytes;
    for (size_t i = 0; i < layout.row_bytes; ++i) row[i] = static_cast<uint8_t>(rng());
    for (int64_t k = 0; k < layout.n_groups; ++k) std::memcpy(row + 2 * k, &scale, sizeof(scale));
  }
  return *slot;
}

// Args: rows, cols, salient per mille of each row.
const SparseRows& Sparse(int64_t rows, int64_t cols, int64_t per_mille) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<SparseRows>> cache;
  auto& slot = cache[{rows, cols, per_mille}];
  if (slot) return *slot;
  slot = std::make_unique<SparseRows>();
  if (per_mille == 0) return *slot;
  std::mt19937 rng(3);
  const int64_t per_row = (cols * per_mille + 500) / 1000;
  std::vector<uint16_t> columns(static_cast<size_t>(cols));
  SparseRows& s = *slot;
  s.row_ptr.push_back(0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) columns[static_cast<size_t>(c)] = static_cast<uint16_t>(c);
    std::shuffle(columns.begin(), columns.end(), rng);
    std::sort(columns.begin(), columns.begin() + per_row);
    for (int64_t k = 0; k < per_row; ++k) {
      s.cols.push_back(columns[static_cast<size_t>(k)]);
      s.values.push_back(F32ToF16(0.5f));
    }
    s.row_ptr.push_back(static_cast<uint32_t>(s.cols.size()));
  }
  return *slot;
}

// Args: rows, cols, salient per mille, tokens.
void BM_SalientMatMul(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1), per_mille = state.range(2), tokens = state.range(3);
  TensorView w = Dense(rows, cols).view();
  w.salient = Sparse(rows, cols, per_mille).view();
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  std::vector<float> y(static_cast<size_t>(tokens * rows));
  for (auto _ : state) {
    MatMul(w, x.data(), tokens, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const size_t bytes = w.bytes + w.salient.bytes(rows);
  state.SetLabel(fmt::format("int4-g128 {}x{} +{:.1f}% salient, {} token(s)", rows, cols, per_mille / 10.0, tokens));
  state.counters["threads"] = ThreadCount();
  state.counters["bits_per_weight"] = 8.0 * static_cast<double>(bytes) / static_cast<double>(rows * cols);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void Args(benchmark::internal::Benchmark* b) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{4096, 11008}, {11008, 4096}}) {
    for (const int64_t per_mille : {0, 5, 10}) b->Args({rows, cols, per_mille, 1});
  }
  for (const int64_t per_mille : {0, 5, 10}) b->Args({4096, 11008, per_mille, 64});
}

BENCHMARK(BM_SalientMatMul)->Apply(Args)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq
