// How close a decode kernel streams to a plain read of the same bytes. About 400 MiB of LLaMA-2-7B-shaped
// 4096 x 4096 matrices, their rows interleaved for decode in one huge-page buffer as InterleaveForDecode
// lays them out, go through MatMulQuantized one token at a time, as the model's decode does; right before
// each pass over them, the read loop of the bandwidth probe (TimeReadPass) reads the same bytes. The
// counter kernel_over_read is the median over passes of the read pass's time over the kernel pass's:
// 1.0 is a kernel that streams like the read loop, whatever mode the machine's memory is in at the time
// (on the 2-core Zen 4 of sessions 15-19 it flips between ~33 and ~60 GB/s on two threads). Run with
// OMP_NUM_THREADS set: one thread measures how full one thread keeps its own stream, which is what the
// fast memory mode asks of each of two (docs/kernels.md, session 19). The speed does not depend on the
// weight values: the rows are random bytes in [0x20, 0x3f], which keep every F16 scale finite and every
// float the read loop adds normal.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "interleaved_copy.h"
#include "mixq/base/aligned_buffer.h"
#include "mixq/base/threads.h"
#include "mixq/base/timer.h"
#include "mixq/kernels/bandwidth.h"
#include "mixq/kernels/interleaved_rows.h"
#include "mixq/kernels/matmul.h"
#include "mixq/kernels/quant_kernel.h"
#include "mixq/tensor/tensor.h"

namespace mixq {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;
constexpr size_t kStreamBytes = size_t{400} << 20;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Args: dtype id, group (mixq INT types; 0 for ggml's).
void BM_DecodeStream(benchmark::State& state) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t group = state.range(1);
  const QuantKernel* kernel = FindQuantKernel(dtype);
  if (kernel == nullptr || kernel->interleaved == nullptr || !kernel->interleaved->accepts(kCols, group)) {
    state.SkipWithError("no interleaved decode rows for this type and group on this CPU");
    return;
  }
  Tensor w = Tensor::Zeros("w", dtype, {kRows, kCols}, group);
  std::mt19937 rng(1);
  auto* bytes = reinterpret_cast<uint8_t*>(w.storage.data());
  for (size_t i = 0; i < w.storage.size(); ++i) bytes[i] = static_cast<uint8_t>(0x20 | (rng() & 0x1f));
  const TensorView view = w.view();

  // As many copies of the interleaved matrix as make kStreamBytes, back to back.
  const std::byte* interleaved = InterleavedCopy(w, *kernel);
  const size_t matrix_bytes = kernel->interleaved->group_bytes(kCols, group) * (kRows / InterleavedRows::kRows);
  const size_t n_matrices = std::max<size_t>(1, kStreamBytes / matrix_bytes);
  AlignedBuffer stream;
  stream.Resize(matrix_bytes * n_matrices, AlignedBuffer::Pages::kHuge);
  for (size_t m = 0; m < n_matrices; ++m) std::copy_n(interleaved, matrix_bytes, stream.data() + m * matrix_bytes);
  std::vector<TensorView> matrices(n_matrices, view);
  for (size_t m = 0; m < n_matrices; ++m) matrices[m].interleaved = stream.data() + m * matrix_bytes;

  std::vector<float> x(kCols);
  std::normal_distribution<float> dist;
  for (float& v : x) v = dist(rng);
  std::vector<float> y(kRows);
  std::vector<double> kernel_gbs, read_gbs, ratios;
  const double total_bytes = static_cast<double>(stream.size());
  for (auto _ : state) {
    const double read_seconds = TimeReadPass(stream.data(), stream.size());
    Timer timer;
    for (const TensorView& m : matrices) MatMulQuantized(*kernel, m, x.data(), 1, y.data());
    const double kernel_seconds = timer.ElapsedSeconds();
    benchmark::DoNotOptimize(y.data());
    state.SetIterationTime(kernel_seconds);
    kernel_gbs.push_back(total_bytes / kernel_seconds * 1e-9);
    read_gbs.push_back(total_bytes / read_seconds * 1e-9);
    ratios.push_back(read_seconds / kernel_seconds);
  }
  state.SetLabel(fmt::format("{}{} {} x {}x{} interleaved, {:.0f} MiB, {}", DTypeName(dtype),
                             group > 0 ? fmt::format(" g{}", group) : "", n_matrices, kRows, kCols,
                             total_bytes / (1 << 20), kernel->isa()));
  state.counters["threads"] = ThreadCount();
  state.counters["kernel_GBs"] = Median(kernel_gbs);
  state.counters["read_GBs"] = Median(read_gbs);
  state.counters["kernel_over_read"] = Median(ratios);
}

void StreamArgs(benchmark::internal::Benchmark* b) {
  for (const DType dtype : {DType::kQ4_0, DType::kQ4_K, DType::kIQ4_XS, DType::kQ6_K, DType::kQ8_0, DType::kQ5_K,
                            DType::kQ2_K, DType::kQ3_K}) {
    b->Args({static_cast<int64_t>(dtype), 0});
  }
  for (const int64_t group : {int64_t{0}, int64_t{256}, int64_t{128}, int64_t{64}, int64_t{32}}) {
    b->Args({static_cast<int64_t>(DType::kInt4), group});
  }
  for (const DType dtype : {DType::kInt3, DType::kInt5, DType::kInt6, DType::kInt7}) {
    b->Args({static_cast<int64_t>(dtype), 128});
  }
}

BENCHMARK(BM_DecodeStream)->Apply(StreamArgs)->Iterations(9)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mixq
