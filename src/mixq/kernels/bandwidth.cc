// Memory bandwidth probes: a SIMD read-only sum and a memcpy, over a buffer far larger than the caches.
#include "mixq/kernels/bandwidth.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
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

// The bitwise OR of the words p[0..n) (n a multiple of 4 vectors); four accumulators so the ORs never
// stall the loads. Integer ORs, so what the bytes hold (weights read as if they were floats could be
// denormal) cannot change the loop's speed.
uint32_t OrWordsImpl(const uint32_t* HWY_RESTRICT p, size_t n) {
  const hn::ScalableTag<uint32_t> d;
  const size_t lanes = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  for (size_t i = 0; i + 4 * lanes <= n; i += 4 * lanes) {
    a0 = hn::Or(a0, hn::LoadU(d, p + i));
    a1 = hn::Or(a1, hn::LoadU(d, p + i + lanes));
    a2 = hn::Or(a2, hn::LoadU(d, p + i + 2 * lanes));
    a3 = hn::Or(a3, hn::LoadU(d, p + i + 3 * lanes));
  }
  return hn::GetLane(hn::MaxOfLanes(d, hn::Or(hn::Or(a0, a1), hn::Or(a2, a3))));
}

}  // namespace HWY_NAMESPACE
}  // namespace mixq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mixq {

HWY_EXPORT(OrWordsImpl);

namespace {

// Each thread's slice, a multiple of 64 words so every SIMD width divides it.
constexpr size_t kChunkWords = 64;

size_t WordsFor(size_t bytes) { return std::max<size_t>(bytes / sizeof(uint32_t) / kChunkWords, 1) * kChunkWords; }

// Written by every read pass, so the compiler keeps the loads of a pass whose result nobody else uses.
volatile uint32_t read_pass_sink = 0;

}  // namespace

double TimeReadPass(const void* data, size_t bytes) {
  const auto* words = static_cast<const uint32_t*>(data);
  const int64_t n_chunks = static_cast<int64_t>(bytes / sizeof(uint32_t) / kChunkWords);
  const auto or_words = HWY_DYNAMIC_DISPATCH(OrWordsImpl);
  uint32_t total = 0;
  Timer timer;
#pragma omp parallel reduction(| : total)
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t id = omp_get_thread_num();
    const int64_t begin = n_chunks * id / threads;
    const int64_t end = n_chunks * (id + 1) / threads;
    total |= or_words(words + begin * kChunkWords, static_cast<size_t>(end - begin) * kChunkWords);
  }
  const double seconds = timer.ElapsedSeconds();
  read_pass_sink = total;
  return seconds;
}

double MeasureReadBandwidthGBs(size_t bytes, int reps) {
  MIXQ_CHECK_GE(reps, 1);
  const size_t n = WordsFor(bytes);
  // Huge pages, as the weights the decode kernels stream (InterleaveForDecode): the bound is what this
  // machine's memory delivers to such a stream.
  AlignedBuffer storage;
  storage.Resize(n * sizeof(float), AlignedBuffer::Pages::kHuge);
  float* buffer = storage.as<float>();
  const int64_t n_chunks = static_cast<int64_t>(n / kChunkWords);
  // Every thread first touches the pages it will read, so they are mapped (and local) before timing.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_chunks; ++i) std::fill_n(buffer + i * kChunkWords, kChunkWords, 1.0f);
  double best_seconds = 1e30;
  for (int rep = 0; rep < reps; ++rep) best_seconds = std::min(best_seconds, TimeReadPass(buffer, n * sizeof(float)));
  // The ones' bits: a pass that dropped its loads would not have them.
  MIXQ_CHECK(read_pass_sink != 0);
  return static_cast<double>(n * sizeof(float)) / best_seconds / 1e9;
}

double MeasureCopyBandwidthGBs(size_t bytes, int reps) {
  MIXQ_CHECK_GE(reps, 1);
  const size_t n = WordsFor(bytes);
  AlignedBuffer src_storage, dst_storage;
  src_storage.Resize(n * sizeof(float), AlignedBuffer::Pages::kHuge);
  dst_storage.Resize(n * sizeof(float), AlignedBuffer::Pages::kHuge);
  float* src = src_storage.as<float>();
  float* dst = dst_storage.as<float>();
  const int64_t n_chunks = static_cast<int64_t>(n / kChunkWords);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n_chunks; ++i) {
    std::fill_n(src + i * kChunkWords, kChunkWords, 1.0f);
    std::fill_n(dst + i * kChunkWords, kChunkWords, 0.0f);
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
      std::memcpy(dst + begin * kChunkWords, src + begin * kChunkWords,
                  static_cast<size_t>(end - begin) * kChunkWords * sizeof(float));
    }
    best_seconds = std::min(best_seconds, timer.ElapsedSeconds());
  }
  MIXQ_CHECK(dst[n - 1] == 1.0f);
  return 2.0 * static_cast<double>(n * sizeof(float)) / best_seconds / 1e9;
}

}  // namespace mixq
#endif  // HWY_ONCE
