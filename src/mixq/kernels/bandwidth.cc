// Memory bandwidth probes: a SIMD read-only sum and a memcpy, over a buffer far larger than the caches.
#include "mixq/kernels/bandwidth.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "mixq/kernels/bandwidth.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include "mixq/base/aligned_buffer.h"
#include "mixq/base/check.h"
#include "mixq/base/timer.h"

HWY_BEFORE_NAMESPACE();
namespace mixq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of p[0..n) with n a multiple of 4 vectors; four accumulators so the adds never stall the loads.
float SumFloatsImpl(const float* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  for (size_t i = 0; i + 4 * lanes <= n; i += 4 * lanes) {
    a0 = hn::Add(a0, hn::LoadU(df, p + i));
    a1 = hn::Add(a1, hn::LoadU(df, p + i + lanes));
    a2 = hn::Add(a2, hn::LoadU(df, p + i + 2 * lanes));
    a3 = hn::Add(a3, hn::LoadU(df, p + i + 3 * lanes));
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
}

}  // namespace HWY_NAMESPACE
}  // namespace mixq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mixq {

HWY_EXPORT(SumFloatsImpl);

namespace {

// Each thread's slice, a multiple of 64 floats so every SIMD width divides it.
constexpr size_t kChunkFloats = 64;

size_t FloatsFor(size_t bytes) { return std::max<size_t>(bytes / sizeof(float) / kChunkFloats, 1) * kChunkFloats; }

// Written by every read pass, so the compiler keeps the loads of a pass whose sum nobody else uses.
volatile float read_pass_sink = 0.0f;

}  // namespace

double TimeReadPass(const void* data, size_t bytes) {
  const auto* floats = static_cast<const float*>(data);
  const int64_t n_chunks = static_cast<int64_t>(bytes / sizeof(float) / kChunkFloats);
  const auto sum_floats = HWY_DYNAMIC_DISPATCH(SumFloatsImpl);
  float total = 0.0f;
  Timer timer;
#pragma omp parallel reduction(+ : total)
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t id = omp_get_thread_num();
    const int64_t begin = n_chunks * id / threads;
    const int64_t end = n_chunks * (id + 1) / threads;
    total += sum_floats(floats + begin * kChunkFloats, static_cast<size_t>(end - begin) * kChunkFloats);
  }
  const double seconds = timer.ElapsedSeconds();
  read_pass_sink = total;
  return seconds;
}

double MeasureReadBandwidthGBs(size_t bytes, int reps) {
  MIXQ_CHECK_GE(reps, 1);
  const size_t n = FloatsFor(bytes);
  // Huge pages, as the weights the decode kernels stream (InterleaveForDecode): the bound is what this
  // machine's memory delivers to such a stream.
  AlignedBuffer storage;
  storage.Resize(n * sizeof(float), AlignedBuffer::Pages::kHuge);
  float* buffer = storage.as<float>();
  const int64_t n_chunks = static_cast<int64_t>(n / kChunkFloats);
  // Every thread first touches the pages it will read, so they are mapped (and local) before timing.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_chunks; ++i) std::fill_n(buffer + i * kChunkFloats, kChunkFloats, 1.0f);
  double best_seconds = 1e30;
  for (int rep = 0; rep < reps; ++rep) best_seconds = std::min(best_seconds, TimeReadPass(buffer, n * sizeof(float)));
  // The sum of ones: a pass that dropped its loads would not have it.
  MIXQ_CHECK(read_pass_sink > 0.0f);
  return static_cast<double>(n * sizeof(float)) / best_seconds / 1e9;
}

double MeasureCopyBandwidthGBs(size_t bytes, int reps) {
  MIXQ_CHECK_GE(reps, 1);
  const size_t n = FloatsFor(bytes);
  AlignedBuffer src_storage, dst_storage;
  src_storage.Resize(n * sizeof(float), AlignedBuffer::Pages::kHuge);
  dst_storage.Resize(n * sizeof(float), AlignedBuffer::Pages::kHuge);
  float* src = src_storage.as<float>();
  float* dst = dst_storage.as<float>();
  const int64_t n_chunks = static_cast<int64_t>(n / kChunkFloats);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_chunks; ++i) {
    std::fill_n(src + i * kChunkFloats, kChunkFloats, 1.0f);
    std::fill_n(dst + i * kChunkFloats, kChunkFloats, 0.0f);
  }
  double best_seconds = 1e30;
  for (int rep = 0; rep < reps; ++rep) {
    Timer timer;
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads();
      const int64_t id = omp_get_thread_num();
      const int64_t begin = n_chunks * id / threads;
      const int64_t end = n_chunks * (id + 1) / threads;
      std::memcpy(dst + begin * kChunkFloats, src + begin * kChunkFloats,
                  static_cast<size_t>(end - begin) * kChunkFloats * sizeof(float));
    }
    best_seconds = std::min(best_seconds, timer.ElapsedSeconds());
  }
  MIXQ_CHECK(dst[n - 1] == 1.0f);
  return 2.0 * static_cast<double>(n * sizeof(float)) / best_seconds / 1e9;
}

}  // namespace mixq
#endif  // HWY_ONCE
